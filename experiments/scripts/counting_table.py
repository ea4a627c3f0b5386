"""Where counting fails: composition `counting` images by the number asked, right / too many /
too few, from the parser's reasons in each eval folder's items.jsonl.

    python experiments/scripts/counting_table.py FOLDER [FOLDER ...]

FOLDER is written by `thinkgen eval --suite composition --out FOLDER` (e.g.
results/latent/final/composition-think). The layout-aligned DiT draws too many objects when asked
for two (docs/dit_experiments.md, session 26); this table is how that was counted.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

NUMBERS = ("two", "three", "four")


def outcome(reason: str) -> str:
    """The parser's reason for a counting image, as right / too many / too few."""
    if not reason:
        return "right"
    if reason.startswith("expected fewer than"):  # the scorer found more than asked
        return "too many"
    found = re.fullmatch(r"expected (\d+) \w+, found (\d+)", reason)
    if found is None:
        raise ValueError(f"unknown counting reason {reason!r}")
    return "too few" if int(found[2]) < int(found[1]) else "too many"


def table(folder: Path) -> dict[str, Counter]:
    """Asked number -> Counter of outcomes, over the folder's counting images."""
    counts: dict[str, Counter] = {n: Counter() for n in NUMBERS}
    with open(folder / "items.jsonl") as lines:
        for line in lines:
            item = json.loads(line)
            if item["category"] != "counting":
                continue
            number = item["target"].split()[0]
            if number not in counts:
                raise ValueError(f"counting target {item['target']!r} does not start with {', '.join(NUMBERS)}")
            counts[number][outcome(item["details"]["reason"])] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    print("| eval folder | " + " | ".join(f"{n}: right / too many / too few" for n in NUMBERS) + " |")
    print("|---|" + "---|" * len(NUMBERS))
    for folder in args.folders:
        if not (folder / "items.jsonl").is_file():
            raise SystemExit(f"error: {folder} has no items.jsonl (not a `thinkgen eval` folder)")
        try:
            counts = table(folder)
        except ValueError as error:
            raise SystemExit(f"error: {folder}: {error}") from None
        cells = [f"{c['right']} / {c['too many']} / {c['too few']}" for c in (counts[n] for n in NUMBERS)]
        print(f"| {folder} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
