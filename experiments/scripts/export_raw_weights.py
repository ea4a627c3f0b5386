"""A saved DiT-stage pipeline with a checkpoint's raw (not EMA) weights, to measure what EMA does.

A DiT stage saves its EMA weights in ``final/``; each checkpoint keeps the raw weights beside
them (``model.safetensors``: the bridge and transformer, as ``bridge.*`` and ``transformer.*``).

    python experiments/scripts/export_raw_weights.py runs/X/final runs/X/checkpoints/step-001700 runs/X/final_raw
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file

from thinkgen import ThinkGenPipeline


def main(final: str, checkpoint: str, target: str) -> None:
    pipe = ThinkGenPipeline.from_pretrained(final)
    weights = load_file(Path(checkpoint) / "model.safetensors")
    for prefix, module in (("bridge.", pipe.bridge), ("transformer.", pipe.transformer)):
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part)  # strict: the checkpoint must be of this very model
        except RuntimeError as error:
            raise SystemExit(f"error: {checkpoint} does not match {final}: {str(error).splitlines()[0]}") from None
    if Path(target).exists():
        shutil.rmtree(target)
    pipe.save_pretrained(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: export_raw_weights.py FINAL CHECKPOINT TARGET")
    main(*sys.argv[1:4])
