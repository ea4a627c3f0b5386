"""How faithfully an autoencoder round-trips ShapeWorld: the ceiling a latent DiT can reach.

    python experiments/scripts/autoencoder_fidelity.py runs/shapeworld/autoencoder/final [--n 480] [--suite text]

Renders the ground-truth scenes of a test split (composition by default, at the suite's own
resolution: 64 px for text), encodes and decodes them (the posterior mode, as the pipeline does),
and prints the share whose parse is unchanged (same objects, shapes and colours; for text, the
same string) and the mean absolute pixel error (0-255).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from diffusers import AutoencoderKL

from thinkgen.generator import decode_latents, encode_images
from thinkgen.world import suites
from thinkgen.world.parse import parse
from thinkgen.world.render import render


def reading(scene_image: np.ndarray) -> tuple[list[tuple[str, str]], str]:
    """What the parser reads: the confident objects, and the text."""
    parsed = parse(scene_image)
    return sorted((o.shape, o.color) for o in parsed.objects if o.confidence >= 0.5), parsed.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("autoencoder")
    parser.add_argument("--n", type=int, default=480)
    parser.add_argument("--suite", choices=["composition", "text"], default="composition")
    parser.add_argument("--resolution", type=int, default=None, help="default: the suite's own (32 px, text 64 px)")
    args = parser.parse_args()
    resolution = args.resolution or suites.RESOLUTION.get(args.suite, 32)
    vae = AutoencoderKL.from_pretrained(args.autoencoder).eval()
    items = suites.build(args.suite, args.n, "test")
    images = np.stack([render(item.scene, resolution) for item in items])  # (N, H, W, 3)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        decoded = decode_latents(vae, encode_images(vae, pixels))
    back = ((decoded.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    same = [reading(a) == reading(b) for a, b in zip(images, back, strict=True)]
    result = {"suite": args.suite, "resolution": resolution, "scenes": len(items), "parse_unchanged": float(np.mean(same)),
              "mean_abs_error": float(np.abs(back.astype(float) - images).mean())}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
