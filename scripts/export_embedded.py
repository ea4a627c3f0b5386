"""Write a trained pipeline as the embedded default model: half precision, safetensors.

    python scripts/export_embedded.py runs/shapeworld/dit_finetune/final thinkgen/assets/shapeworld
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from thinkgen import ThinkGenPipeline


def main(source: str, target: str) -> None:
    pipe = ThinkGenPipeline.from_pretrained(source)
    for module in (pipe.thinker.model, pipe.bridge, pipe.transformer):
        module.to(torch.float16)
    target_path = Path(target)
    if target_path.exists():
        shutil.rmtree(target_path)
    pipe.save_pretrained(target_path)
    size = sum(f.stat().st_size for f in target_path.rglob("*") if f.is_file())
    print(f"wrote {target_path} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
