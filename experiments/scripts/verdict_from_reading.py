"""Would a judge's verdict be better if it followed from its own reading? For every composition
drawing of a reflection round except position ones (a reading's relation is not placed here), the
judge's "The image shows ..." is read back into objects and checked against the item's target by
the world's rules; both that verdict and the judge's own are set against the parser's.

    python experiments/scripts/verdict_from_reading.py REFLECT_FOLDER

REFLECT_FOLDER is written by `thinkgen eval --suite composition --reflect 1 ...`. The request is the
item's target here, not the judge's reading of the prompt: this measures the reading alone.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from thinkgen.reflection import is_right
from thinkgen.world.captions import QUANTITIES, SINGULARS
from thinkgen.world.corpora import judge_reading
from thinkgen.world.rules import satisfies
from thinkgen.world.scene import Object, Scene
from thinkgen.world.suites import build


def objects(reading: str) -> list[tuple[str, str]] | None:
    """"a red square and two blue circles" -> [(red, square), (blue, circle), (blue, circle)];
    None when a phrase does not read as a canonical one with a colour (a drawing's reading names
    every object's colour; one without is left to the judge's verdict)."""
    out = []
    for part in re.split(r", | and | left of | right of | above | below ", reading):
        words = part.split()
        if len(words) != 3 or words[0] not in QUANTITIES:
            return None
        shape = SINGULARS.get(words[-1], words[-1])
        out += [(words[1], shape)] * QUANTITIES[words[0]]
    return out


def main(folder: str) -> None:
    rows = [json.loads(line) for line in (Path(folder) / "items.jsonl").read_text().splitlines()]
    items = {item.id: item for item in build("composition", len({r["item"] for r in rows}), "test")}
    own = followed = total = unread = 0
    for row in rows:
        if row["category"] == "position":
            continue
        said = judge_reading(row["judge_reasoning"][0])
        shown = objects(said) if said else None
        judged, truth = is_right(row["verdicts"][0]), row["first_score"] == 1.0
        if shown is None:  # unreadable: keep the judge's verdict
            unread += 1
            verdict = judged
        else:  # the objects side by side, apart
            scene = Scene(tuple(Object(shape, color, 0.1 + (0.2 * i) % 0.8, 0.5, 0.1)
                                for i, (color, shape) in enumerate(shown)))
            verdict = satisfies(scene, items[row["item"]].target)
        total += 1
        own += judged == truth
        followed += verdict == truth
    print(f"{folder}: {total} drawings (position left out), agreement with the parser: the judge's verdict "
          f"{own / total:.3f}, a verdict that follows its reading {followed / total:.3f} ({unread} readings unread)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
