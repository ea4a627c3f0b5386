"""The frozen thinker's conditioning states, computed per batch, with an optional on-disk cache.

A DiT stage reads its captions through the thinker (or text encoder) it is conditioned on, which
does not train. The states are computed for each batch under ``no_grad`` in the thinker's own
dtype, so memory stays that of one batch whatever the dataset's size. Repeated epochs may read
them from a cache instead: safetensors shards in a folder named by the thinker's fingerprint, one
tensor per caption keyed by the caption (and the images the thinker sees), so a cache is never
read by another thinker.

What is cached depends on the conditioning strategy: for ``thinkgen`` (VGI-refine) the thinker's
raw states, since the bridge after them trains; for the releases' strategies (``qwen-image``,
``thinkgen-release``) the DiT's text states themselves (their prepadding lives in the DiT).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ..conditioning.base import pad_rows
from ..data import DataError

TRAINABLE_BRIDGE = ("thinkgen", "thinkgen-reencode")  # strategies whose bridge trains after the thinker


def fingerprint(pipe) -> str:
    """What makes two thinkers give the same states: the strategy, its settings, the model's config
    and a sample of every weight (first and last values), hashed."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"conditioning": pipe.conditioning.name, "settings": pipe.conditioning.settings(),
                              "thinker": pipe.thinker.config.to_dict()}, sort_keys=True, default=str).encode())
    digest.update(pipe.thinker.model.config.to_json_string().encode())
    with torch.no_grad():
        for name, parameter in pipe.thinker.model.state_dict().items():
            flat = parameter.detach().reshape(-1).float().cpu()
            digest.update(name.encode())
            digest.update(torch.cat([flat[:64], flat[-64:]]).numpy().tobytes())
    return digest.hexdigest()[:20]


class StateCache:
    """Per-caption state tensors ``(T, D)`` in safetensors shards under ``folder/<fingerprint>/``.
    Each process writes its own shard files (written aside, then renamed), so nothing is torn."""

    def __init__(self, folder: str | Path, thinker_fingerprint: str) -> None:
        self.folder = Path(folder) / thinker_fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, Path] = {}
        for shard in sorted(self.folder.glob("*.safetensors")):
            with safe_open(shard, framework="pt") as tensors:
                self.index.update(dict.fromkeys(tensors.keys(), shard))  # noqa: SIM118

    def get(self, key: str) -> torch.Tensor | None:
        shard = self.index.get(key)
        if shard is None:
            return None
        with safe_open(shard, framework="pt") as tensors:
            return tensors.get_tensor(key)

    def put(self, rows: dict[str, torch.Tensor]) -> None:
        if not rows:
            return
        name = f"{uuid.uuid4().hex}.safetensors"
        temporary = self.folder / f".{name}.tmp"
        save_file({k: v.contiguous().cpu() for k, v in rows.items()}, temporary)
        os.replace(temporary, self.folder / name)
        self.index.update(dict.fromkeys(rows, self.folder / name))


def _image_digest(images: list[Image.Image] | None) -> str:
    digest = hashlib.sha256()
    for image in images or []:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


class FrozenStates:
    """``states(captions, images) -> (states (B, L, D) fp32, mask (B, L))`` for a DiT stage.

    Rows are computed one caption at a time when ``per_row`` (the result then depends on nothing
    but the caption: the same on any number of processes), else a batch at a time."""

    def __init__(self, pipe, cache_folder: str | Path | None = None, per_row: bool = False, think: bool = False
                 ) -> None:
        self.pipe, self.per_row, self.think = pipe, per_row, think  # think: the thinker reasons first (greedy)
        self.raw_thinker = pipe.conditioning.name in TRAINABLE_BRIDGE
        self.cache = StateCache(cache_folder, fingerprint(pipe)) if cache_folder else None
        self.tokens_limit = pipe.limits.max_prompt_tokens

    def check(self, caption: str, where: str) -> None:
        """A caption the thinker cannot read in one piece is refused, naming its row."""
        count = len(self.pipe.thinker.tokenizer(caption, add_special_tokens=False)["input_ids"])
        if count > self.tokens_limit:
            raise DataError(f"{where}: caption of {count} tokens is over the thinker's limit of {self.tokens_limit}")

    @torch.no_grad()
    def _compute(self, captions: list[str], images: list[list[Image.Image]] | None) -> list[torch.Tensor]:
        if self.raw_thinker:
            out = self.pipe.thinker.encode(captions, think=self.think, images=images, seed=0)
            states, mask = out.states, out.mask
        else:
            condition = self.pipe.conditioning.encode(captions, think=self.think, images=images, seed=0)
            states, mask = condition.text, condition.mask
        return [states[i][mask[i].bool()].float().cpu() for i in range(len(captions))]  # (T_i, D) each

    def rows(self, captions: list[str], images: list[list[Image.Image]] | None = None) -> list[torch.Tensor]:
        sees = self.pipe.thinker.processor is not None and images is not None
        images = images if sees else None
        keys = [hashlib.sha256(f"{c}\0{_image_digest(images[i] if images else None)}\0{self.think}".encode()).hexdigest()
                for i, c in enumerate(captions)]
        found = [self.cache.get(k) if self.cache else None for k in keys]
        missing = [i for i, row in enumerate(found) if row is None]
        if missing:
            groups = [[i] for i in missing] if self.per_row else [missing]
            for group in groups:
                computed = self._compute([captions[i] for i in group], [images[i] for i in group] if images else None)
                for i, row in zip(group, computed, strict=True):
                    found[i] = row
            if self.cache is not None:
                self.cache.put({keys[i]: found[i] for i in missing})
        return found

    def __call__(self, captions: list[str], images: list[list[Image.Image]] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_rows(self.rows(captions, images), torch.float32)  # (B, L, D), (B, L)
