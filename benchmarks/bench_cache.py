"""Step caching (diffusers' hooks, ``thinkgen.caching``) on the embedded model: DiT sampling time
against no cache, interleaved in one run, and the largest pixel change.

    python benchmarks/bench_cache.py [--rounds 5] [--batch 8] [--steps 20]

The quality side (ShapeWorld composition, exact) comes from ``thinkgen eval --cache ...``
(docs/guides/speed.md has the commands and the table).
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)
import torch

SETTINGS = ["none", "first_block:threshold=0.05", "first_block:threshold=0.1", "first_block:threshold=0.2",
            "taylorseer:cache_interval=2", "taylorseer:cache_interval=3"]


def main() -> None:
    from thinkgen import ThinkGenPipeline
    from thinkgen.cli import EMBEDDED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(harness.environment(args.threads))
    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED)
    prompts = [f"{n} {c} {s}" for n, c, s in zip(["one", "two", "three"] * 3, ["red", "blue", "green"] * 3,
                                                  ["circles", "squares", "stars"] * 3, strict=True)][: args.batch]
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    largest: dict[str, float] = {}
    with harness.IdleCheck() as idle:
        _rounds(pipe, prompts, args, times, largest)
    base = statistics.median(times["none"])
    print(f"{'cache':<32}{'median s':>10}{'ratio':>8}{'max |pixel change|':>22}")
    for name in SETTINGS:
        ratios = [b / t for b, t in zip(times["none"], times[name], strict=True)]
        print(f"{name:<32}{statistics.median(times[name]):>10.3f}{statistics.median(ratios):>7.2f}x"
              f"{largest.get(name, 0.0):>22.3f}")
    print(f"(end to end, direct mode, batch {args.batch}, {args.steps} steps; ratio = no-cache time / time, "
          f"median over {args.rounds} interleaved rounds; no-cache median {base:.3f} s)")
    print(idle)


def _rounds(pipe, prompts, args, times, largest) -> None:
    reference = None
    for _ in range(args.rounds):
        for name in SETTINGS:
            pipe.disable_cache()
            if name != "none":
                pipe.enable_cache(name)
            start = time.perf_counter()
            out = pipe(prompts, think=False, seed=0, num_inference_steps=args.steps, output_type="pt").images
            times[name].append(time.perf_counter() - start)
            if name == "none":
                reference = out
            else:
                largest[name] = (out - reference).abs().max().item()
    pipe.disable_cache()


if __name__ == "__main__":
    main()
