"""Write a thinker stage's output as a shippable thinker folder: half precision, safetensors (the
embedded judge: ``thinkgen/assets/shapeworld_judge``).

    python experiments/scripts/export_thinker.py runs/shapeworld/judge_sft/final thinkgen/assets/shapeworld_judge
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from thinkgen.train.thinker_stage import load_thinker, save_thinker


def main(source: str, target: str) -> None:
    model, text, config = load_thinker(source)
    target_path = Path(target)
    if target_path.exists():
        shutil.rmtree(target_path)
    save_thinker(target_path, model.to(torch.float16), text, config)
    size = sum(f.stat().st_size for f in target_path.rglob("*") if f.is_file())
    print(f"wrote {target_path} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
