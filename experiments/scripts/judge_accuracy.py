"""How well a thinker that sees judges drawings: every image of an eval folder (composition or
reasoning, written by `thinkgen eval`) is shown to JUDGE's thinker with its prompt, as a reflection
round asks it, and its verdict ("the image is right" or not) is set against the parser's score.

    python experiments/scripts/judge_accuracy.py JUDGE EVAL_FOLDER [--out verdicts.jsonl]
        [--votes V [--quorum Q] [--temperature T]]

JUDGE is a pipeline folder whose thinker sees, or a thinker folder. With ``--votes`` the judge is a
:class:`thinkgen.reflection.VotingJudge` (V sampled readings of each image, wrong when Q fault it),
and a table shows how many right and wrong images each count of faulting votes holds, so the
quorum that spares right images can be read off.

A reflection round helps only if the judge leaves right images alone and catches wrong ones, so
both shares are printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from thinkgen.reflection import VotingJudge, is_right, judge_prompt, load_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("judge")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write each image's verdict here (JSONL)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--votes", type=int, default=0, help="sampled readings per image (0: one greedy)")
    parser.add_argument("--quorum", type=int, default=None, help="faulting votes that make an image wrong")
    parser.add_argument("--temperature", type=float, default=1.0, help="the votes' sampling temperature")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.folder / "items.jsonl").read_text().splitlines()]
    judge = load_judge(args.judge)
    if args.votes:
        judge = VotingJudge(judge, args.votes, args.quorum, args.temperature)
        args.batch = max(1, args.batch // args.votes)  # the same rows per forward pass
    verdicts, faulting = [], []
    for start in tqdm(range(0, len(rows), args.batch), desc="judge"):
        batch = rows[start : start + args.batch]
        images = [[Image.open(args.folder / row["image"]).convert("RGB")] for row in batch]
        judged = judge.encode([judge_prompt(row["prompt"]) for row in batch], think=True, images=images, seed=0)
        verdicts += [v.strip() for v in judged.rewritten]
        faulting += getattr(judged, "faulting_votes", [])
    right = [row["score"] == 1.0 for row in rows]
    called = [is_right(v) for v in verdicts]
    n_right, n_wrong = sum(right), len(rows) - sum(right)
    kept = sum(r and c for r, c in zip(right, called, strict=True))
    caught = sum(not r and not c for r, c in zip(right, called, strict=True))
    print(f"{args.folder}: {len(rows)} images, {n_right} right by the parser")
    print(f"right images judged right: {kept} of {n_right} ({kept / max(n_right, 1):.3f})")
    print(f"wrong images judged wrong: {caught} of {n_wrong} ({caught / max(n_wrong, 1):.3f})")
    print(f"agreement with the parser: {(kept + caught) / len(rows):.3f}")
    if args.votes:
        print(f"\n{args.votes} votes at temperature {args.temperature:g}, quorum {judge.quorum}")
        print("| faulting votes | right images | wrong images |\n|---|---|---|")
        for k in range(args.votes + 1):
            n_r = sum(f == k and r for f, r in zip(faulting, right, strict=True))
            n_w = sum(f == k and not r for f, r in zip(faulting, right, strict=True))
            print(f"| {k} | {n_r} | {n_w} |")
    if args.out:
        votes = faulting or [None] * len(rows)
        args.out.write_text("".join(json.dumps({"image": row["image"], "right": r, "verdict": v, "faulting_votes": f})
                                    + "\n" for row, r, v, f in zip(rows, right, verdicts, votes, strict=True)))


if __name__ == "__main__":
    main()
