"""What every conditioning strategy gives the pipeline: DiT text states, their mask, and the text.

A strategy turns prompts into the DiT's text stream. The pipeline never branches on model
families: it asks its strategy to ``encode`` the prompts and the ``negative`` prompts, and lets it
name how guidance combines the two (``guidance``) and which dtype the latents live in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..generator import encode_images
from ..thinker import Thinker, ThinkerOutput


@dataclass
class Condition:
    """DiT text states for a batch of prompts, plus what the thinker wrote (one entry per prompt)."""

    text: torch.Tensor  # (B, L, D) in the DiT's text width, right-padded
    mask: torch.Tensor  # (B, L) 1 for real positions
    reasoning: list[str]
    rewritten: list[str]
    thought: ThinkerOutput | None = field(default=None, repr=False)


@dataclass
class Traces:
    """``copies`` sampled reasonings of one prompt (:meth:`Conditioning.sample`), what RL trains a
    thinker on: the token rows whose log-probabilities the policy gradient moves, and the states
    that the DiT side reads for each (the bridge's input for ``thinkgen``, else the DiT's text)."""

    sequences: list[torch.Tensor]  # (S_i,) prompt + completion token ids, unpadded
    prompt_lengths: list[int]  # where each completion starts
    states: list[torch.Tensor]  # (T_i, C) per trace
    rewritten: list[str]


class Conditioning:
    """Base class: a named way from prompts to DiT text states.

    ``guidance`` names how CFG is done: ``"batched"`` (one transformer call on [cond; uncond],
    plain CFG, active whenever the scale is not 1) or ``"true-cfg"`` (Qwen-Image's: separate calls,
    norm-rescaled, active when the scale is above 1).
    """

    name: ClassVar[str]
    guidance: ClassVar[str] = "batched"  # "batched" | "true-cfg" | "separate" (two calls, plain CFG)
    own_schedule: ClassVar[bool] = False  # True: schedule() and euler_step() replace the diffusers scheduler
    edit_at_reference_size: ClassVar[bool] = False  # True: an edit of one source image is drawn at its size
    several_references: ClassVar[bool] = False  # True: a prompt may bring several source images

    def __init__(self, thinker: Thinker, bridge: torch.nn.Module | None = None, **settings: Any) -> None:
        self.thinker, self.bridge = thinker, bridge

    def settings(self) -> dict[str, Any]:
        """What ``model_index.json`` records so that loading rebuilds this strategy exactly."""
        return {}

    def encode(self, prompts: list[str], think: bool = True, images: list[list[Any]] | None = None,
               seed: int | None = None) -> Condition:
        raise NotImplementedError

    def sample(self, prompt: str, copies: int, temperature: float, top_k: int, max_new_tokens: int | None,
               seed: int) -> Traces:
        """``copies`` reasonings of ``prompt`` sampled at ``temperature`` (``top_k`` 0: the whole
        vocabulary), from torch's generator seeded with ``seed``; ``max_new_tokens`` None keeps the
        strategy's own budget. Text prompts only."""
        raise NotImplementedError(f"the {self.name!r} conditioning cannot sample reasoning for RL")

    def negative(self, prompts: list[str] | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Text states and mask ``(batch, L, D), (batch, L)`` of the negative branch; ``prompts``
        None means the strategy's own default."""
        raise NotImplementedError

    def reference_latents(self, vae: torch.nn.Module, images: list[Image.Image], height: int, width: int,
                          seed: int) -> list[torch.Tensor]:
        """Editing's source images as normalised latents, one ``(C, h, w)`` each, in order: by default
        resized to the output size (bicubic) and encoded to the posterior's mode (``seed`` unused)."""
        pixels = torch.stack([_pil_to_tensor(image, height, width) for image in images])  # (B, 3, H, W)
        return list(encode_images(vae, pixels.to(vae.device, vae.dtype)))

    def draw_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a picture asked at ``height x width`` is drawn at (then resized to the request):
        the request itself, unless a strategy reproduces a release that draws smaller."""
        return height, width

    def latent_dtype(self) -> torch.dtype:
        """The dtype the noise is drawn in and the latents are kept in between steps."""
        return torch.float32

    def schedule(self, steps: int, latent_height: int, latent_width: int) -> torch.Tensor:
        """``steps + 1`` sigmas of a release's own scheduler (with ``own_schedule``); otherwise the
        saved diffusers scheduler is used, and every one of its config fields applies."""
        raise NotImplementedError

    def euler_step(self, x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor
                   ) -> torch.Tensor:
        """One Euler step for :meth:`schedule`'s sigmas (only called when it returns some)."""
        raise NotImplementedError

    @property
    def text_channels(self) -> int:
        raise NotImplementedError


def _pil_to_tensor(image: Image.Image, height: int, width: int) -> torch.Tensor:
    image = image.convert("RGB").resize((width, height), Image.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1)
    return array.permute(2, 0, 1)  # (3, H, W) in [-1, 1]


def pad_rows(rows: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-prompt states ``(T_i, C)`` into ``(B, T, C)`` in ``dtype`` and a ``(B, T)`` mask."""
    length = max(r.shape[0] for r in rows)
    text = torch.stack([torch.cat([r, r.new_zeros(length - r.shape[0], r.shape[1])]) for r in rows])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=text.device)
    for i, r in enumerate(rows):
        mask[i, : r.shape[0]] = 1
    return text.to(dtype), mask


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch for a block (sampling in generation) without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield
