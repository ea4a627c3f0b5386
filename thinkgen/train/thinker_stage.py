"""Thinker training: pretraining on ShapeWorld knowledge, then think-then-rewrite SFT.

* ``thinker_pretrain``: the knowledge corpus (every fact, as chat question -> answer, loss on the
  whole sequence) and scene captions — the thinker's "world knowledge".
* ``thinker_sft``: prompt -> ``<think> reasoning </think>`` canonical caption, loss on the
  assistant turn only, from the supervised fact group (plus plain composition prompts), mixed
  with knowledge QA so that the held-out facts are not forgotten.

The same code fine-tunes a real LLM (``init`` = a folder with ``thinker/`` and ``tokenizer/``);
``thinker.lora_rank > 0`` trains LoRA adapters through peft and merges them when saving.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from ..thinker import ThinkerConfig
from ..world import suites
from ..world.corpora import caption_corpus, knowledge_corpus, think_examples
from .config import TrainConfig
from .loop import load_ema
from .tokenizer import word_tokenizer

IGNORE = -100
THINKER_CONFIG = "thinker_config.json"


def shapeworld_texts(config: TrainConfig) -> list[str]:
    """Every text the ShapeWorld thinker can meet, for its vocabulary."""
    texts = [config.thinker.system_prompt]
    texts += [r["question"] + " " + r["answer"] for r in knowledge_corpus()]
    texts += [r["caption"] + " " + r["canonical"] for r in caption_corpus(3000)]
    texts += [r["prompt"] + " " + r["completion"] for r in think_examples(2000, 600)]
    for suite in suites.SUITES:
        for split in ("train", "test", "rl") if suite == "reasoning" else ("train", "test"):
            texts += [f"a photo of {i.prompt} {i.canonical} {i.reasoning}" for i in suites.build(suite, 100, split)]
    from ..reflection import REFLECTION_PROMPT, RIGHT

    texts += [REFLECTION_PROMPT, RIGHT]
    return texts


def load_thinker(directory: str | Path):
    """(model, tokenizer, ThinkerConfig) from a thinker folder or a pipeline folder."""
    directory = Path(directory)
    model = AutoModelForCausalLM.from_pretrained(directory / "thinker", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer", local_files_only=True)
    options = {}
    if (directory / THINKER_CONFIG).exists():
        options = json.loads((directory / THINKER_CONFIG).read_text())
    elif (directory / "model_index.json").exists():
        options = json.loads((directory / "model_index.json").read_text()).get("thinker_config", {})
    return model, tokenizer, ThinkerConfig(**options)


def save_thinker(directory: Path, model, tokenizer, thinker_config: ThinkerConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory / "thinker", safe_serialization=True)
    tokenizer.save_pretrained(directory / "tokenizer")
    (directory / THINKER_CONFIG).write_text(json.dumps(thinker_config.to_dict(), indent=2))


def new_thinker(config: TrainConfig):
    tokenizer = word_tokenizer(shapeworld_texts(config))
    t = config.thinker
    model_config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_heads,
        head_dim=t.hidden_size // t.num_heads, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(config.run.seed)
    thinker_config = ThinkerConfig(system_prompt=t.system_prompt, max_think_tokens=t.max_think_tokens,
                                   max_rewrite_tokens=t.max_rewrite_tokens, extract=config.dit.extract)
    return Qwen3ForCausalLM(model_config), tokenizer, thinker_config


class CausalLMLoss(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.lm = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lm(**batch).loss


class ThinkerStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        if config.init:
            model, self.tokenizer, self.thinker_config = load_thinker(config.init)
        else:
            model, self.tokenizer, self.thinker_config = new_thinker(config)
        self.lora = config.thinker.lora_rank > 0
        if self.lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=config.thinker.lora_rank, lora_alpha=config.thinker.lora_alpha,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0))
        self.model = CausalLMLoss(model)
        self.examples = self._examples()

    # ------------------------------------------------------------------ data
    def _encode(self, messages: list[dict], completion: str, loss_on_prompt: bool) -> tuple[list[int], list[int]]:
        prefix = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=False)
        completion_ids = self.tokenizer.encode(completion + "<|im_end|>", add_special_tokens=False)
        ids = (prefix_ids + completion_ids)[: self.config.data.max_length]
        labels = (prefix_ids if loss_on_prompt else [IGNORE] * len(prefix_ids)) + completion_ids
        return ids, labels[: len(ids)]

    def _examples(self) -> list[tuple[list[int], list[int]]]:
        data = self.config.data
        knowledge = [self._encode([{"role": "user", "content": r["question"]}], r["answer"], True)
                     for r in knowledge_corpus(self.config.run.seed)]
        if self.config.stage == "thinker_pretrain":
            captions = [self._encode([{"role": "user", "content": r["caption"]}], r["canonical"], True)
                        for r in caption_corpus(data.captions, self.config.run.seed)]
            return knowledge * data.knowledge_repeats + captions
        system = self.thinker_config.system_prompt
        sft = [self._encode([{"role": "system", "content": system}, {"role": "user", "content": r["prompt"]}],
                            r["completion"], False)
               for r in think_examples(data.reasoning_examples, data.composition_examples, self.config.run.seed)]
        return sft + knowledge  # knowledge QA keeps every fact, held-out ones included, in memory

    def batch(self, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.config.run.seed}-{step}")
        picks = [rng.randrange(len(self.examples)) for _ in range(self.config.run.batch_size)]
        rows = [self.examples[i] for i in picks[start : start + size]]
        length = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in rows])
        labels = torch.tensor([lab + [IGNORE] * (length - len(lab)) for _, lab in rows])
        mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in rows])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    # ------------------------------------------------------------------ output
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        load_ema(self.model, ema)
        model = self.model.lm
        if self.lora:
            model = model.merge_and_unload()
        save_thinker(directory, model.eval(), self.tokenizer, self.thinker_config)
