"""A training step sharded with FSDP2 against the same step replicated with DDP, at equal global batch.

    python benchmarks/bench_fsdp.py            # ~3 minutes on 2 CPU cores

Both run on 2 processes (torchrun, gloo, one thread each) the DiT finetune of a tiny ThinkGen-release
folder on 16 captioned images (the stage of ``thinkgen train`` with ``dataset.source: images``),
global batch 8. Each launch times ``--steps`` steps after ``--warmup`` (forward, backward, clipping,
AdamW; the batch is built outside the timed region) and reports its median; launches rotate
through the cases (A B C, B C A, ...) so that a change in the machine's load hits all. The ratio is the median of
the per-round ratios. Issue 42's goal: FSDP costs at most 1.3x DDP. ``fsdp, no reshard`` keeps each
block's gathered weights from forward to backward (``parallel.reshard_after_forward: false``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

GOAL = 1.3


# (strategy, reshard after forward, AdamW implementation): each engine as `thinkgen train` runs it by
# default (ddp: torch's own choice, the per-parameter loop on CPU; fsdp: foreach), and DDP with foreach too
CASES = {"ddp": ("ddp", True, None), "ddp, foreach AdamW": ("ddp", True, "foreach"),
         "fsdp": ("fsdp", True, "foreach"), "fsdp, no reshard": ("fsdp", False, "foreach")}


def inner(case: str, folder: Path, steps: int, warmup: int) -> None:
    """One launch (run under torchrun): build the stage, wrap it, time its steps."""
    import torch

    from thinkgen.train import config as C
    from thinkgen.train.parallel import make_engine
    from thinkgen.train.run import build_stage

    torch.set_num_threads(1)
    strategy, reshard, implementation = CASES[case]
    config = C.from_dict({
        "stage": "dit_finetune", "output_dir": str(folder / f"out-{strategy}"), "init": str(folder / "release"),
        "dataset": {"source": "images", "path": str(folder / "images"), "resolution": 32},
        "run": {"steps": steps + warmup, "batch_size": 8, "seed": 0}, "parallel": {"strategy": strategy}})
    engine = make_engine(strategy, "no", reshard)
    stage = build_stage(config)
    model = stage.model
    wrapped, optimizer = engine.prepare(model, lambda: torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, **({"foreach": True} if implementation else {})))
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    shard = 8 // engine.world
    times = []
    for step in range(steps + warmup):
        batch = engine.to_device(stage.batch(step, engine.rank * shard, shard))
        engine.barrier()
        start = time.perf_counter()
        loss = wrapped(batch)
        engine.backward(loss)
        engine.clip_grad_norm(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        engine.barrier()
        times.append(time.perf_counter() - start)
    if engine.is_main:
        print(json.dumps({"case": case, "median_s": statistics.median(times[warmup:])}))
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--inner", choices=sorted(CASES))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--dit-width", type=int, default=0, help="a wider DiT than the test fixture's (0: as is)")
    parser.add_argument("--dit-layers", type=int, default=2)
    args = parser.parse_args()
    if args.inner:
        return inner(args.inner, args.folder, args.steps, args.warmup)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_train_dataset import write_images

    from thinkgen.tiny import tiny_thinkgen_release

    print(harness.environment(1), "| 2 processes (torchrun, gloo), 1 thread each")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        release = tiny_thinkgen_release()
        if args.dit_width:  # the same classes, a DiT of more weight per block (collectives cost less in share)
            from thinkgen.models import ThinkGenTransformer2DModel

            heads = args.dit_width // 64
            release.transformer = ThinkGenTransformer2DModel(
                patch_size=2, in_channels=4, hidden_size=args.dit_width, num_layers=args.dit_layers,
                num_refiner_layers=1, num_attention_heads=heads, num_kv_heads=heads, multiple_of=64,
                axes_dim_rope=(16, 24, 24), text_feat_dim=64, num_prepadding=3, prepad_dim=128)
        release.save_pretrained(folder / "release")
        size = sum(p.numel() for p in release.transformer.parameters())
        print(f"DiT: {type(release.transformer).__name__}, {size / 1e6:.2f}M parameters")
        write_images(folder / "images")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        rows: dict[str, list[float]] = {case: [] for case in CASES}
        names = list(CASES)
        for round_ in range(args.rounds):
            for strategy in names[round_ % len(names):] + names[: round_ % len(names)]:  # rotated: A B C, B C A
                done = subprocess.run(
                    [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29890",
                     __file__, "--inner", strategy, "--folder", str(folder), "--steps", str(args.steps),
                     "--warmup", str(args.warmup)], env=env, capture_output=True, text=True, check=True)
                line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
                rows[strategy].append(json.loads(line)["median_s"])
    for case, values in rows.items():
        line = (f"{case:>18}: median step {statistics.median(values) * 1000:7.1f} ms "
                f"(launches: {', '.join(f'{v * 1000:.1f}' for v in values)})")
        for baseline in ("ddp", "ddp, foreach AdamW") if case.startswith("fsdp") else ():
            ratios = [f / d for f, d in zip(values, rows[baseline], strict=True)]
            ratio = statistics.median(ratios)
            line += (f"\n{'':>18}/ {baseline}: {ratio:.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)}), "
                     f"goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}")
        print(line)


if __name__ == "__main__":
    main()
