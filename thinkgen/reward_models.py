"""Reward models for your own prompts, batched: a vision-language judge behind any OpenAI-compatible
chat endpoint (vLLM, SGLang, a hosted API), and a scorer model from a local folder through transformers.

Both are reward functions of the registry's shape (``fn(items, images, rewrites) -> list[float]``);
the RL stages build them from the config's ``judge:`` and ``scorer:`` sections when ``rl.rewards``
names them. An item is a :class:`thinkgen.data.prompts.PromptRow` (its ``prompt`` and the row's other
``fields``, which the judge's question may use: ``{prompt}``, ``{answer}``, ...).

* **judge** — every image goes, as a PNG data URL with the question, to ``POST {url}/chat/completions``;
  requests run ``concurrency`` at a time. ``answer: yes_no`` scores 1 for an answer starting with
  "yes", 0 otherwise; ``score_10`` reads the first number of the answer and divides it by 10 (clipped).
* **scorer** — an image-classification model (``AutoModelForImageClassification`` and its image
  processor, local files and safetensors only): the probability of ``label``, or the single logit
  of a one-output head (aesthetic predictors are published so).
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class JudgeReward:
    """A VLM judge behind an OpenAI-compatible chat endpoint (see the module's docstring)."""

    def __init__(self, url: str, model: str, question: str, answer: str = "yes_no", api_key_env: str | None = None,
                 timeout_s: float = 60.0, concurrency: int = 8, max_tokens: int = 16) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.question, self.answer = model, question, answer
        self.timeout_s, self.concurrency, self.max_tokens = timeout_s, concurrency, max_tokens
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise ValueError(f"judge.api_key_env names {api_key_env}, which is not set")

    def ask(self, image: Image.Image, fields: dict[str, Any]) -> str:
        try:
            question = self.question.format(**fields)
        except (KeyError, IndexError) as error:
            raise ValueError(f"judge.question uses {error}, which the prompt row does not have") from None
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(image)}},
                                         {"type": "text", "text": question}]}]}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - the user's URL
                reply = json.loads(response.read(1 << 20))
            return str(reply["choices"][0]["message"]["content"])
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise ValueError(f"judge at {self.url}: {error}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError(f"judge at {self.url}: not an OpenAI chat completion reply") from None

    def score(self, text: str) -> float:
        text = text.strip().lower()
        if self.answer == "yes_no":
            return 1.0 if text.startswith("yes") else 0.0
        number = re.search(r"-?\d+(\.\d+)?", text)
        return 0.0 if number is None else min(1.0, max(0.0, float(number.group()) / 10))

    def __call__(self, items: Sequence[Any], images: Sequence[Image.Image | None], rewrites: Sequence[str]
                 ) -> list[float]:
        def one(pair: tuple[Any, Image.Image | None]) -> float:
            item, image = pair
            if image is None:
                raise ValueError("the judge scores images; this sample has none")
            fields = {**getattr(item, "fields", {}), "prompt": item.prompt}
            return self.score(self.ask(image, fields))

        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, zip(items, images, strict=True)))


class ScorerReward:
    """An image-classification model from a local folder (see the module's docstring)."""

    def __init__(self, path: str, label: str | None = None, batch_size: int = 16) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"scorer.path: folder not found: {folder}")
        self.model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True,
                                                                     use_safetensors=True).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.batch_size = batch_size
        labels = self.model.config.label2id
        if self.model.config.num_labels == 1:
            self.index = None  # the head's one logit is the score
        elif label is None or label not in labels:
            raise ValueError(f"scorer.label must name one of the model's labels {sorted(labels)}, got {label!r}")
        else:
            self.index = labels[label]

    @torch.no_grad()
    def __call__(self, items: Sequence[Any], images: Sequence[Image.Image | None], rewrites: Sequence[str]
                 ) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            logits = self.model(**self.processor(images=chunk, return_tensors="pt")).logits.float()
            values = logits[:, 0] if self.index is None else logits.softmax(-1)[:, self.index]
            scores += values.tolist()
        return scores


def build(name: str, settings: dict[str, Any] | None):
    """The reward model ``name`` ("judge" or "scorer") from its config section."""
    if settings is None:
        raise ValueError(f"rl.rewards names {name!r}: add a {name}: section to the config")
    return JudgeReward(**settings) if name == "judge" else ScorerReward(**settings)
