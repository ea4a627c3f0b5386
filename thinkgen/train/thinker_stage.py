"""Thinker training: pretraining on ShapeWorld knowledge, then think-then-rewrite SFT.

* ``thinker_pretrain``: the knowledge corpus (every fact, as chat question -> answer, loss on the
  whole sequence) and scene captions — the thinker's "world knowledge".
* ``thinker_sft``: prompt -> ``<think> reasoning </think>`` canonical caption, loss on the
  assistant turn only, from the supervised fact group (plus plain composition prompts), mixed
  with knowledge QA so that the held-out facts are not forgotten.

With ``thinker.vision`` the thinker is a vision-language model (Qwen3-VL or Qwen2.5-VL class, a
small vision tower) and the stages add examples with an image (``data.describe_examples``,
``edit_examples``, ``reflection_examples``; see :func:`world.corpora.seeing_examples`): it learns
to describe scenes in pretraining, then to write edits and reflection verdicts in SFT.

The same code fine-tunes a real LLM or VLM (``init`` = a folder with ``thinker/`` and
``tokenizer/`` or ``processor/``); ``thinker.lora_rank > 0`` trains LoRA adapters through peft
and merges them when saving.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from ..processors import load_processor, save_processor
from ..reflection import REFLECTION_PROMPT, RIGHT, SHOWN_ATTACHED, judge_prompt
from ..thinker import Thinker, ThinkerConfig
from ..tiny import vl_thinker
from ..validate import CONFIG_BYTES, read_text
from ..world import suites
from ..world.corpora import (
    caption_corpus,
    drawn_reflection_rows,
    knowledge_corpus,
    reflect_completion,
    seeing_examples,
    think_examples,
)
from ..world.render import render
from .config import TrainConfig
from .loop import load_ema
from .tokenizer import word_tokenizer

IGNORE = -100
THINKER_CONFIG = "thinker_config.json"


def shapeworld_texts(config: TrainConfig) -> list[str]:
    """Every text the ShapeWorld thinker can meet, for its vocabulary."""
    return [config.thinker.system_prompt, *_world_texts()]


@functools.cache  # the same every time, and slow to build (the reflection suite's scenes)
def _world_texts() -> tuple[str, ...]:
    texts = [r["question"] + " " + r["answer"] for r in knowledge_corpus()]
    texts += [r["caption"] + " " + r["canonical"] for r in caption_corpus(3000)]
    texts += [r["prompt"] + " " + r["completion"] for r in think_examples(2000, 600)]
    for suite in suites.SUITES:
        for split in ("train", "test", "rl") if suite == "reasoning" else ("train", "test"):
            texts += [f"a photo of {i.prompt} {i.canonical} {i.reasoning}" for i in suites.build(suite, 100, split)]
    texts += [REFLECTION_PROMPT, RIGHT, SHOWN_ATTACHED]
    for kind in ("describe", "edit", "reflect"):
        texts += [r["request"] + " " + r["completion"] for r in seeing_examples(kind, 300)]
    return tuple(texts)


# the processor class of each vision-language thinker family (config.model_type)
PROCESSORS = {"qwen3_vl": "Qwen3VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}


def load_thinker(directory: str | Path):
    """(model, tokenizer or VLM processor, ThinkerConfig) from a thinker or a pipeline folder."""
    import transformers

    from ..loading import PipelineLoadError, check_component_files, read_index

    directory = Path(directory)
    if not (directory / "thinker").is_dir():
        raise PipelineLoadError(f"{directory} holds no thinker (a 'thinker' folder)")
    if (directory / "model_index.json").exists():
        read_index(directory)  # a model_index.json that is not a JSON object is one clear error
    for name in ("thinker", "tokenizer", "processor"):  # sizes of files and of the config, before loading
        check_component_files(directory / name)
    if (directory / "processor").is_dir():  # a thinker that sees
        model = AutoModelForImageTextToText.from_pretrained(directory / "thinker", local_files_only=True)
        processor_class = getattr(transformers, PROCESSORS[model.config.model_type])
        text = load_processor(processor_class, directory / "processor")
    else:
        model = AutoModelForCausalLM.from_pretrained(directory / "thinker", local_files_only=True)
        text = AutoTokenizer.from_pretrained(directory / "tokenizer", local_files_only=True)
    options = {}
    if (directory / THINKER_CONFIG).exists():
        options = json.loads(read_text(directory / THINKER_CONFIG, CONFIG_BYTES))
    elif (directory / "model_index.json").exists():
        options = json.loads(read_text(directory / "model_index.json", CONFIG_BYTES)).get("thinker_config", {})
    return model, text, ThinkerConfig(**options)


def as_thinker(model: nn.Module, text, config: ThinkerConfig) -> Thinker:
    """A Thinker around what :func:`load_thinker` returns (``text``: a tokenizer or a processor)."""
    if hasattr(text, "image_processor"):
        return Thinker(model, processor=text, config=config)
    return Thinker(model, tokenizer=text, config=config)


def save_thinker(directory: Path, model, text, thinker_config: ThinkerConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory / "thinker", safe_serialization=True)
    if hasattr(text, "image_processor"):
        save_processor(text, directory / "processor")
    else:
        text.save_pretrained(directory / "tokenizer")
    (directory / THINKER_CONFIG).write_text(json.dumps(thinker_config.to_dict(), indent=2))


def new_thinker(config: TrainConfig):
    """A fresh ShapeWorld thinker: (model, tokenizer or processor, ThinkerConfig)."""
    tokenizer = word_tokenizer(shapeworld_texts(config))
    t = config.thinker
    thinker_config = ThinkerConfig(system_prompt=t.system_prompt, max_think_tokens=t.max_think_tokens,
                                   max_rewrite_tokens=t.max_rewrite_tokens, extract=config.dit.extract)
    if t.vision:
        # images of up to 64 px (the text suite's) fit whole: (64 / (2 * patch))^2 tokens
        most = max(4, (64 // (2 * t.vision_patch)) ** 2)
        model, processor = vl_thinker(
            tokenizer, t.vision, t.hidden_size, t.num_layers, t.num_heads, t.intermediate_size,
            vision_width=t.vision_width, vision_depth=t.vision_depth, patch_size=t.vision_patch,
            image_tokens=(4, most), tie_word_embeddings=True, seed=config.run.seed)
        return model, processor, thinker_config
    model_config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_heads,
        head_dim=t.hidden_size // t.num_heads, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(config.run.seed)
    return Qwen3ForCausalLM(model_config), tokenizer, thinker_config


class CausalLMLoss(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.lm = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lm(**batch).loss


@dataclass
class Example:
    ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken
    image: np.ndarray | None = None  # (H, W, 3) uint8, for a thinker that sees


class ThinkerStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        if config.init:
            model, self.text, self.thinker_config = load_thinker(config.init)
            model = model.float()  # train in float32: an fp16 folder (the embedded model) gives NaN losses
        else:
            model, self.text, self.thinker_config = new_thinker(config)
        self.processor = self.text if hasattr(self.text, "image_processor") else None
        self.tokenizer = self.processor.tokenizer if self.processor is not None else self.text
        data = config.data
        if self.processor is None and data.describe_examples + data.edit_examples + data.reflection_examples:
            raise ValueError("data.describe_examples, edit_examples and reflection_examples need a thinker "
                             "that sees: set thinker.vision, or init from a vision-language thinker")
        self.lora = config.thinker.lora_rank > 0
        if self.lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=config.thinker.lora_rank, lora_alpha=config.thinker.lora_alpha,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0))
        self.model = CausalLMLoss(model.train())
        self.longest_image_example = 0  # tokens, prompt (with the image's) + completion; set by _encode
        self.examples = self._examples()
        if self.longest_image_example > data.max_length:
            # a cut completion trains the start of a verdict or edit and never its end: refuse, do not
            # train half-examples (at 64 px an image is 64 tokens, not the 16 of 32 px)
            raise ValueError(f"data.max_length ({data.max_length}) cuts the completions of image examples: "
                             f"the longest needs {self.longest_image_example} tokens (images of "
                             f"{data.image_size} px); raise data.max_length")

    # ------------------------------------------------------------------ data
    def _encode(self, messages: list[dict], completion: str, loss_on_prompt: bool,
                image: np.ndarray | None = None) -> Example:
        if image is None:
            prefix = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=False)
        else:  # the processor expands the image placeholder into the image's tokens
            prefix = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prefix_ids = list(self.processor(text=[prefix], images=[Image.fromarray(image)])["input_ids"][0])
        completion_ids = self.tokenizer.encode(completion + "<|im_end|>", add_special_tokens=False)
        ids = (prefix_ids + completion_ids)[: self.config.data.max_length]
        if image is not None:
            self.longest_image_example = max(self.longest_image_example, len(prefix_ids) + len(completion_ids))
        labels = (prefix_ids if loss_on_prompt and image is None else [IGNORE] * len(prefix_ids)) + completion_ids
        return Example(ids, labels[: len(ids)], image)

    def _seeing(self, kind: str, n: int, system: bool) -> list[Example]:
        """Examples with an image (world.corpora.seeing_examples), drawn as the suites draw them."""
        rows = []
        for r in seeing_examples(kind, n, self.config.run.seed):
            request = judge_prompt(r["request"]) if kind == "reflect" else r["request"]
            user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request}]}]
            head = [{"role": "system", "content": [{"type": "text", "text": self.thinker_config.system_prompt}]}]
            rows.append(self._encode((head if system else []) + user, r["completion"], False,
                                     render(r["scene"], self.config.data.image_size)))
        return rows

    def _drawn_reflection(self) -> list[Example]:
        """Verdicts on a model's own drawings (``data.drawn_reflection``), asked as the judge is asked:
        a judge taught only on clean renders misjudges a DiT's drawings."""
        head = [{"role": "system", "content": [{"type": "text", "text": self.thinker_config.system_prompt}]}]
        rows = []
        for folder in self.config.data.drawn_reflection or []:  # a list once the config is loaded
            for r in drawn_reflection_rows(folder):
                text = judge_prompt(r["prompt"])
                user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
                image = np.asarray(Image.open(Path(folder) / r["image"]).convert("RGB"))
                completion = reflect_completion(r["asked"], r["shown"], r["verdict"])
                rows.append(self._encode(head + user, completion, False, image))
        return rows

    def _examples(self) -> list[Example]:
        data = self.config.data
        knowledge = [self._encode([{"role": "user", "content": r["question"]}], r["answer"], True)
                     for r in knowledge_corpus(self.config.run.seed)]
        describe = self._seeing("describe", data.describe_examples, system=False)
        if self.config.stage == "thinker_pretrain":
            captions = [self._encode([{"role": "user", "content": r["caption"]}], r["canonical"], True)
                        for r in caption_corpus(data.captions, self.config.run.seed)]
            return knowledge * data.knowledge_repeats + captions + describe
        system = self.thinker_config.system_prompt
        sft = [self._encode([{"role": "system", "content": system}, {"role": "user", "content": r["prompt"]}],
                            r["completion"], False)
               for r in think_examples(data.reasoning_examples, data.composition_examples, self.config.run.seed,
                                         data.text_examples, data.photo_examples)]
        # edits and verdicts are asked as the pipeline asks them: system prompt, image, request
        seeing = (self._seeing("edit", data.edit_examples, system=True)
                  + self._seeing("reflect", data.reflection_examples, system=True)
                  + self._drawn_reflection() * data.drawn_reflection_repeats)
        return sft + seeing + knowledge + describe  # knowledge QA keeps every fact, held-out ones included, in memory

    def batch(self, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.config.run.seed}-{step}")
        picks = [rng.randrange(len(self.examples)) for _ in range(self.config.run.batch_size)]
        rows = [self.examples[i] for i in picks[start : start + size]]
        length = max(len(row.ids) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([row.ids + [pad] * (length - len(row.ids)) for row in rows])
        labels = torch.tensor([row.labels + [IGNORE] * (length - len(row.labels)) for row in rows])
        mask = torch.tensor([[1] * len(row.ids) + [0] * (length - len(row.ids)) for row in rows])
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        if self.processor is not None:
            # which tokens are image tokens (1), as the processor marks them for multimodal RoPE
            image_token = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
            batch["mm_token_type_ids"] = (input_ids == image_token).long()
            images = [Image.fromarray(row.image) for row in rows if row.image is not None]
            if images:
                batch.update(self.processor.image_processor(images=images, return_tensors="pt"))
        return batch

    # ------------------------------------------------------------------ output
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        load_ema(self.model, ema)
        model = self.model.lm
        if self.lora:
            model = model.merge_and_unload()
        save_thinker(directory, model.eval(), self.text, self.thinker_config)
