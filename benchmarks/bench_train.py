"""Stage-2 training throughput and model FLOP utilisation (MFU), with the ways to raise it, all
measured in one run, interleaved.

    python benchmarks/bench_train.py          # ~5 minutes on 2 CPU cores (torch.compile: ~1.5 of them)

Peak = the best matmul rate this machine reaches (square matmuls, same thread count), in fp32 and
in bf16 (the bf16 case is held against the bf16 peak: a cheaper FLOP is not a better utilisation).
Model FLOPs per step are counted by torch.utils.flop_counter on one forward + backward of the DiT
stage's loss (the thinker is frozen and its states cached, as in training). Every case is one
training step (forward, backward, AdamW) on the same batch:

- ``eager`` — the stage as ``thinkgen train`` runs it without options (the baseline);
- ``fused AdamW`` — ``torch.optim.AdamW(fused=True)``;
- ``math attention`` — scaled_dot_product_attention's math kernel instead of the CPU flash kernel;
- ``bf16 autocast`` — ``run.mixed_precision: bf16`` (this CPU has AMX-BF16);
- ``torch.compile`` — ``run.compile: true`` (inductor: the elementwise ops fused into C++ loops);
- ``batch 2x`` — twice the micro-batch (MFU per its own FLOPs).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from thinkgen.tiny import tiny_pipeline
from thinkgen.train import config as C
from thinkgen.train.dit_stage import DiTStage

MFU_GOAL = 0.30  # issue 14: at least 30 % of the measured matmul peak


def matmul_peak(dtype: torch.dtype, sizes=(512, 1024, 2048), repeats: int = 10) -> float:
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        for _ in range(3):
            a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def count_flops(model, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        model(batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def training_step(model, optimizer, batch, context=contextlib.nullcontext):
    def step() -> None:
        with context():
            loss = model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile case")
    args = parser.parse_args()
    print(harness.environment(args.threads))
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as folder:
        # The calibrated ShapeWorld DiT (REFERENCE §6) on a tiny random thinker.
        config = C.from_dict({"stage": "dit_pretrain", "output_dir": f"{folder}/run", "thinker_dir": f"{folder}/th",
                              "run": {"batch_size": args.batch}, "data": {"cache_size": 512}})
        pipe = tiny_pipeline(seed=0, thinker_width=128, thinker_layers=4)
        pipe.thinker.model.save_pretrained(f"{folder}/th/thinker")
        pipe.thinker.tokenizer.save_pretrained(f"{folder}/th/tokenizer")
        stage = DiTStage(config)
    model = stage.model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = stage.batch(0, 0, args.batch)
    # Two steps' batches side by side: a stage's batch holds at most run.batch_size examples, so
    # asking it for twice as many would give the same batch again (as this benchmark did until
    # 2026-11-30, when its "batch 64" row timed 32 examples).
    second = stage.batch(1, 0, args.batch)
    double = {key: torch.cat([batch[key], second[key]]) for key in batch}
    assert len(double["x0"]) == 2 * len(batch["x0"]) == 2 * args.batch
    flops = {"single": count_flops(model, batch), "double": count_flops(model, double)}
    print(f"DiT stage 2: {sum(p.numel() for p in params) / 1e6:.2f}M trainable params, batch {args.batch}, "
          f"64 image tokens, text {batch['states'].shape[1]}; {flops['single'] / 1e9:.2f} GFLOP per step")

    def adamw(**kw):
        return torch.optim.AdamW(params, lr=1e-4, **kw)

    cases = {
        "eager": (training_step(model, adamw(), batch), "single", "fp32"),
        "fused AdamW": (training_step(model, adamw(fused=True), batch), "single", "fp32"),
        "math attention": (training_step(model, adamw(), batch, lambda: sdpa_kernel(SDPBackend.MATH)), "single", "fp32"),
        "bf16 autocast": (training_step(model, adamw(), batch, lambda: torch.autocast("cpu", torch.bfloat16)),
                          "single", "bf16"),
        f"batch {2 * args.batch}": (training_step(model, adamw(), double), "double", "fp32"),
    }
    if not args.no_compile:
        compiled = torch.compile(model)
        start = time.perf_counter()
        training_step(compiled, adamw(fused=True), batch)()
        print(f"torch.compile: first step (compilation) {time.perf_counter() - start:.0f} s")
        cases["torch.compile + fused AdamW"] = (training_step(compiled, adamw(fused=True), batch), "single", "fp32")
    times, idle = harness.measure({name: fn for name, (fn, _, _) in cases.items()}, args.repeats, "eager")
    print(f"  {'case':<28} samples/s   MFU (vs the peak of its precision)")
    for name, (_, which, precision) in cases.items():
        per_step = statistics.median(times[name])
        samples = args.batch * (2 if which == "double" else 1)
        mfu = flops[which] / per_step / peak[precision]
        print(f"  {name:<28} {samples / per_step:8.0f}    {mfu:6.1%} of the {precision} peak"
              f"{'  (goal met)' if mfu >= MFU_GOAL else ''}")
    print(f"  {idle}")


if __name__ == "__main__":
    main()
