"""Named ways to turn prompts into DiT text states; a saved pipeline records which one it uses.

* ``thinkgen`` — VGI-refine: thinker states after ``</think>`` (last two layers), prepadding
  states and a connector (:mod:`.vgi`).
* ``thinkgen-reencode`` — the same model, but think mode re-encodes the rewrite alone in direct
  mode, as T2G does (:mod:`.vgi`).
* ``qwen-image`` — diffusers' Qwen-Image encoding, with T2G-style thinking (:mod:`.qwen_image`).
* ``thinkgen-release`` — the ThinkGen release's templates and conventions, for its own DiT
  (:mod:`.thinkgen_release`).
"""

from __future__ import annotations

from typing import Any

from .base import Condition, Conditioning
from .qwen_image import QwenImageEncoding
from .thinkgen_release import ThinkGenRelease
from .vgi import VGIReencode, VGIRefine

CONDITIONINGS: dict[str, type[Conditioning]] = {c.name: c for c in (VGIRefine, VGIReencode, QwenImageEncoding, ThinkGenRelease)}


def build_conditioning(name: str, thinker, bridge=None, settings: dict[str, Any] | None = None) -> Conditioning:
    """The strategy called ``name``, with its saved settings."""
    if name not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {name!r}; available: {sorted(CONDITIONINGS)}")
    try:
        return CONDITIONINGS[name](thinker, bridge, **(settings or {}))
    except TypeError as error:
        raise ValueError(f"bad settings for conditioning {name!r}: {error}") from None


__all__ = ["CONDITIONINGS", "Condition", "Conditioning", "QwenImageEncoding", "ThinkGenRelease", "VGIReencode", "VGIRefine",
           "build_conditioning"]
