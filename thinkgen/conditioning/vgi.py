"""``thinkgen``: ThinkGen's VGI-refine. The thinker's last-layer states after ``</think>`` go
through prepadding states and a connector (:class:`thinkgen.Bridge`) to the DiT.

``thinkgen-reencode``: the same thinker, bridge and DiT, conditioned as T2G conditions Qwen-Image:
think, then encode the rewrite alone in direct mode (reason, rewrite, re-encode), so that the DiT
reads the rewrite's states without the reasoning in their context."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..thinker import Thinker, ThinkerOutput
from .base import Condition, Conditioning, Traces


class VGIRefine(Conditioning):
    name = "thinkgen"
    guidance = "batched"

    def __init__(self, thinker, bridge=None, **settings: Any) -> None:
        if bridge is None:
            raise ValueError("the 'thinkgen' conditioning needs a bridge (VGI-refine)")
        if settings:
            raise ValueError(f"the 'thinkgen' conditioning takes no settings, got {sorted(settings)}")
        super().__init__(thinker, bridge)
        if bridge.config.in_channels != thinker.state_dim:
            raise ValueError(f"bridge expects {bridge.config.in_channels} channels, thinker gives {thinker.state_dim}")
        self._null: ThinkerOutput | None = None  # the thinker is frozen at inference: cache ""

    @property
    def text_channels(self) -> int:
        return self.bridge.config.out_channels

    def refine(self, thought: ThinkerOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Thinker states -> DiT text states and mask."""
        device = self.thinker.device
        return self.bridge(thought.states.to(device, self.bridge.dtype), thought.mask.to(device))

    def encode(self, prompts, think=True, images=None, seed=None) -> Condition:
        thought = self.thinker.encode(prompts, think=think, images=images, seed=seed)
        text, mask = self.refine(thought)
        return Condition(text, mask, thought.reasoning, thought.rewritten, thought)

    def sample(self, prompt, copies, temperature, top_k, max_new_tokens, seed) -> Traces:
        """Think-mode traces (the thinker's own budgets, each capped at ``max_new_tokens``); the states
        are the thinker's, before the bridge (which trains with the DiT)."""
        thought = self._sampler(temperature, top_k, max_new_tokens).encode([prompt] * copies, think=True, seed=seed)
        return Traces(thought.sequences, thought.prompt_lengths, self._rows(thought), thought.rewritten)

    def _sampler(self, temperature: float, top_k: int, max_new_tokens: int | None) -> Thinker:
        config = self.thinker.config
        budgets = {} if max_new_tokens is None else {
            "max_think_tokens": min(config.max_think_tokens, max_new_tokens),
            "max_rewrite_tokens": min(config.max_rewrite_tokens, max_new_tokens)}
        sampling = replace(config, do_sample=True, temperature=temperature, top_k=top_k, top_p=1.0, **budgets)
        return Thinker(self.thinker.model, self.thinker.tokenizer, self.thinker.processor, sampling)

    @staticmethod
    def _rows(thought: ThinkerOutput) -> list[torch.Tensor]:
        return [thought.states[i][thought.mask[i].bool()] for i in range(thought.states.shape[0])]  # (T_i, C)

    def negative(self, prompts, batch):
        """The direct-mode encoding of the negative prompt; by default the empty prompt, so that
        training with caption dropout to ``""`` matches it."""
        if prompts is None or all(p == "" for p in prompts):
            if self._null is None:
                self._null = self.thinker.encode([""], think=False)
            text, mask = self.refine(self._null)
            return text.expand(batch, -1, -1), mask.expand(batch, -1)
        text, mask = self.refine(self.thinker.encode(prompts, think=False))
        return text, mask


class VGIReencode(VGIRefine):
    """Think mode re-encodes the rewrite in direct mode (with the same images, for edits); direct
    mode is :class:`VGIRefine`'s. Reasoning and rewrite are the think pass's; ``thought`` holds
    the states the DiT reads. It is an inference strategy: the training stages read the thinker's
    states themselves (``data.think_states`` and the RL rollouts in context), and a DiT trained on
    canonical captions in direct mode has already learnt what it reads here."""

    name = "thinkgen-reencode"

    def encode(self, prompts, think=True, images=None, seed=None) -> Condition:
        if not think:
            return super().encode(prompts, think=False, images=images, seed=seed)
        thought = self.thinker.encode(prompts, think=True, images=images, seed=seed)
        reread = self.thinker.encode(thought.rewritten, think=False, images=images, seed=seed)
        text, mask = self.refine(reread)
        return Condition(text, mask, thought.reasoning, thought.rewritten, reread)

    def sample(self, prompt, copies, temperature, top_k, max_new_tokens, seed) -> Traces:
        """The sampled traces; the DiT side reads each rewrite re-encoded in direct mode."""
        traces = super().sample(prompt, copies, temperature, top_k, max_new_tokens, seed)
        traces.states = self._rows(self.thinker.encode(traces.rewritten, think=False))
        return traces
