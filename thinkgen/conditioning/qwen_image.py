"""``qwen-image``: diffusers' Qwen-Image prompt encoding, exactly, with optional thinking.

The encoding (what ``QwenImagePipeline`` does): the prompt goes into a fixed chat template whose
system turn asks for a detailed description; the text encoder (Qwen2.5-VL) runs once; its last
layer (after the final norm) is kept for the real tokens only, the template's first
``drop_tokens`` positions (the system turn) are dropped, and the rows are right-padded. There is
no connector: the DiT reads the encoder's width directly. The negative prompt (``" "`` by
default) goes through the same template.

Thinking, for a text encoder that was fine-tuned to reason (T2G). Its tokenizer has no think
tokens, so the reasoning ends at a *text* marker:

* ``think_mode="rewrite"`` (T2G's own inference): greedy generation from
  ``instruction + prompt`` as the user turn; the rewrite is the text after ``rewrite_marker``
  (e.g. ``"Revised Prompt:"``), and is then re-encoded with the template above. The states of the
  thinking pass are discarded.
* ``think_mode="capture"`` (thinkgen's way): the last-layer states of the rewrite tokens are
  captured *during* generation and condition the DiT directly; no second pass.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..hidden_states import capture_last_layers, stack_records
from ..thinker import render_chat
from .base import Condition, Conditioning, Traces, pad_rows, seeded

# diffusers' QwenImagePipeline template and the number of leading tokens it drops
TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
            "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
            "<|im_end|>\n<|im_start|>assistant\n")
DROP_TOKENS = 34
# A neutral instruction; to reproduce a released model exactly, set its own text (T2G: the
# SYSTEM_PROMPT of its public inference.py) as ``instruction`` in model_index.json.
DEFAULT_INSTRUCTION = ("Think step by step about what the user wants to see, then write the final "
                       "prompt for the image generator after 'Revised Prompt:' on a new line.\n\nPrompt: ")
THINK_MODES = ("rewrite", "capture")


def extract_rewrite(text: str, marker: str) -> tuple[str, str]:
    """Split a generated text at ``marker``: (reasoning, rewrite). Without the marker the whole
    text is the rewrite, as T2G's script does; a newline right after the marker is skipped."""
    match = re.search(re.escape(marker) + r"\n(.*)", text, re.DOTALL) or re.search(
        re.escape(marker) + r"(.*)", text, re.DOTALL)
    if match is None:
        return "", text.strip()
    return text[: text.find(marker)].strip(), match.group(1).strip()


