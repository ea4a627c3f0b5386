"""thinkgen: think-then-generate image generation.

A language model reasons about a prompt (``<think>...</think>``) and rewrites it; the hidden states
of what follows ``</think>`` condition a diffusion transformer through VGI-refine.

The public names are imported on first use (PEP 562), so that ``thinkgen --help`` and a mistyped
command answer at once instead of loading torch, transformers and diffusers first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"
_PUBLIC = {
    "Bridge": "bridge", "PixelAutoencoder": "generator", "PipelineLoadError": "loading",
    "ThinkGenOutput": "pipeline", "ThinkGenPipeline": "pipeline", "Thinker": "thinker",
    "ThinkerConfig": "thinker", "ThinkerOutput": "thinker", "tiny_pipeline": "tiny",
}
__all__ = [*_PUBLIC, "tiny", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'thinkgen' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``thinkgen.tiny`` is the function ``tiny_pipeline`` (as documented), although a submodule
    of that name exists: importing the submodule must not replace the attribute."""

    @property
    def tiny(self) -> Any:
        from .tiny import tiny_pipeline

        return tiny_pipeline

    @tiny.setter
    def tiny(self, value: Any) -> None:  # the import system setting the submodule: keep the function
        pass


sys.modules[__name__].__class__ = _Package
