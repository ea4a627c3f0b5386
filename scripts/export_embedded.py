"""Write a trained pipeline as the embedded default model: half precision, safetensors.

    python scripts/export_embedded.py runs/shapeworld/dit_finetune/final thinkgen/assets/shapeworld
    python scripts/export_embedded.py PIPELINE OUT --thinker runs/shapeworld/judge_sft/final

``--thinker`` swaps in the weights of a thinker stage's output (same class and tokenizer, e.g. a
thinker taught more SFT); everything else comes from PIPELINE.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from thinkgen import ThinkGenPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a pipeline folder")
    parser.add_argument("target", type=Path, help="the folder to write (replaced)")
    parser.add_argument("--thinker", type=Path, default=None, help="a thinker stage's output folder")
    args = parser.parse_args()
    pipe = ThinkGenPipeline.from_pretrained(args.source, torch_dtype=torch.float32)
    if args.thinker is not None:
        weights = load_file(args.thinker / "thinker" / "model.safetensors")
        pipe.thinker.model.load_state_dict(weights, strict=True)
    for module in (pipe.thinker.model, pipe.bridge, pipe.transformer):
        module.to(torch.float16)
    if args.target.exists():
        shutil.rmtree(args.target)
    pipe.save_pretrained(args.target)
    size = sum(f.stat().st_size for f in args.target.rglob("*") if f.is_file())
    print(f"wrote {args.target} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
