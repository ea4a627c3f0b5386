"""``thinkgen train --plan`` against the memory a training step really takes, on the tiny configs.

    python benchmarks/bench_plan.py            # ~1 minute on 2 CPU cores

For the DiT finetune of tiny T2G and ThinkGen-release folders and the chat SFT of the release's
thinker (one process, FSDP2 engine, fp32, global batch 4), the plan for 1 GPU is compared with
the tensor memory at the peak of one training step, as torch's ``MemTracker``
(``torch.distributed._tools.mem_tracker``) counts it: every tensor's storage, by category
(weights, gradients, optimizer states, activations, temporaries), the frozen models included. The
step is the third one (AdamW's states exist from the first); AdamW runs foreach, as under FSDP. The plan counts text tokens as
``data.max_length``; it is set here to the longest text of the measured batch, so both count the
same tokens. Issue 42's goal: the plan within 10 % of the measured peak.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)
import torch

GOAL = 0.10


def measure(config, steps: int = 3) -> tuple[int, int, dict[str, int]]:
    """(peak bytes of the third step, longest text of its batch, the peak's bytes by category)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from thinkgen.train.parallel import ShardedEngine
    from thinkgen.train.run import build_stage

    stage = build_stage(config)
    engine = ShardedEngine("no")
    model = stage.model
    wrapped, optimizer = engine.prepare(model, lambda: torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    pipe = getattr(stage, "pipe", None)
    frozen = [pipe.thinker.model, pipe.vae] if pipe is not None else []  # resident during a DiT step
    peak, text, parts = 0, 0, {}
    for step in range(steps):
        batch = stage.batch(step, 0, config.run.batch_size)
        tracker = MemTracker()
        tracker.track_external(wrapped, optimizer, *frozen)
        with tracker if step == steps - 1 else contextlib.nullcontext():
            loss = wrapped(batch)
            loss.backward()
            engine.clip_grad_norm(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if step == steps - 1:
            snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
            peak = snapshot["Total"]
            parts = {str(k).split(".")[-1]: v for k, v in snapshot.items() if k != "Total" and v}
            text = int(batch["mask"].sum(1).max()) if "mask" in batch else batch["input_ids"].shape[1]
    engine.close()
    return peak, text, parts


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from diffusers import QwenImagePipeline

    from tests.test_train_chat import write_chat
    from tests.test_train_dataset import write_images
    from thinkgen.tiny import tiny_qwen_image, tiny_thinkgen_release
    from thinkgen.train import config as C
    from thinkgen.train.plan import plan

    print(harness.environment(2))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        QwenImagePipeline(**tiny_qwen_image()).save_pretrained(root / "t2g")
        tiny_thinkgen_release().save_pretrained(root / "release")
        write_images(root / "images")
        chat = write_chat(root, images=False)
        cases = {
            "T2G DiT finetune": {"stage": "dit_finetune", "init": str(root / "t2g"),
                                 "dataset": {"source": "images", "path": str(root / "images"), "resolution": 32,
                                             "buckets": False}},
            "ThinkGen-release DiT finetune": {"stage": "dit_finetune", "init": str(root / "release"),
                                              "dataset": {"source": "images", "path": str(root / "images"),
                                                          "resolution": 32, "buckets": False}},
            "ThinkGen-release thinker SFT": {"stage": "thinker_sft", "init": str(root / "release"),
                                             "dataset": {"source": "chat", "path": str(chat)}},
        }
        print(f"{'case':<32}{'plan':>12}{'measured':>12}{'plan / measured':>18}")
        worst = 0.0
        for name, values in cases.items():
            base = {**values, "output_dir": str(root / "out"), "parallel": {"strategy": "fsdp"},
                    "run": {"steps": 3, "batch_size": 4, "seed": 0}, "data": {"max_length": 512}}
            measured, text, parts = measure(C.from_dict(base))
            result = plan(C.from_dict({**base, "data": {"max_length": text}}), 1, 80)
            planned = result.total
            print("   plan: " + ", ".join(f"{w.split(' (')[0].split(',')[0]} {b / 2**20:.2f}" for w, b in result.rows))
            worst = max(worst, abs(planned / measured - 1))
            print(f"{name:<32}{planned / 2**20:>9.2f} MiB{measured / 2**20:>9.2f} MiB{planned / measured:>17.2f}x"
                  f"   measured: {', '.join(f'{k} {v / 2**20:.2f}' for k, v in parts.items())}")
    print(f"largest gap: {worst:.0%}; goal within {GOAL:.0%}: {'met' if worst <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
