"""Where a reflection round loses its fixes: for every composition drawing judged wrong, does the
judge read the drawing right, would its edit fix the drawing (applied to the parser's reading of
it), and did the DiT's edit give a right image?

    python experiments/scripts/reflection_breakdown.py REFLECT_FOLDER FIRST_FOLDER

REFLECT_FOLDER is written by `thinkgen eval --suite composition --reflect 1 ...`; FIRST_FOLDER by
the same model's `thinkgen eval --suite composition` without --reflect (same seed: the drawings
the round started from; checked against the round's own first scores).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from PIL import Image

from thinkgen.reflection import is_right
from thinkgen.world.captions import canonical, target_of
from thinkgen.world.corpora import judge_reading
from thinkgen.world.edits import apply_fix, parse_edit
from thinkgen.world.parse import parse
from thinkgen.world.rules import parsed_as_scene, satisfies
from thinkgen.world.suites import build


def _phrases(caption: str) -> list[str]:
    """A caption's object phrases in any order ("a square and a triangle" reads as "a triangle
    and a square"; a relation stays one phrase)."""
    return sorted(p for p in re.split(r", | and ", caption) if p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reflect_folder", type=Path)
    parser.add_argument("first_folder", type=Path)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.reflect_folder / "items.jsonl").read_text().splitlines()]
    firsts = {json.loads(line)["image"]: json.loads(line)["score"]
              for line in (args.first_folder / "items.jsonl").read_text().splitlines()}
    if any(firsts.get(row["image"]) != row["first_score"] for row in rows):
        raise SystemExit("error: FIRST_FOLDER's drawings are not the ones the round started from")
    items = {item.id: item for item in build("composition", len({r["item"] for r in rows}), "test")}
    counts, by_op, reading = Counter(), Counter(), Counter()
    for row in rows:
        item, verdict = items[row["item"]], row["verdicts"][0]
        scene = parsed_as_scene(parse(Image.open(args.first_folder / row["image"]).convert("RGB")))
        said = judge_reading(row["judge_reasoning"][0])
        shown = canonical(target_of(scene)) if scene.objects else "nothing"
        first = "right" if row["first_score"] == 1.0 else "wrong"
        reading[(row["category"], first, bool(said and _phrases(said) == _phrases(shown)))] += 1
        if first == "right":
            continue
        if is_right(verdict):
            counts["wrong, judged right"] += 1
            continue
        edit = parse_edit(verdict)
        fixed = edit and apply_fix(scene, edit)
        fixes = bool(fixed and satisfies(fixed, item.target))
        now_right = row["score"] == 1.0
        counts[f"wrong, judged wrong: the edit {'fixes' if fixes else 'does not fix'} the drawing, "
               f"{'right' if now_right else 'still wrong'} after"] += 1
        by_op[(edit.op if edit else "no edit", fixes, now_right)] += 1
    print(f"{args.reflect_folder}: {len(rows)} drawings, {sum(r['first_score'] == 1.0 for r in rows)} right at first")
    for key, n in sorted(counts.items()):
        print(f"  {key}: {n}")
    print("by edit (op, the edit fixes the parsed drawing, right after): count")
    for key, n in sorted(by_op.items(), key=str):
        print(f"  {key}: {n}")
    print("the judge's 'The image shows ...' is the parser's reading, in any order (tag, first drawing): read right / all")
    for tag, first in sorted({(t, f) for t, f, _ in reading}):
        right, wrong = reading[(tag, first, True)], reading[(tag, first, False)]
        print(f"  {tag}, {first}: {right} / {right + wrong}")


if __name__ == "__main__":
    main()
