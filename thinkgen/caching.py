"""Step caching: diffusers' own cache hooks on the DiT, named for the command line.

A cache reuses work of an earlier denoising step when the DiT's input has barely changed, so most
steps run fewer blocks. thinkgen writes no cache of its own: the hooks are diffusers'
(``diffusers.hooks``), applied with the model's ``enable_cache``; the pipeline names each call's
branch (``cache_context``: the batched CFG call, or "cond" / "uncond" / "image" when the branches
run apart) and resets the hooks' state before and after every generation.

    pipe.enable_cache("first_block:threshold=0.1")   # or a diffusers config object
    thinkgen generate "..." --cache first_block:threshold=0.1

Names: ``first_block`` (:class:`~diffusers.hooks.FirstBlockCacheConfig`: the rest of the blocks
are skipped while the first block's output changes by less than ``threshold``, relative) and
``taylorseer`` (:class:`~diffusers.hooks.TaylorSeerCacheConfig`: every ``cache_interval``-th step
is computed, the others extrapolated). Their price in exact quality is measured on ShapeWorld
(docs/guides/speed.md); none is on by default.
"""

from __future__ import annotations

from typing import Any

CACHES = {
    "first_block": ("FirstBlockCacheConfig", {"threshold": float}),
    "taylorseer": ("TaylorSeerCacheConfig", {"cache_interval": int, "disable_cache_before_step": int,
                                             "disable_cache_after_step": int, "max_order": int}),
}


def cache_config(spec: str | Any) -> Any:
    """A diffusers cache config from ``NAME[:key=value,...]`` (a config object is returned as it is);
    a bad name, key or value is a ``ValueError`` naming what is accepted."""
    if not isinstance(spec, str):
        return spec
    import diffusers.hooks

    name, _, options = spec.partition(":")
    if name not in CACHES:
        raise ValueError(f"unknown cache {name!r}; known: {', '.join(sorted(CACHES))}")
    class_name, types = CACHES[name]
    values: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"cache {name!r} takes {', '.join(f'{k}=...' for k in types)}; got {item!r}")
        try:
            values[key] = types[key](text)
        except ValueError:
            raise ValueError(f"cache option {key} must be a{'n integer' if types[key] is int else ' number'}, "
                             f"got {text!r}") from None
        if values[key] < 0 or values[key] != values[key]:
            raise ValueError(f"cache option {key} must be >= 0, got {text!r}")
    return getattr(diffusers.hooks, class_name)(**values)
