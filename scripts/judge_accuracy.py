"""How well a thinker that sees judges drawings: every image of an eval folder (composition or
reasoning, written by `thinkgen eval`) is shown to JUDGE's thinker with its prompt, as a reflection
round asks it, and its verdict ("the image is right" or not) is set against the parser's score.

    python scripts/judge_accuracy.py JUDGE EVAL_FOLDER [--out verdicts.jsonl]

JUDGE is a pipeline folder whose thinker sees, or a thinker folder.

A reflection round helps only if the judge leaves right images alone and catches wrong ones, so
both shares are printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from thinkgen.reflection import is_right, judge_prompt, load_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("judge")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write each image's verdict here (JSONL)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.folder / "items.jsonl").read_text().splitlines()]
    judge = load_judge(args.judge)
    verdicts = []
    for start in tqdm(range(0, len(rows), args.batch), desc="judge"):
        batch = rows[start : start + args.batch]
        images = [[Image.open(args.folder / row["image"]).convert("RGB")] for row in batch]
        judged = judge.encode([judge_prompt(row["prompt"]) for row in batch], think=True, images=images, seed=0)
        verdicts += [v.strip() for v in judged.rewritten]
    right = [row["score"] == 1.0 for row in rows]
    called = [is_right(v) for v in verdicts]
    n_right, n_wrong = sum(right), len(rows) - sum(right)
    kept = sum(r and c for r, c in zip(right, called, strict=True))
    caught = sum(not r and not c for r, c in zip(right, called, strict=True))
    print(f"{args.folder}: {len(rows)} images, {n_right} right by the parser")
    print(f"right images judged right: {kept} of {n_right} ({kept / max(n_right, 1):.3f})")
    print(f"wrong images judged wrong: {caught} of {n_wrong} ({caught / max(n_wrong, 1):.3f})")
    print(f"agreement with the parser: {(kept + caught) / len(rows):.3f}")
    if args.out:
        args.out.write_text("".join(json.dumps({"image": row["image"], "right": r, "verdict": v}) + "\n"
                                    for row, r, v in zip(rows, right, verdicts, strict=True)))


if __name__ == "__main__":
    main()
