"""The gain of an RL run per scenario: each eval folder found under both BEFORE and AFTER (named
SUITE-MODE, as scripts/stages.sh's evaluate_suites writes them), its score before and after, and
the gain with its paired standard error over test items (the same items and seeds in both runs, so
the item-by-item difference is what RL changed). The scores are the suites' overall (a mean over
categories); the gain is in the plain mean over images, which is what pairs item by item.

    python experiments/scripts/scenario_table.py results/five/sft results/five/rl

One `error:` line (exit 2) when a folder is missing or no eval folder is finished in both.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from thinkgen.eval.shapeworld import is_complete

SUITES = ("composition", "reasoning", "text", "editing", "reflection")


def item_scores(folder: Path) -> dict[str, float]:
    """Each test item's mean score over its images, from the folder's items.jsonl."""
    scores: dict[str, list[float]] = defaultdict(list)
    for line in (folder / "items.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            scores[row["item"]].append(float(row["score"]))
    return {item: sum(values) / len(values) for item, values in scores.items()}


def paired_gain(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, int]:
    """(mean gain, its standard error, items) over the items scored in both."""
    shared = sorted(before.keys() & after.keys())
    if not shared:
        raise ValueError("no test item is scored in both folders")
    diffs = [after[i] - before[i] for i in shared]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else 0.0
    return mean, math.sqrt(var / len(diffs)), len(diffs)


def rows(before: Path, after: Path) -> list[tuple[str, float, float, float, float]]:
    """(folder name, score before, score after, gain, standard error) for every finished pair, in
    scenario order, then think before direct."""
    names = [p.name for p in sorted(before.iterdir()) if is_complete(p) and is_complete(after / p.name)]
    order = {s: k for k, s in enumerate(SUITES)}
    names.sort(key=lambda n: (order.get(n.split("-")[0], len(SUITES)), "no-think" in n, n))
    table = []
    for name in names:
        a, b = item_scores(before / name), item_scores(after / name)
        gain, se, _ = paired_gain(a, b)
        overall = [json.loads((f / name / "scores.json").read_text())["overall"] for f in (before, after)]
        table.append((name, overall[0], overall[1], gain, se))
    return table


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("error: usage: python experiments/scripts/scenario_table.py BEFORE AFTER", file=sys.stderr)
        return 2
    before, after = Path(argv[0]), Path(argv[1])
    for folder in (before, after):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    table = rows(before, after)
    if not table:
        print(f"error: no eval folder is finished in both {before} and {after}", file=sys.stderr)
        return 2
    print(f"| eval (test split) | {before} | {after} | gain in the mean over images ± paired s.e. |")
    print("|---|---|---|---|")
    for name, b, a, gain, se in table:
        print(f"| {name} | {b:.3f} | {a:.3f} | {gain:+.3f} ± {se:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
