"""How often a model draws `make demo`'s prompt right, by ShapeWorld's parser, over seeds 0..N-1
(issue [5/5]'s goal: at least 3 of 4 seeds, think mode), and how often its colour and its number
of objects are right on their own.

    python scripts/demo_seeds.py [MODEL_DIR] [N]      (default: the embedded model, 4 seeds)
"""

from __future__ import annotations

import sys

import torch

from thinkgen import ThinkGenPipeline
from thinkgen.cli import DEMO_ANSWER, DEMO_PROMPT, EMBEDDED, demo_objects


def main(model: str = str(EMBEDDED), n: str = "4") -> None:
    pipe = ThinkGenPipeline.from_pretrained(model, torch_dtype=torch.float32)
    colours = {colour for colour, _ in DEMO_ANSWER}
    for think in (True, False):
        right = colour_right = count_right = 0
        for seed in range(int(n)):
            out = pipe([DEMO_PROMPT], think=think, seed=seed)
            found = demo_objects(out.images[0])
            right += found == DEMO_ANSWER
            colour_right += bool(found) and {colour for colour, _ in found} == colours
            count_right += len(found) == len(DEMO_ANSWER)
            print(f"{'think' if think else 'direct'} seed {seed}: rewrite {out.rewritten[0]!r}, "
                  f"parser reads {found} ({'right' if found == DEMO_ANSWER else 'wrong'})")
        print(f"{'think' if think else 'direct'}: {right} of {n} seeds right; only the asked colour: "
              f"{colour_right}; the asked number of objects: {count_right}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
