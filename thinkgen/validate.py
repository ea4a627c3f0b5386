"""One place for the values thinkgen accepts from outside: limits, CLI value types, prompt text.

Training configs are validated by their own typed sections (:mod:`thinkgen.train.config`, pydantic
dataclasses); model folders by :mod:`thinkgen.loading`. Everything here fails with a ``ValueError``
(or argparse's type error) that names the value, before anything is allocated.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
MAX_IMAGE_PIXELS = 2**26  # 8192 x 8192: the most pixels any image may have, read or drawn, whatever --max-pixels says

# ----------------------------------------------------------------------------- files read whole
MIB = 1024 * 1024
CONFIG_BYTES = 4 * MIB  # a training config, a base, a model's config.json or model_index.json
TEXT_BYTES = 64 * MIB  # a tokenizer's files (Qwen's tokenizer.json is 11 MB), chat templates
DATA_BYTES = 1024 * MIB  # prompt lists, metadata, judgments


class FileTooLarge(ValueError):
    """A file over the size thinkgen reads whole (or not a regular file)."""


def read_bounded(path: str | Path, limit: int, what: str = "file") -> bytes:
    """A file's bytes, refused before reading when it is over ``limit`` bytes or is not a regular
    file (``/dev/zero``, a FIFO): the size is checked, and then at most ``limit + 1`` bytes read,
    in case it grew. Missing files raise ``FileNotFoundError`` as ``open`` does."""
    path = Path(path)
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileTooLarge(f"{path}: the {what} is not a regular file")
        if info.st_size > limit:
            raise FileTooLarge(f"{path}: the {what} is {info.st_size:,} bytes, above the limit of {limit:,}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{path}: the {what} is above the limit of {limit:,} bytes")
    return data


def read_text(path: str | Path, limit: int, what: str = "file") -> str:
    """:func:`read_bounded`, decoded as UTF-8 (``UnicodeDecodeError`` for binary data)."""
    return read_bounded(path, limit, what).decode("utf-8")


@dataclass(frozen=True)
class Limits:
    """What one pipeline call may ask for. ``max_pixels`` is the guard a user raises on purpose
    (``--max-pixels``) for very large images; the others protect against typos (``--batch 20000``)."""

    max_pixels: int = 2048 * 2048  # per image
    max_images: int = 256  # per call (prompts x images per prompt)
    max_steps: int = 1000
    max_prompt_chars: int = 20_000
    max_prompt_tokens: int = 4096

    def check_call(self, prompts: list[str], height: int, width: int, images: int, steps: int,
                   guidance_scale: float) -> None:
        """The texts (prompts and negative prompts), the size, the image count and the steps."""
        for prompt in prompts:
            check_prompt(prompt, self.max_prompt_chars)
        if height * width > self.max_pixels:
            raise ValueError(f"{width}x{height} is {height * width:,} pixels, above the limit of {self.max_pixels:,} "
                             "(raise it with --max-pixels / Limits(max_pixels=...) if you mean it)")
        if images > self.max_images:
            raise ValueError(f"{images} images in one call is above the limit of {self.max_images}; draw them in batches")
        if steps > self.max_steps:
            raise ValueError(f"{steps} sampling steps is above the limit of {self.max_steps}")
        if not math.isfinite(guidance_scale) or not 0 <= guidance_scale <= 100:
            raise ValueError(f"guidance scale must be a finite number in [0, 100], got {guidance_scale}")

    def check_seeds(self, seeds: list[int]) -> None:
        """Every image's seed must fit torch's signed 64-bit generator seed."""
        for seed in seeds:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed must be in [0, {MAX_SEED}] (image i uses seed + i), got {seed}")

    def check_tokens(self, counts: list[int]) -> None:
        longest = max(counts, default=0)
        if longest > self.max_prompt_tokens:
            raise ValueError(f"a prompt is {longest} tokens long, above the limit of {self.max_prompt_tokens}")


def check_prompt(prompt: str, max_chars: int = Limits.max_prompt_chars) -> None:
    """A prompt must be real text: a string, not too long, encodable (no lone surrogates), no NUL."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be text, got {type(prompt).__name__}")
    if len(prompt) > max_chars:
        raise ValueError(f"a prompt is {len(prompt):,} characters long, above the limit of {max_chars:,}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a prompt is not valid text (it holds a lone surrogate)") from None
    if "\x00" in prompt:
        raise ValueError("a prompt holds a NUL character")


# ----------------------------------------------------------------------------- argparse value types
def _bounded(convert, low: float, high: float, what: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} in [{low}, {high}], got {text}")
        return value

    return parse


def bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high]."""
    return _bounded(int, low, high, "an integer")


def bounded_float(low: float, high: float):
    """An argparse type: a finite number in [low, high]."""
    return _bounded(float, low, high, "a finite number")


def text(text: str) -> str:
    """An argparse type: text that can be encoded (command lines can carry lone surrogates)."""
    try:
        check_prompt(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def url(text: str) -> str:
    """An argparse type: an http(s) URL with a host (an endpoint to call)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a URL: {text[:80]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got {text[:80]!r}")
    return text


def path(text: str) -> str:
    """An argparse type: a usable path (not empty, no NUL, no name over 255 bytes)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("the path holds a NUL character")
    try:
        encoded_parts = [part.encode("utf-8") for part in Path(text).parts]
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("the path is not valid text") from None
    if any(len(part) > 255 for part in encoded_parts):
        raise argparse.ArgumentTypeError("a name in the path is longer than 255 bytes")
    return text


# ----------------------------------------------------------------------------- model configs
# Ceilings for the sizes a model's config.json may ask for, checked before a module is built (a
# config asking for 10**9 layers would otherwise hang while the layers are made, and a 10**9 width
# fail only when its weights are allocated). Real models sit far below: Qwen2.5-VL-7B has 28
# layers, width 3,584, 152k tokens; Qwen-Image's DiT 60 blocks of width 3,072.
MAX_LAYERS = 1024
MAX_WIDTH = 1 << 18  # any width, channel or head count, patch or sample size
MAX_VOCAB = 1 << 22
MAX_POSITIONS = 1 << 24
MAX_PARAMETERS = 2 * 10**12
_WIDTH_WORDS = ("size", "dim", "channels", "heads", "experts", "features", "embed", "groups", "width", "prepadding")


class ModelConfigError(ValueError):
    """A model config asking for sizes no model has."""


def _ceiling(key: str) -> tuple[int, str] | None:
    key = key.lower()
    if "layers" in key or key.endswith("blocks") or key in ("depth", "num_hidden_layers"):
        return MAX_LAYERS, "layers"
    if "vocab" in key:
        return MAX_VOCAB, "tokens"
    if "position" in key or key == "axes_lens":
        return MAX_POSITIONS, "positions"
    if "token_id" in key or key.endswith("_id") or key.endswith("_ids"):
        return None
    if any(word in key for word in _WIDTH_WORDS):
        return MAX_WIDTH, "units"
    return None


def check_model_config(config: object, where: str, key: str = "") -> None:
    """Every size in a model config (nested sections and lists included) under its ceiling."""
    if isinstance(config, dict):
        for name, value in config.items():
            check_model_config(value, where, str(name))
    elif isinstance(config, list):
        for value in config[:4096]:
            check_model_config(value, where, key)
    elif isinstance(config, int) and not isinstance(config, bool) and key:
        ceiling = _ceiling(key)
        if ceiling is not None and config > ceiling[0]:
            raise ModelConfigError(f"{where}: {key} = {config:,} is above the ceiling of {ceiling[0]:,} "
                                   f"{ceiling[1]} (no real model comes near it)")
