"""Thinker SFT on your chat data (``stage: thinker_sft`` with ``dataset.source: chat``).

``init`` is any pipeline folder thinkgen loads; only its thinker is read (thinkgen's ``thinker``,
T2G's ``text_encoder``, the ThinkGen release's ``mllm``) and trained on the conversations of a
chat ``.jsonl`` file (:mod:`thinkgen.data.chat`), the loss on assistant tokens only. The result
is the same folder with the thinker replaced: the other components are linked (or copied) from
``init`` unchanged, so a T2G folder stays a ``QwenImagePipeline`` folder. With ``lora`` the
adapters (peft format) are saved under ``thinker_lora/``, and merged into the thinker when
``lora.merge``.

The loss of a step is the sum of its token losses over the global batch's assistant-token count
(every process counts the whole global batch), so splitting the batch over processes gives the
same gradient as one process.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data import DataError
from ..data.chat import ChatRows
from ..loading import stored_dtype, thinker_component
from ..thinker import render_chat
from .config import TrainConfig

IGNORE = -100
THINKER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections of Qwen LLMs / VLMs


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # IGNORE outside assistant turns
    images: list[Image.Image]


class TokenLoss(nn.Module):
    """Summed next-token cross-entropy over the labelled tokens, divided by ``batch["scale"]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.lm = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels, scale = batch["labels"], batch["scale"]
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "scale")}
        logits = self.lm(**inputs).logits[:, :-1].float()  # (B, S - 1, V)
        return F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE, reduction="sum") / scale


class ChatSFTStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.init = Path(config.init)
        model, self.text, self.component = thinker_component(self.init, torch.float32)
        self.processor = self.text if hasattr(self.text, "image_processor") else None
        self.tokenizer = self.processor.tokenizer if self.processor is not None else self.text
        if config.lora.rank:
            from peft import LoraConfig, get_peft_model

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.run.seed)
                model = get_peft_model(model, LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha or config.lora.rank,
                                                         target_modules=config.lora.targets or THINKER_TARGETS))
            if config.run.mixed_precision == "bf16":  # frozen base weights need no fp32 master copy
                for parameter in model.parameters():
                    if not parameter.requires_grad:
                        parameter.data = parameter.data.to(torch.bfloat16)
        else:
            model.requires_grad_(True)
        self.model = TokenLoss(model.train())
        self.rows = ChatRows(config.dataset.path, config.dataset.max_image_pixels)
        self._cache: dict[int, tuple[list[int], list[int]]] = {}

    # ------------------------------------------------------------------ rows -> tokens
    def _ids(self, messages: list[dict], images: list[Image.Image], generation: bool) -> list[int]:
        templater = self.processor if self.processor is not None else self.tokenizer
        text = render_chat(templater, messages, add_generation_prompt=generation)
        if self.processor is not None and images:  # the processor expands each image's placeholder
            return list(self.processor(text=[text], images=images)["input_ids"][0])
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode(self, index: int) -> Encoded:
        """A row's tokens, labelled on its assistant turns; refused (naming the row) if it does not
        fit ``data.max_length`` or the chat template does not render turns as prefixes of each other."""
        if index in self._cache:  # tokens only: the images are opened again, not kept in memory
            ids, labels = self._cache[index]
            return Encoded(ids, labels, self.rows.images(index))
        messages, images = self.rows.messages(index), self.rows.images(index)
        where = self.rows.where(index)
        if images and self.processor is None:
            raise DataError(f"{where}: the row has images, but {self.init}'s thinker does not see")

        def images_in(turns: list[dict]) -> list[Image.Image]:
            count = sum(1 for m in turns if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image")
            return images[:count]

        ids = self._ids(messages, images, generation=False)
        labels = [IGNORE] * len(ids)
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self._ids(messages[:k], images_in(messages[:k]), generation=True)
            upto = self._ids(messages[: k + 1], images_in(messages[: k + 1]), generation=False)
            if upto[: len(before)] != before or ids[: len(upto)] != upto:
                raise DataError(f"{where}: the chat template does not render turn {k + 1} after the turns before it")
            labels[len(before) : len(upto)] = upto[len(before) :]
        if len(ids) > self.config.data.max_length:
            raise DataError(f"{where}: {len(ids)} tokens, over data.max_length ({self.config.data.max_length})")
        if len(self._cache) < 100_000:  # bounded: a large file is re-encoded when drawn again
            self._cache[index] = (ids, labels)
        return Encoded(ids, labels, images)

    def batch(self, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = random.Random(f"chat-{cfg.run.seed}-{step}")
        picks = [rng.randrange(len(self.rows)) for _ in range(cfg.run.batch_size)]
        encoded = [self.encode(i) for i in picks]  # every process counts the global batch's tokens
        total = sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in encoded)
        world = cfg.run.batch_size // size
        rows = encoded[start : start + size]
        length = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = {"input_ids": torch.tensor([r.ids + [pad] * (length - len(r.ids)) for r in rows]),
                 "attention_mask": torch.tensor([[1] * len(r.ids) + [0] * (length - len(r.ids)) for r in rows]),
                 "labels": torch.tensor([r.labels + [IGNORE] * (length - len(r.labels)) for r in rows]),
                 # processes average their gradients: each divides by the global count over the world
                 "scale": torch.tensor(max(1, total) / world, dtype=torch.float32)}
        images = [image for r in rows for image in r.images]
        if images:
            image_token = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            batch["mm_token_type_ids"] = (batch["input_ids"] == image_token).long()
            batch.update(self.processor.image_processor(images=images, return_tensors="pt"))
        return batch

    # ------------------------------------------------------------------ output
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        """``init`` with the thinker replaced, written aside and renamed into place."""
        from .loop import load_ema

        load_ema(self.model, ema)
        temporary = directory.parent / f".{directory.name}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(self.init, temporary, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(self.component))
        model = self.model.lm
        if self.config.lora.rank:
            model.save_pretrained(temporary / "thinker_lora", safe_serialization=True)  # peft's format
            model = model.merge_and_unload() if self.config.lora.merge else None
        if model is None:  # adapters only: the thinker stays as it was
            shutil.copytree(self.init / self.component, temporary / self.component, copy_function=_link_or_copy)
        else:
            dtype = stored_dtype(self.init / self.component)  # saved as init stored it (bf16 stays bf16)
            state = {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
            model.save_pretrained(temporary / self.component, state_dict=state, safe_serialization=True)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(temporary, directory)


def _link_or_copy(source: str, target: str) -> str:
    """Hard-link a file the output shares with ``init`` (weights of gigabytes), copying if linking fails."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target
