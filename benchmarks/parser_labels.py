"""How often the rule model reads a drawn circle or square as a person does.

``benchmarks/data/parser_labels/`` holds 233 images drawn by thinkgen's DiTs (composition test
prompts) and 240 of their object regions, each labelled by eye: square, circle or other (a
triangle, a blob, two merged shapes). The regions were those the parser read as a circle or a
square. "tuning" labels chose the corner rule; "held_out" labels were made afterwards, from other
models, to check it. Prints the share of labelled squares read as squares and of circles read as
circles, for the current rule and for the rule it replaced (the corner pixels alone).

    python benchmarks/parser_labels.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from thinkgen.world.parse import (
    _corner_pixels_filled,
    classify_shape,
    label_pixels,
    object_regions,
    shape_fits,
    to_uint8,
)

DATA = Path(__file__).parent / "data" / "parser_labels"


def labelled_regions(data: Path = DATA) -> list[tuple[dict, np.ndarray]]:
    """Each label row with its region mask, found again by colour and box."""
    out = []
    for line in (data / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        image = to_uint8(Image.open(data / row["image"]))
        labels, _ = label_pixels(image)
        matches = [mask for color, mask, box in object_regions(image, labels)
                   if color == row["color"] and list(box) == row["box"]]
        if len(matches) != 1:
            raise ValueError(f"{row['image']}: no single {row['color']} region with box {row['box']}")
        out.append((row, matches[0]))
    return out


def corner_pixel_rule(region: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """The rule before 2026-11-30: the four corner pixels alone settle circle against square."""
    fits = shape_fits(region, box)
    shape = max(fits, key=fits.get)
    if shape in ("circle", "square") and fits["circle"] > 0.6 and fits["square"] > 0.6:
        shape = "square" if _corner_pixels_filled(region, box) >= 3 else "circle"
    return shape


def agreement(rows: list[tuple[dict, np.ndarray]], read) -> dict[str, tuple[int, int]]:
    """{label: (read as that label, labelled)} for squares and circles."""
    counts = {"square": [0, 0], "circle": [0, 0]}
    for row, region in rows:
        if row["label"] in counts:
            counts[row["label"]][1] += 1
            counts[row["label"]][0] += read(region, tuple(row["box"])) == row["label"]
    return {k: (v[0], v[1]) for k, v in counts.items()}


def main() -> None:
    rows = labelled_regions()
    rules = {"corner pixels (old)": corner_pixel_rule,
             "corner blocks (current)": lambda region, box: classify_shape(region, box)[0]}
    print("| rule | set | squares read as squares | circles read as circles |")
    print("|---|---|---|---|")
    for name, read in rules.items():
        for subset in ("tuning", "held_out", "all"):
            chosen = [r for r in rows if subset == "all" or r[0]["set"] == subset]
            got = agreement(chosen, read)
            cells = [f"{a}/{n} ({a / n:.2f})" for a, n in (got["square"], got["circle"])]
            print(f"| {name} | {subset} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
