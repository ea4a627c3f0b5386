"""How often the thinker writes what it should, measured on its text alone (no DiT involved).

    python scripts/eval_thinker.py runs/shapeworld/thinker_sft/final [--n 120]

Every thinker: the rewrite after ``</think>`` equals the canonical caption (reasoning test and
train splits, composition and text test splits). A thinker that sees is also asked, with the image:
*editing*: the rewrite equals the canonical edit of the editing test split; *reflection*: the
verdict fixes the wrong image, or says that a right one is right (the reflection suite's own
score); and for both, *perception*: the trace's "The image shows ..." is the image's canonical
caption.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

from PIL import Image

from thinkgen.reflection import judge_prompt
from thinkgen.train.thinker_stage import as_thinker, load_thinker
from thinkgen.world import canonical, render, suites, target_of


def _report(name: str, hits: dict[str, list[bool]], example: str) -> None:
    overall = sum(sum(v) for v in hits.values()) / sum(len(v) for v in hits.values())
    summary = ", ".join(f"{k} {sum(v) / len(v):.2f} ({len(v)})" for k, v in sorted(hits.items()))
    print(f"{name}: {overall:.3f} overall; {summary}")
    print(f"  e.g. {example}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--image-size", type=int, default=32, help="px of the images a thinker that sees is shown")
    args = parser.parse_args()
    model, text, config = load_thinker(args.folder)
    thinker = as_thinker(model.eval(), text, config)
    for suite, split in (("reasoning", "test"), ("reasoning", "train"), ("composition", "test"), ("text", "test")):
        items = suites.build(suite, args.n, split)
        hits = defaultdict(list)
        for start in range(0, len(items), 32):
            batch = items[start : start + 32]
            out = thinker.encode([i.prompt for i in batch], think=True)
            for item, rewrite in zip(batch, out.rewritten, strict=True):
                if suite == "text":  # a tokenizer that isolates capitals may decode `"AB"` as `" A B "`
                    rewrite, wanted = rewrite.replace(" ", ""), item.canonical.replace(" ", "")
                else:
                    wanted = item.canonical
                hits[item.group or item.category].append(rewrite == wanted)
        _report(f"{suite}/{split}: rewrite == canonical", hits,
                f"{batch[0].prompt!r} -> {out.reasoning[0]!r} | {out.rewritten[0]!r}")
    if thinker.processor is None:
        return

    def seeing(name, requests, scenes, judge):
        hits, seen, example = defaultdict(list), [], ""
        for start in range(0, len(requests), 32):
            images = [[Image.fromarray(render(scene, args.image_size))] for scene in scenes[start : start + 32]]
            out = thinker.encode(requests[start : start + 32], think=True, images=images)
            example = example or f"{requests[start]!r} -> {out.reasoning[0]!r} | {out.rewritten[0]!r}"
            for offset, (reasoning, rewrite) in enumerate(zip(out.reasoning, out.rewritten, strict=True)):
                category, right = judge(start + offset, rewrite)
                hits[category].append(right)
                shown = re.search(r"The image shows (.*?)\.", reasoning)
                scene = scenes[start + offset]
                seen.append(bool(shown) and shown.group(1) == canonical(target_of(scene)))
        _report(name, hits, example)
        print(f"  perception (the trace names what the image shows): {sum(seen) / len(seen):.3f}")

    edits = suites.build("editing", args.n, "test")
    seeing("editing/test: rewrite == canonical edit", [i.prompt for i in edits], [i.source for i in edits],
           lambda i, answer: (edits[i].category, answer == edits[i].canonical))
    wrong = suites.build("reflection", args.n, "test")
    seeing("reflection/test: the verdict fixes the image", [judge_prompt(i.prompt) for i in wrong],
           [i.source for i in wrong],
           lambda i, answer: (wrong[i].category, suites.score_instruction(wrong[i], answer).score == 1.0))


if __name__ == "__main__":
    main()