class QwenImageEncoding(Conditioning):
    name = "qwen-image"
    guidance = "true-cfg"

    def __init__(self, thinker, bridge=None, template: str = TEMPLATE, drop_tokens: int = DROP_TOKENS,
                 max_sequence_length: int = 512, think_mode: str = "rewrite",
                 instruction: str = DEFAULT_INSTRUCTION, rewrite_marker: str = "Revised Prompt:",
                 max_new_tokens: int = 1024, default_negative: str = " ") -> None:
        if bridge is not None:
            raise ValueError("the 'qwen-image' conditioning has no bridge: the DiT reads the encoder's last layer")
        if think_mode not in THINK_MODES:
            raise ValueError(f"think_mode must be one of {THINK_MODES}, got {think_mode!r}")
        if "{}" not in template:
            raise ValueError("template must contain '{}' where the prompt goes")
        super().__init__(thinker)
        self.template, self.drop_tokens = template, drop_tokens
        self.max_sequence_length, self.think_mode = max_sequence_length, think_mode
        self.instruction, self.rewrite_marker = instruction, rewrite_marker
        self.max_new_tokens, self.default_negative = max_new_tokens, default_negative

    def settings(self) -> dict[str, Any]:
        return {"template": self.template, "drop_tokens": self.drop_tokens,
                "max_sequence_length": self.max_sequence_length, "think_mode": self.think_mode,
                "instruction": self.instruction, "rewrite_marker": self.rewrite_marker,
                "max_new_tokens": self.max_new_tokens, "default_negative": self.default_negative}

    @property
    def text_channels(self) -> int:
        return self.thinker.hidden_size

    def latent_dtype(self) -> torch.dtype:
        return self.thinker.model.dtype  # QwenImagePipeline draws noise in the prompt embeds' dtype

    # ------------------------------------------------------------------ the encoding
    @torch.no_grad()
    def embed(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """QwenImagePipeline's prompt encoding: (B, L, D) last-layer states and (B, L) mask."""
        tokenizer, model = self.thinker.tokenizer, self.thinker.model
        tokens = tokenizer([self.template.format(p) for p in prompts], max_length=1024 + self.drop_tokens,
                           padding=True, truncation=True, return_tensors="pt").to(self.thinker.device)
        hidden = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                       output_hidden_states=True).hidden_states[-1]  # (B, S, D)
        keep = tokens.attention_mask.bool()
        rows = [h[m][self.drop_tokens:] for h, m in zip(hidden, keep, strict=True)]  # real tokens, system turn dropped
        return self._pad(rows, model.dtype)

    def _pad(self, rows: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        text, mask = pad_rows(rows, dtype)
        return text[:, : self.max_sequence_length], mask[:, : self.max_sequence_length]

    def encode(self, prompts, think=True, images=None, seed=None) -> Condition:
        if images is not None and any(images):
            raise ValueError("the 'qwen-image' conditioning draws from text only (no reference images)")
        if not think:
            text, mask = self.embed(prompts)
            return Condition(text, mask, [""] * len(prompts), list(prompts))
        with seeded(seed, self.thinker.device):
            texts, states = self.think(prompts)
        split = [extract_rewrite(t, self.rewrite_marker) for t in texts]
        reasoning, rewritten = [s[0] for s in split], [s[1] for s in split]
        if self.think_mode == "rewrite":
            text, mask = self.embed(rewritten)
        else:
            text, mask = self._pad(states, self.thinker.model.dtype)
        return Condition(text, mask, reasoning, rewritten)

    def negative(self, prompts, batch):
        return self.embed(prompts if prompts is not None else [self.default_negative] * batch)

    # ------------------------------------------------------------------ thinking
    def think(self, prompts: list[str]) -> tuple[list[str], list[torch.Tensor]]:
        """Greedy generation from ``instruction + prompt``, batched with left padding. Returns the
        generated texts and, per prompt, the captured last-layer states of the rewrite tokens
        (the tokens after the marker, through the end token)."""
        texts, captured, _, _ = self._generate(prompts, {"do_sample": False}, self.max_new_tokens)
        return texts, captured

    def sample(self, prompt, copies, temperature, top_k, max_new_tokens, seed) -> Traces:
        """Sampled traces; the DiT side reads what this strategy conditions on: the rewrite
        re-encoded (``think_mode="rewrite"``) or its captured states (``"capture"``)."""
        options = {"do_sample": True, "temperature": temperature, "top_k": top_k or None, "top_p": 1.0}
        with seeded(seed, self.thinker.device):
            texts, captured, sequences, starts = self._generate([prompt] * copies, options,
                                                                max_new_tokens or self.max_new_tokens)
        rewritten = [extract_rewrite(t, self.rewrite_marker)[1] for t in texts]
        if self.think_mode == "rewrite":
            text, mask = self.embed(rewritten)
            captured = [text[i][mask[i].bool()] for i in range(copies)]
        return Traces(sequences, starts, captured, rewritten)

    @torch.no_grad()
    def _generate(self, prompts: list[str], options: dict[str, Any], max_new_tokens: int
                  ) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor], list[int]]:
        """Generation from ``instruction + prompt`` with ``options`` (greedy or sampling): the texts,
        the rewrite tokens' captured last-layer states, and each row's unpadded tokens (prompt +
        completion through its end token) with the prompt's length."""
        tokenizer, model = self.thinker.tokenizer, self.thinker.model
        chats = [render_chat(tokenizer, [{"role": "user", "content": self.instruction + p}]) for p in prompts]
        batch = tokenizer(chats, padding=True, padding_side="left", return_tensors="pt",
                          add_special_tokens=False).to(self.thinker.device)
        width = batch.input_ids.shape[1]
        end_ids = self.thinker.end_ids
        with capture_last_layers(model, 1) as records:
            sequences = model.generate(**batch, **options, max_new_tokens=max_new_tokens,
                                       eos_token_id=end_ids, pad_token_id=self.thinker.pad_id)
        states = stack_records(records)  # (B, S - 1, D): every fed token
        texts, captured, rows, starts = [], [], [], []
        for row in range(sequences.shape[0]):
            completion = sequences[row, width:].tolist()
            end = next((i for i, t in enumerate(completion) if t in end_ids), len(completion))
            texts.append(tokenizer.decode(completion[:end], skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False))
            start = self._rewrite_start(completion[:end])
            stop = min(width + end + 1, states.shape[1])  # the end token, when it was fed
            captured.append(states[row, width + start : stop])
            first = width - int(batch.attention_mask[row].sum())  # left padding
            rows.append(sequences[row, first : width + end + 1].cpu())  # through the end token, if any
            starts.append(width - first)
        return texts, captured, rows, starts

    def _rewrite_start(self, completion: list[int]) -> int:
        """Index of the first rewrite token: the shortest prefix whose text holds the marker (and
        the newline after it, if any), found by bisection since holding it is monotone in the
        prefix length. Without a marker the whole completion is the rewrite."""
        def decode(ids: list[int]) -> str:
            return self.thinker.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

        if self.rewrite_marker not in decode(completion):
            return 0
        low, high = 1, len(completion)  # the marker is in completion[:high], not in completion[:low - 1]
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if self.rewrite_marker in decode(completion[:middle]) else (middle + 1, high)
        text, rest = decode(completion[:low]), decode(completion[low : low + 1])
        return low + 1 if rest.startswith("\n") and text.endswith(self.rewrite_marker) else low
