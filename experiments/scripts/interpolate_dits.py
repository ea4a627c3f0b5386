"""Average the DiT and bridge weights of two pipelines that share their thinker and autoencoder:
``(1 - alpha) * A + alpha * B``, written as a pipeline folder (B's other parts).

    python experiments/scripts/interpolate_dits.py A B OUT --alpha 0.5 [--half]

Why: a model trained further (B) from a model A and A itself lie in one basin, and the points
between them often keep most of B's gains on what B was trained for and A's behaviour on inputs
neither was trained on (weight-space ensembling, "WiSE-FT", Wortsman et al. 2022). Here B is the
DiT trained longer on captions, which draws compositions better but riddles' direct-mode states
worse than A (docs/dit_experiments.md, "Session 20").
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from thinkgen import ThinkGenPipeline
from thinkgen.cli import _quiet_libraries


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for every floating-point tensor (others, if any, must match)."""
    if a.keys() != b.keys():
        raise ValueError(f"the two state dicts differ in keys: {sorted(a.keys() ^ b.keys())[:4]}")
    mixed = {}
    for name, left in a.items():
        right = b[name]
        if left.shape != right.shape:
            raise ValueError(f"{name}: shape {tuple(left.shape)} against {tuple(right.shape)}")
        if left.is_floating_point():
            mixed[name] = torch.lerp(left.float(), right.float(), alpha).to(left.dtype)
        elif torch.equal(left, right):
            mixed[name] = left
        else:
            raise ValueError(f"{name}: non-float tensors differ")
    return mixed


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="a pipeline folder (alpha = 0)")
    parser.add_argument("b", help="a pipeline folder trained from A (alpha = 1)")
    parser.add_argument("target", type=Path, help="the folder to write (replaced)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of B, in [0, 1] (default 0.5)")
    parser.add_argument("--half", action="store_true", help="write half precision, as the embedded model")
    args = parser.parse_args()
    _quiet_libraries()  # one error line, not loading bars, on stderr
    if not 0.0 <= args.alpha <= 1.0:
        sys.exit(f"error: --alpha must be in [0, 1], got {args.alpha}")
    try:
        a = ThinkGenPipeline.from_pretrained(args.a, torch_dtype=torch.float32)
        b = ThinkGenPipeline.from_pretrained(args.b, torch_dtype=torch.float32)
        # the two must read the same thinker states and decode the same latents
        for part, left, right in (("thinker", a.thinker.model, b.thinker.model), ("vae", a.vae, b.vae)):
            if not _identical(left.state_dict(), right.state_dict()):
                raise ValueError(f"the two pipelines' {part}s differ: only the DiT and bridge are averaged")
        for part in ("transformer", "bridge"):
            module = getattr(b, part)
            module.load_state_dict(interpolate(getattr(a, part).state_dict(), module.state_dict(), args.alpha))
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    if args.half:
        for module in (b.thinker.model, b.bridge, b.transformer):
            module.to(torch.float16)
    if args.target.exists():
        shutil.rmtree(args.target)
    b.save_pretrained(args.target)
    print(f"wrote {args.target} (alpha {args.alpha:g})")


if __name__ == "__main__":
    main()
