"""The generator: autoencoders (image <-> latent grid) and DiT backends (latent tokens -> velocity).

* Autoencoders: any diffusers ``AutoencoderKL``, diffusers' ``AutoencoderKLQwenImage`` (the real
  Qwen-Image VAE), or :class:`PixelAutoencoder` — the identity, for tiny models that draw pixels.
* Tokens: a latent grid ``(B, C, h, w)`` is cut into ``p x p`` patches, giving ``(h/p)*(w/p)``
  tokens of ``C*p*p`` channels, in the same order as Qwen-Image's pipeline packs them, so real
  checkpoints see what they were trained on. ``p`` is implied by the transformer's input width.
* Backends: a small interface so Lumina2 or SD3 transformers can be added next to Qwen-Image's
  MMDiT: ``backend(tokens, sigma, text, text_mask, grid, reference=...) -> velocity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn


# ----------------------------------------------------------------------------- autoencoders
class PixelAutoencoder(ModelMixin, ConfigMixin):
    """The identity autoencoder: the latent *is* the image, in [-1, 1].

    It keeps a constant scale buffer so that it saves and loads like every other diffusers model.
    """

    @register_to_config
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    # apply_forward_hook: accelerate's offload hooks wrap forward(); diffusers' autoencoders run
    # them for encode/decode too, and so must this one
    @apply_forward_hook
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.scale  # (B, C, H, W)

    @apply_forward_hook
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents / self.scale  # (B, C, H, W)


def latent_channels(vae: nn.Module) -> int:
    if isinstance(vae, PixelAutoencoder):
        return vae.config.channels
    if isinstance(vae, AutoencoderKLQwenImage):
        return vae.config.z_dim
    return vae.config.latent_channels


def spatial_factor(vae: nn.Module) -> int:
    """How many image pixels one latent pixel covers along each side."""
    if isinstance(vae, PixelAutoencoder):
        return 1
    if isinstance(vae, AutoencoderKLQwenImage):
        return 2 ** len(vae.temperal_downsample)
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_images(vae: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] ``(B, 3, H, W)`` -> normalised latents ``(B, C, h, w)`` (distribution mode)."""
    if isinstance(vae, PixelAutoencoder):
        return vae.encode(images)
    if isinstance(vae, AutoencoderKLQwenImage):  # a video VAE: one frame, per-channel statistics
        z = vae.encode(images[:, :, None]).latent_dist.mode()[:, :, 0]  # (B, C, h, w)
        mean = torch.tensor(vae.config.latents_mean, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        return (z - mean) / std
    z = vae.encode(images).latent_dist.mode()
    shift = vae.config.shift_factor or 0.0
    return (z - shift) * vae.config.scaling_factor


def decode_latents(vae: nn.Module, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Inverse of :func:`encode_images`: latents ``(B, C, h, w)`` -> images in [-1, 1] (unclamped
    with ``clamp=False``, for a resize that must see the decoder's own values)."""
    if isinstance(vae, PixelAutoencoder):
        images = vae.decode(latents)
    elif isinstance(vae, AutoencoderKLQwenImage):
        # diffusers' arithmetic, operation for operation (divide by 1/std, in the latents' dtype),
        # so bf16 pictures match QwenImagePipeline's to the last bit
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        images = vae.decode((latents / inverse_std + mean)[:, :, None]).sample[:, :, 0]
    else:
        shift = vae.config.shift_factor or 0.0
        images = vae.decode(latents / vae.config.scaling_factor + shift).sample
    return images.clamp(-1, 1) if clamp else images


# ----------------------------------------------------------------------------- tokens
def patchify(latents: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, (h/p)*(w/p), C*p*p)``, Qwen-Image's packing order."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // p, p, w // p, p)  # (B, C, h/p, p, w/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h/p, w/p, C, p, p)
    return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C p p)


def unpatchify(tokens: torch.Tensor, h: int, w: int, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, C*p*p)`` -> ``(B, C, h, w)``."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.view(b, h // p, w // p, c, p, p)  # (B, h/p, w/p, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h/p, p, w/p, p)
    return x.reshape(b, c, h, w)


# ----------------------------------------------------------------------------- backends
@dataclass
class Reference:
    """Reference-image tokens for editing: they join the image stream, their outputs are dropped.

    ``tokens`` and ``grid`` are every sample's first source image; ``more`` holds its further ones,
    in order, each a :class:`Reference` of its own size (the ThinkGen release edits from several
    images per prompt). Every sample of a batch has the same number of source images."""

    tokens: torch.Tensor  # (B, N_ref, C p p)
    grid: tuple[int, int]  # token grid (rows, cols)
    more: tuple[Reference, ...] = ()

    def images(self) -> list[Reference]:
        """One :class:`Reference` per source image (the first, then ``more``)."""
        return [Reference(self.tokens, self.grid), *self.more]

    def map(self, fn) -> Reference:
        """The same references with ``fn`` applied to every image's tokens (repeat, index, move)."""
        return Reference(fn(self.tokens), self.grid, tuple(ref.map(fn) for ref in self.more))


class QwenImageBackend:
    """Drives diffusers' ``QwenImageTransformer2DModel`` (MMDiT; the Qwen-Image / T2G DiT)."""

    def __init__(self, transformer: QwenImageTransformer2DModel) -> None:
        self.transformer = transformer

    @property
    def in_channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def text_channels(self) -> int:
        return self.transformer.config.joint_attention_dim

    def __call__(self, tokens: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                 text_mask: torch.Tensor, grid: tuple[int, int],
                 reference: Reference | None = None) -> torch.Tensor:
        n = tokens.shape[1]
        shapes = [(1, *grid)]
        if reference is not None:  # every source image after the noisy one, as Qwen-Image-Edit-Plus orders them
            refs = reference.images()
            tokens = torch.cat([tokens, *(ref.tokens.to(tokens.dtype) for ref in refs)], dim=1)  # (B, N + N_ref, D)
            shapes += [(1, *ref.grid) for ref in refs]
        dtype = self.transformer.dtype
        # QwenImagePipeline's timestep: the scheduler's t = 1000 sigma (fp32), cast to the latents'
        # dtype, divided by 1000 there (the model multiplies by 1000 again); an all-ones mask is
        # passed as None, as diffusers does, since the masked attention path rounds differently
        timestep = (sigma * 1000).to(tokens.dtype) / 1000
        out = self.transformer(
            hidden_states=tokens.to(dtype),
            encoder_hidden_states=text.to(dtype),
            encoder_hidden_states_mask=None if bool(text_mask.all()) else text_mask,
            timestep=timestep,
            img_shapes=[shapes] * tokens.shape[0],
            return_dict=False,
        )[0]
        return out[:, :n].to(tokens.dtype)  # (B, N, C p p): drop the reference tokens


class ThinkGenBackend:
    """Drives ThinkGen's OmniGen2-style DiT (:class:`thinkgen.models.ThinkGenTransformer2DModel`).

    Its conventions differ from the pipeline's, and are converted here: it takes ``t = 1 - sigma``
    (0 = noise), cast to the latents' dtype as the release does, and returns the velocity of the
    opposite sign (data - noise); it reads whole latents, patchified inside in (p1, p2, c) order;
    the text states go in unchanged (prepadding and caption embedder are part of the DiT)."""

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer
        self.p = transformer.config.patch_size

    @property
    def in_channels(self) -> int:  # the width of the pipeline's tokens (C p p)
        return self.transformer.config.in_channels * self.p * self.p

    @property
    def text_channels(self) -> int:
        return 2 * self.transformer.config.text_feat_dim

    def __call__(self, tokens: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                 text_mask: torch.Tensor, grid: tuple[int, int],
                 reference: Reference | None = None) -> torch.Tensor:
        p, dtype = self.p, self.transformer.dtype
        latents = unpatchify(tokens, grid[0] * p, grid[1] * p, p)  # (B, C, h, w)
        refs = None
        if reference is not None:  # per sample, the list of its source latents (C, h, w)
            per_image = [unpatchify(ref.tokens, ref.grid[0] * p, ref.grid[1] * p, p).to(dtype)
                         for ref in reference.images()]  # each (B, C, h_k, w_k)
            refs = [[latents[b] for latents in per_image] for b in range(tokens.shape[0])]
        out = self.transformer(latents.to(dtype), (1 - sigma).to(tokens.dtype), text.to(dtype), text_mask, refs)
        return patchify(-out, p).to(tokens.dtype)  # (B, N, C p p): noise - data


BACKENDS = {"QwenImageTransformer2DModel": QwenImageBackend, "ThinkGenTransformer2DModel": ThinkGenBackend}


def backend_for(transformer: nn.Module) -> QwenImageBackend | ThinkGenBackend:
    name = type(transformer).__name__
    if name not in BACKENDS:
        raise TypeError(f"no thinkgen backend for {name}; available: {sorted(BACKENDS)}")
    return BACKENDS[name](transformer)


def patch_size(transformer_in_channels: int, vae: nn.Module) -> int:
    """The packing factor p with ``C * p * p == transformer in_channels``."""
    ratio = transformer_in_channels / latent_channels(vae)
    p = math.isqrt(int(ratio))
    if p * p != ratio:
        raise ValueError(
            f"transformer in_channels={transformer_in_channels} is not latent channels "
            f"({latent_channels(vae)}) times a square"
        )
    return p
