"""ShapeWorld generation and parsing speed (single process).

    python benchmarks/bench_world.py            # ~15 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import random
import time

import harness

from thinkgen.world import SceneSampler, canonical, describe, parse, render, target_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    print(harness.environment(1) + " (ShapeWorld is plain Python and numpy)")
    with harness.IdleCheck() as idle:

        sampler, words = SceneSampler(rng=random.Random(0)), random.Random(1)
        start = time.perf_counter()
        rows = []
        for _ in range(args.n):
            scene = sampler()
            target = target_of(scene)
            rows.append((scene, canonical(target), describe(target, words)))
        t_scenes = time.perf_counter() - start
        print(f"{args.n} scenes + canonical and varied captions: {t_scenes:6.2f} s  ({args.n / t_scenes:,.0f}/s)")

        start = time.perf_counter()
        images = [render(scene, args.resolution) for scene, _, _ in rows]
        t_render = time.perf_counter() - start
        print(f"{args.n} renders at {args.resolution} px:                {t_render:6.2f} s  ({args.n / t_render:,.0f}/s)")

        start = time.perf_counter()
        for image in images:
            parse(image)
        t_parse = time.perf_counter() - start
        print(f"{args.n} parses at {args.resolution} px:                 {t_parse:6.2f} s  ({args.n / t_parse:,.0f}/s)")
        print(f"scenes + captions + renders: {t_scenes + t_render:.2f} s for {args.n}")

    print(idle)

if __name__ == "__main__":
    main()
