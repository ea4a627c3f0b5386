"""What `--reading-check` would have made of reflection rounds already run without it: in a
one-round eval folder (`thinkgen eval --reflect 1`, a greedy or voting judge, any correction),
every image whose fault the judge's own trace contradicts (`thinkgen.world.corpora.reading_matches`)
keeps its first drawing and score; every other image ends as it did. This is what a run with
`--reading-check` computes, image for image: the check only takes faults back, each image's
correction draws from its own seeds, and a retry's keeper is not checked.

    python experiments/scripts/reading_check_table.py REFLECT_FOLDER [REFLECT_FOLDER ...]

Prints one table row per folder: the suite's overall score before the round, after it as run,
after it with the check, and wrong -> right / right -> wrong images for both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from thinkgen.eval.shapeworld import is_complete, summarise
from thinkgen.reflection import is_right
from thinkgen.world.corpora import reading_matches


def with_reading_check(rows: list[dict]) -> list[dict]:
    """The rows as a round with the check would end them."""
    out = []
    for row in rows:
        taken_back = not is_right(row["verdicts"][0]) and reading_matches(row["judge_reasoning"][0]) is True
        out.append({**row, "score": row["first_score"]} if taken_back else row)
    return out


def changes(rows: list[dict]) -> str:
    up = sum(r["score"] > r["first_score"] for r in rows)
    down = sum(r["score"] < r["first_score"] for r in rows)
    return f"{up} / {down}"


def row_for(folder: Path) -> str:
    if not is_complete(folder):
        raise ValueError(f"{folder} holds no finished eval")
    summary = json.loads((folder / "scores.json").read_text())
    if summary.get("reflect") != 1:
        raise ValueError(f"{folder} is not a one-round reflection eval (reflect: {summary.get('reflect')})")
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    checked = with_reading_check(rows)
    before = summarise(summary["suite"], [{**r, "score": r["first_score"]} for r in rows])["overall"]
    after = summarise(summary["suite"], checked)["overall"]
    taken = sum(a is not b for a, b in zip(rows, checked, strict=True))  # rows the check replaced
    return (f"| {folder.name} | {before:.3f} | {summary['overall']:.3f} ({changes(rows)}) | "
            f"**{after:.3f}** ({changes(checked)}) | {taken} |")


def main(folders: list[str]) -> int:
    if not folders:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    print("| one round | before | as run (wrong → right / right → wrong) | with --reading-check | faults taken back |")
    print("|---|---|---|---|---|")
    for folder in folders:
        try:
            print(row_for(Path(folder)))
        except (ValueError, OSError, KeyError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
