"""Stage-2 training throughput and model FLOP utilisation, both measured in one run.

    python benchmarks/bench_train.py          # ~1 minute on 2 CPU cores

Peak = the best fp32 matmul rate this machine reaches (square matmuls, same thread count);
model FLOPs per step are counted by torch.utils.flop_counter on one forward + backward of the
DiT stage's loss (the thinker is frozen and its states cached, as in training).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from thinkgen.tiny import tiny_pipeline  # noqa: E402
from thinkgen.train import config as C  # noqa: E402
from thinkgen.train.dit_stage import DiTStage  # noqa: E402


def matmul_peak(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = max(matmul_peak(n) for n in (512, 1024, 2048))
    with tempfile.TemporaryDirectory() as folder:
        # The calibrated ShapeWorld DiT (REFERENCE §6) on a tiny random thinker.
        config = C.from_dict({"stage": "dit_pretrain", "output_dir": f"{folder}/run", "thinker_dir": f"{folder}/th",
                              "run": {"batch_size": args.batch}, "data": {"cache_size": 512}})
        pipe = tiny_pipeline(seed=0, thinker_width=128, thinker_layers=4)
        pipe.thinker.model.save_pretrained(f"{folder}/th/thinker")
        pipe.thinker.tokenizer.save_pretrained(f"{folder}/th/tokenizer")
        stage = DiTStage(config)
    model = stage.model.train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = stage.batch(0, 0, args.batch)
    with FlopCounterMode(display=False) as counter:
        model(batch).backward()
    flops = counter.get_total_flops()
    optimizer.zero_grad()
    times = []
    for step in range(args.steps):
        batch = stage.batch(step, 0, args.batch)
        start = time.perf_counter()
        loss = model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    per_step = statistics.median(times[3:])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads")
    print(f"matmul peak (fp32):         {peak / 1e9:8.1f} GFLOP/s")
    print(f"DiT stage 2: {params / 1e6:.2f}M trainable params, batch {args.batch}, 64 tokens, text {batch['states'].shape[1]}")
    print(f"  step time (median):       {per_step * 1000:8.1f} ms  ({args.batch / per_step:.0f} samples/s)")
    print(f"  model FLOPs per step:     {flops / 1e9:8.2f} GFLOP (forward + backward)")
    print(f"  achieved:                 {flops / per_step / 1e9:8.1f} GFLOP/s = MFU {flops / per_step / peak:.1%}")


if __name__ == "__main__":
    main()
