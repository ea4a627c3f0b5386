"""How often the thinker's rewrite equals the canonical target caption (no image involved).

    python scripts/eval_thinker.py runs/shapeworld/thinker_sft/final [--n 120]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from thinkgen.thinker import Thinker
from thinkgen.train.thinker_stage import load_thinker
from thinkgen.world import suites


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=120)
    args = parser.parse_args()
    model, tokenizer, config = load_thinker(args.folder)
    thinker = Thinker(model.eval(), tokenizer, config=config)
    for suite, split in (("reasoning", "test"), ("reasoning", "train"), ("composition", "test")):
        items = suites.build(suite, args.n, split)
        hits = defaultdict(list)
        for start in range(0, len(items), 32):
            batch = items[start : start + 32]
            out = thinker.encode([i.prompt for i in batch], think=True)
            for item, rewrite in zip(batch, out.rewritten, strict=True):
                hits[item.group or item.category].append(rewrite == item.canonical)
        summary = ", ".join(f"{k} {sum(v) / len(v):.2f} ({len(v)})" for k, v in sorted(hits.items()))
        print(f"{suite}/{split}: rewrite == canonical: {summary}")
        print(f"  e.g. {batch[0].prompt!r} -> {out.reasoning[0]!r} | {out.rewritten[0]!r}")


if __name__ == "__main__":
    main()
