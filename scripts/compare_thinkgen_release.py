"""Check thinkgen's ThinkGen DiT against the release's own code, on the same tiny random weights.

Needs a checkout of the ThinkGen release (github.com/jiaosiyuu/ThinkGen) and ``einops`` (which the
release imports; thinkgen does not). Nothing of the release is copied into thinkgen: this script
imports it from the path you give, builds both models at a tiny config, copies thinkgen's weights
into the release's class with ``load_state_dict(strict=True)``, and prints the largest output
difference in fp32 and bf16, with and without reference images.

    pip install einops --target /tmp/extra
    PYTHONPATH=/tmp/extra python scripts/compare_thinkgen_release.py --release /path/to/ThinkGen
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="a checkout of the ThinkGen release")
    args = parser.parse_args()
    sys.path.insert(0, args.release)
    from ThinkGen.models.transformers import ThinkGenTransformer2DModel as Release
    from ThinkGen.models.transformers.repo import ThinkGenRotaryPosEmbed

    from thinkgen.models import ThinkGenTransformer2DModel

    # the release hard-codes 23 prepadding states of width 8192, hence text_feat_dim 4096
    config = dict(patch_size=2, in_channels=4, hidden_size=48, num_layers=2, num_refiner_layers=1,
                  num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 8, 8),
                  axes_lens=(1024, 1024, 1024), text_feat_dim=4096, timestep_scale=1000.0)
    torch.manual_seed(0)
    ours = ThinkGenTransformer2DModel(**config).eval()
    for p in ours.parameters():  # away from the zero start, so every path matters
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(0.5, 1.5)
    release = Release(**config).eval()
    release.load_state_dict(ours.state_dict(), strict=True)
    freqs = ThinkGenRotaryPosEmbed.get_freqs_cis(config["axes_dim_rope"], config["axes_lens"], theta=10000)
    print(f"{'dtype':<10}{'references':<12}max |thinkgen - release|")
    for dtype in (torch.float32, torch.bfloat16):
        a_model, b_model = ours.to(dtype), release.to(dtype)
        torch.manual_seed(1)
        latents = torch.randn(2, 4, 8, 12, dtype=dtype)
        text = torch.randn(2, 7, 8192, dtype=dtype)
        mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])  # two caption lengths in one batch
        t = torch.tensor([0.3, 0.3]).to(dtype)
        refs = [[torch.randn(4, 4, 8, dtype=dtype)], [torch.randn(4, 8, 4, dtype=dtype), torch.randn(4, 4, 4, dtype=dtype)]]
        for references in (None, refs):
            with torch.no_grad():
                a = a_model(latents, t, text, mask, references)
                b = b_model(latents, t, text, freqs, mask, ref_image_hidden_states=references)
            print(f"{str(dtype).removeprefix('torch.'):<10}{'yes' if references else 'no':<12}"
                  f"{(a.float() - b.float()).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
