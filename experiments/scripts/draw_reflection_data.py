"""Draw a model's own reflection data: train-split composition (or reasoning) prompts drawn by MODEL, each drawing
read by ShapeWorld's parser and labelled with what a judge should answer ("the image is right", or
the edit that fixes it; `thinkgen.world.corpora.drawn_reflection_row`). A thinker SFT reads the
folder with `data.drawn_reflection: OUT`, so the judge learns on the drawings it will judge, not
only on clean renders.

    python experiments/scripts/draw_reflection_data.py MODEL OUT [--suite composition] [--items 50] [--per-prompt 4] \
        [--modes think,direct] [--tags position,color_attr] [--seed 0]

--tags keeps the composition prompts of some GenEval tags only; --seed draws other train prompts.

Writes OUT/images/*.png and OUT/rows.jsonl; prints the share of drawings right and left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from thinkgen import ThinkGenPipeline
from thinkgen.world.corpora import DRAWN_REFLECTION_ROWS, drawn_reflection_row
from thinkgen.world.edits import NO_EDIT
from thinkgen.world.parse import parse
from thinkgen.world.suites import TAGS, composition_items, reasoning_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--suite", choices=["composition", "reasoning"], default="composition")
    parser.add_argument("--items", type=int, default=50, help="train items (composition: per tag)")
    parser.add_argument("--per-prompt", type=int, default=4, help="drawings per prompt and mode")
    parser.add_argument("--modes", default="think,direct", help="think, direct or both")
    parser.add_argument("--batch", type=int, default=8, help="prompts per call")
    parser.add_argument("--tags", default=None, help="composition: only these GenEval tags (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",")]
    if not modes or set(modes) - {"think", "direct"}:
        parser.error("--modes is think, direct or think,direct")
    tags = [t.strip() for t in args.tags.split(",")] if args.tags else list(TAGS)
    if set(tags) - set(TAGS) or (args.tags and args.suite != "composition"):
        parser.error(f"--tags is for --suite composition, and each tag one of {', '.join(TAGS)}")
    pipe = ThinkGenPipeline.from_pretrained(args.model, torch_dtype=torch.float32)
    items = ([i for i in composition_items(args.items, "train", seed=args.seed) if i.category in tags]
             if args.suite == "composition" else reasoning_items(args.items, "train", seed=args.seed))
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    rows, right, left_out = [], 0, 0
    bar = tqdm(total=len(items) * len(modes) * args.per_prompt, desc="draw")
    for mode in modes:
        for start in range(0, len(items), args.batch):
            batch = items[start : start + args.batch]
            out = pipe([item.prompt for item in batch], think=mode == "think", num_images_per_prompt=args.per_prompt,
                       seed=args.seed + start * args.per_prompt)
            for index, image in enumerate(out.images):
                item = batch[index // args.per_prompt]
                row = drawn_reflection_row(item.prompt, item.target, parse(image))
                if row is None:
                    left_out += 1
                    continue
                name = f"images/{item.id}_{mode}_{index % args.per_prompt}.png"
                image.save(args.out / name)
                rows.append({"image": name, **row})
                right += row["verdict"] == NO_EDIT
            bar.update(len(out.images))
    bar.close()
    (args.out / DRAWN_REFLECTION_ROWS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = len(rows) + left_out
    print(f"{total} drawings: {right} right ({right / total:.3f}), {len(rows) - right} with a fix, "
          f"{left_out} left out (no edit gets nearer); wrote {args.out / DRAWN_REFLECTION_ROWS}")


if __name__ == "__main__":
    main()
