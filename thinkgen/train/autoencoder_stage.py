"""The ``autoencoder`` stage: a small diffusers ``AutoencoderKL`` trained on ShapeWorld renders.

Real think-then-generate systems draw in a VAE's latent space, and their decoders, not the DiT,
draw the crisp edges. This stage gives the tiny model the same split: a convolutional encoder and
decoder (``ae.block_out_channels``: one halving of the side per extra block) trained on random
scenes of one to four objects, some with text (``data.text_fraction``: a share of the text
suite's train words alone), with an L1 + MSE reconstruction loss and a small
KL term (``ae.kl_weight``, as Stable Diffusion's VAE keeps its latents near a unit Gaussian).

``finalize`` measures the latents' mean and spread on held-back scenes and writes them as the
config's ``shift_factor`` and ``scaling_factor``, so the DiT sees latents of unit variance; the
folder is a plain ``AutoencoderKL.from_pretrained`` folder (what ``dit.autoencoder`` names).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image
from torch import nn

from ..world import suites
from ..world.render import render
from ..world.scene import SHAPES, SceneSampler
from .config import TrainConfig
from .loop import load_ema


def build_autoencoder(config: TrainConfig) -> AutoencoderKL:
    a = config.ae
    blocks = len(a.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=a.latent_channels,
        block_out_channels=tuple(a.block_out_channels), layers_per_block=a.layers_per_block,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        norm_num_groups=a.norm_num_groups, sample_size=a.resolution)


class ReconstructionModule(nn.Module):
    """``forward(batch)``: L1 + MSE reconstruction of a posterior sample, plus ``kl_weight`` KL."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float) -> None:
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["images"]  # (B, 3, H, W) in [-1, 1]
        posterior = self.vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * batch["noise"]  # reparameterised, noise fixed per (seed, step)
        recon = self.vae.decode(z).sample  # (B, 3, H, W)
        loss = F.l1_loss(recon, images) + F.mse_loss(recon, images)
        return loss + self.kl_weight * posterior.kl().mean() / images[0].numel()


class AutoencoderStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        torch.manual_seed(config.run.seed)
        self.vae = AutoencoderKL.from_pretrained(config.init) if config.init else build_autoencoder(config)
        self.resolution = config.ae.resolution
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.model = ReconstructionModule(self.vae, config.ae.kl_weight)
        sampler = SceneSampler(max_objects=config.data.max_objects, shapes=SHAPES, text_probability=0.2,
                               rng=random.Random(f"ae-{config.run.seed}"))
        count = config.data.cache_size
        words = round(count * config.data.text_fraction)
        # data.text_fraction: that share are the text suite's train words alone, as its items draw them
        # (the test words never), for an autoencoder that must carry glyphs (README: 0/200 without)
        scenes = [item.scene for item in suites.text_items(words, "train", seed=config.run.seed)] if words else []
        scenes += [sampler() for _ in range(count - len(scenes))]
        self.images = self._render(scenes)  # (N, H, W, 3) uint8
        sampler.rng = random.Random(f"ae-held-out-{config.run.seed}")
        self.held_out = self._render([sampler() for _ in range(512)])  # samples and latent statistics

    def _render(self, scenes: list) -> torch.Tensor:
        return torch.from_numpy(np.stack([render(s, self.resolution) for s in scenes]))

    def batch(self, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.config.run.seed}-{step}")
        picks = [rng.randrange(len(self.images)) for _ in range(self.config.run.batch_size)][start : start + size]
        side = self.resolution // self.factor
        shape = (self.vae.config.latent_channels, side, side)
        # one generator per example, so any split of the global batch across processes draws the same
        noise = torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(
            hash((self.config.run.seed, step, start + i)) & 0x7FFFFFFF)) for i in range(len(picks))])
        return {"images": self.images[picks].permute(0, 3, 1, 2).float() / 127.5 - 1, "noise": noise}

    @torch.no_grad()
    def samples(self, step: int, directory: Path) -> Image.Image:
        """Eight held-back scenes (top) and their reconstructions (bottom), 2x."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        images = self.held_out[:8].permute(0, 3, 1, 2).float() / 127.5 - 1
        recon = self.vae.decode(self.vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
        both = torch.cat([images, recon]).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
        side = 2 * self.resolution
        grid = Image.new("RGB", (8 * (side + 2), 2 * (side + 2)), "gray")
        for i, array in enumerate(both):
            grid.paste(Image.fromarray(array).resize((side, side), Image.NEAREST), ((i % 8) * (side + 2), (i // 8) * (side + 2)))
        grid.save(directory / f"step-{step:06d}.png")
        return grid

    @torch.no_grad()
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        load_ema(self.model, ema)
        self.vae.eval()
        images = self.held_out.permute(0, 3, 1, 2).float() / 127.5 - 1
        z = self.vae.encode(images).latent_dist.mode()
        # one shift and one scale for all channels, as AutoencoderKL's config holds scalars
        self.vae.register_to_config(shift_factor=float(z.mean()), scaling_factor=float(1 / z.std()))
        self.vae.save_pretrained(directory)
