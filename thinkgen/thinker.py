"""The thinker: a Hugging Face causal LM or vision-language model that reasons, then rewrites.

Two modes, one output type:

* **think** — the chat prompt (system + user [+ images]) is given to ``model.generate``; the model
  writes ``<think> reasoning </think>`` and then the rewritten instruction. The hidden states of
  every token fed to the model are captured *during* generation by forward hooks, so no second
  pass over prompt + reasoning is needed.
* **direct** — ThinkGen's pseudo-CoT template: the chat prompt followed by an empty think block and
  the user prompt itself (``<think>\\n\\n</think>\\n\\n{prompt}<|im_end|>``), in one forward pass.

Conditioning states
-------------------
The last ``n`` layers' states (``hidden_states.py`` says exactly which tensors), concatenated
along channels, ``n * hidden_size`` of them. With
``extract="cut"`` only the positions strictly after the first ``</think>`` are kept, up to and
including the end-of-turn token; ``extract="all"`` keeps every non-padding position (an ablation).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria

from .hidden_states import capture_last_layers, stack_records, text_decoder

DEFAULT_SYSTEM_PROMPT = (
    "You are an assistant that prepares prompts for an image generator. Think step by step inside "
    "<think></think> about what the user really asks for, using your knowledge, then write one "
    "precise description of the image to draw."
)


@dataclass
class ThinkerConfig:
    """How the thinker prompts, generates and extracts its conditioning states."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    num_layers: int = 2  # states = transformers' hidden_states[-num_layers:], concatenated
    extract: str = "cut"  # "cut": after </think> only; "all": every position (ablation)
    max_think_tokens: int = 256  # </think> is forced once the reasoning reaches this length
    max_rewrite_tokens: int = 128  # the end-of-turn token is forced after this many rewrite tokens
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    think_open: str = "<think>"
    think_close: str = "</think>"
    end_token: str | None = None  # None: "<|im_end|>" if the vocabulary has it, else eos

    def __post_init__(self) -> None:
        kinds = {"system_prompt": str, "think_open": str, "think_close": str, "extract": str, "do_sample": bool,
                 "num_layers": int, "max_think_tokens": int, "max_rewrite_tokens": int, "top_k": int,
                 "temperature": (int, float), "top_p": (int, float)}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{name} has a wrong type: {value!r}")
        if self.end_token is not None and not isinstance(self.end_token, str):
            raise ValueError(f"end_token must be text or null, got {self.end_token!r}")
        if not (0 < self.temperature <= 100 and 0 < self.top_p <= 1 and self.top_k >= 0):
            raise ValueError("temperature must be in (0, 100], top_p in (0, 1] and top_k >= 0")
        if self.max_think_tokens > 65536 or self.max_rewrite_tokens > 65536:
            raise ValueError("max_think_tokens and max_rewrite_tokens must be <= 65536")
        if self.extract not in ("cut", "all"):
            raise ValueError(f"extract must be 'cut' or 'all', got {self.extract!r}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.max_think_tokens < 0 or self.max_rewrite_tokens < 1:
            raise ValueError("max_think_tokens must be >= 0 and max_rewrite_tokens >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ThinkerOutput:
    """Conditioning states (right-padded) plus the text the thinker wrote, per sample."""

    states: torch.Tensor  # (B, T, num_layers * hidden_size)
    mask: torch.Tensor  # (B, T) 1 for real positions, 0 for padding
    reasoning: list[str]
    rewritten: list[str]
    sequences: list[torch.Tensor] = field(default_factory=list)  # token ids, prompt + completion
    prompt_lengths: list[int] = field(default_factory=list)  # where each completion starts


# A chat template is code from the model folder (Jinja): render it within a time and size budget,
# so that a hostile or broken one fails with one line instead of running for ever.
CHAT_TEMPLATE_SECONDS = 5.0
CHAT_TEMPLATE_CHARS = 1_000_000


class ChatTemplateError(ValueError):
    """A chat template that ran out of its time or size budget."""


@contextlib.contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Raise ChatTemplateError once ``seconds`` have passed, in any thread: a trace function sees
    every line the render runs (Jinja compiles a template to Python) and checks the clock every
    256 of them. (An alarm signal would reach the main thread only; the server renders in a worker.)"""
    deadline, previous, events = time.monotonic() + seconds, sys.gettrace(), 0

    def check(frame, event, arg):
        nonlocal events
        events += 1
        if events % 256 == 0 and time.monotonic() > deadline:
            raise ChatTemplateError(f"the chat template ran longer than {seconds:g} s; it is not usable")
        return check

    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)


def render_chat(templater: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """``apply_chat_template(..., tokenize=False)`` within the time and size budget; a template
    that fails (its own ``raise_exception``, a Jinja error) is a :class:`ChatTemplateError`."""
    try:
        with _time_budget(CHAT_TEMPLATE_SECONDS):
            text = templater.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except ChatTemplateError:
        raise
    except (RecursionError, MemoryError):
        raise ChatTemplateError("the chat template recursed or grew without bound; it is not usable") from None
    except Exception as error:  # noqa: BLE001 - Jinja's and the template's own errors, whatever their class
        raise ChatTemplateError(f"the chat template failed: {' '.join(str(error).split())[:200]}") from None
    if not isinstance(text, str) or len(text) > CHAT_TEMPLATE_CHARS:
        raise ChatTemplateError(f"the chat template produced {len(text):,} characters (limit "
                                f"{CHAT_TEMPLATE_CHARS:,}); it is not usable")
    return text


class ThinkBudget(LogitsProcessor):
    """Per-row phases for batched think generation: think → rewrite → end → padding.

    * while thinking, end-of-turn tokens are banned, and ``</think>`` is forced after
      ``max_think`` tokens;
    * after ``</think>``, the end token is forced after ``max_rewrite`` tokens;
    * once a row has ended it only receives padding, so rows stop independently in one batch.
    """

    def __init__(
        self, prompt_length: int, close_id: int, end_ids: list[int], pad_id: int,
        max_think: int, max_rewrite: int,
    ) -> None:
        self.prompt_length = prompt_length
        self.close_id = close_id
        self.end_ids = end_ids
        self.pad_id = pad_id
        self.max_think = max_think
        self.max_rewrite = max_rewrite

    def _force(self, scores: torch.Tensor, rows: torch.Tensor, token: int) -> None:
        scores[rows] = float("-inf")
        scores[rows, token] = 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]  # (B, g)
        has_close, close_at, ended = _phases(generated, self.close_id, self.end_ids)
        end_ids = torch.tensor(self.end_ids, device=scores.device)
        thinking = ~has_close
        scores = scores.clone()
        scores[thinking.nonzero(as_tuple=True)[0][:, None], end_ids] = float("-inf")
        self._force(scores, thinking & (generated.shape[1] >= self.max_think), self.close_id)
        rewrite_length = generated.shape[1] - close_at - 1
        self._force(scores, has_close & ~ended & (rewrite_length >= self.max_rewrite), self.end_ids[0])
        self._force(scores, ended, self.pad_id)
        return scores


class TokenTap(LogitsProcessor):
    """Hands the completions so far to a callback at every step; changes no score."""

    def __init__(self, prompt_length: int, callback: Any) -> None:
        self.prompt_length, self.callback = prompt_length, callback

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.callback(input_ids[:, self.prompt_length :])
        return scores


def _phases(generated: torch.Tensor, close_id: int, end_ids: list[int]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of completions ``(B, g)``: has ``</think>`` appeared, where first (``g`` if not),
    and has an end token followed it. Vectorised: it runs once per generated token."""
    g = generated.shape[1]
    is_close = generated == close_id
    has_close = is_close.any(dim=1)
    first_close = is_close.int().argmax(dim=1) if g else torch.zeros_like(has_close, dtype=torch.long)
    close_at = torch.where(has_close, first_close, g)  # argmax gives the first maximum
    after_close = torch.arange(g, device=generated.device)[None, :] > close_at[:, None]
    is_end = torch.isin(generated, torch.tensor(end_ids, device=generated.device))
    return has_close, close_at, (is_end & after_close).any(dim=1)


class AllRowsEnded(StoppingCriteria):
    """Stop one step *after* every row's end token, so that the end token itself was fed and
    its hidden state captured."""

    def __init__(self, prompt_length: int, close_id: int, end_ids: list[int]) -> None:
        self.prompt_length, self.close_id, self.end_ids = prompt_length, close_id, end_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        fed = input_ids[:, self.prompt_length : -1]  # the newest token has not been fed yet
        return _phases(fed, self.close_id, self.end_ids)[2]


@contextlib.contextmanager
def _without_eos_stop(model: nn.Module) -> Iterator[None]:
    """Hide the model's default eos ids from ``generate`` for one call.

    ``generate`` fills unset options from ``model.generation_config``, and its eos criterion would
    stop a row as soon as the end token is *sampled*, before it is fed and its state computed.
    :class:`AllRowsEnded` stops one step later instead.
    """
    config = getattr(model, "generation_config", None)
    saved = getattr(config, "eos_token_id", None)
    if config is not None:
        config.eos_token_id = None
    try:
        yield
    finally:
        if config is not None:
            config.eos_token_id = saved


def _completion_span(tokens: list[int], close_id: int, end_ids: list[int]) -> tuple[int, int | None] | None:
    """(index of the first </think>, index of the first end token after it) in a completion."""
    if close_id not in tokens:
        return None
    close = tokens.index(close_id)
    for i in range(close + 1, len(tokens)):
        if tokens[i] in end_ids:
            return close, i
    return close, None


class Thinker:
    """Wraps a causal LM (``AutoModelForCausalLM``) or VLM (``AutoModelForImageTextToText``).

    ``tokenizer`` is a tokenizer for text models; for VLMs pass the ``processor`` (it carries its
    tokenizer). The ids of ``<think>``/``</think>`` and the end-of-turn token are read from the
    tokenizer, never hard-coded.
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, processor: Any = None,
                 config: ThinkerConfig | None = None) -> None:
        if tokenizer is None and processor is None:
            raise ValueError("Thinker needs a tokenizer (text models) or a processor (VLMs)")
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else processor.tokenizer
        self.config = config or ThinkerConfig()
        # A tokenizer without a single-token </think> (e.g. Qwen-Image's) can still encode and
        # think with text markers (see thinkgen.conditioning.qwen_image); only the token-level
        # think/direct modes below need the id.
        self.close_id = self._token_id(self.config.think_close, required=False)
        end = self.config.end_token
        if end is None:
            end = "<|im_end|>" if "<|im_end|>" in self.tokenizer.get_vocab() else self.tokenizer.eos_token
        if end is None:
            raise ValueError("tokenizer has no '<|im_end|>' and no eos token; set ThinkerConfig.end_token")
        self.end_token = end
        self.end_ids = [self._token_id(end)]
        model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        model_eos = model_eos if isinstance(model_eos, list) else [model_eos]
        for token in [self.tokenizer.eos_token_id, *model_eos]:  # any of them also ends a turn
            if token is not None and token not in self.end_ids:
                self.end_ids.append(token)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.end_ids[0]

    def _token_id(self, token: str, required: bool = True) -> int | None:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            if not required:
                return None
            raise ValueError(
                f"the tokenizer has no single token for {token!r}; add it as a special token"
            )
        return ids[0]

    def _require_think_tokens(self) -> None:
        if self.close_id is None:
            raise ValueError(
                f"the tokenizer has no single token for {self.config.think_close!r}: the 'thinkgen' "
                "conditioning needs one (add it as a special token), or use a text-marker "
                "conditioning such as 'qwen-image'")

    # ------------------------------------------------------------------ properties
    @property
    def hidden_size(self) -> int:
        return text_decoder(self.model).norm.weight.shape[0]

    @property
    def state_dim(self) -> int:
        """Channels of the conditioning states: num_layers * hidden_size."""
        return self.config.num_layers * self.hidden_size

    execution_device: torch.device | None = None  # set when the weights rest elsewhere (offload)
    # called at every generation step of think mode with the completions so far, (B, g) token ids
    # (a server streams the reasoning from it); None: nothing to call
    token_callback: Any = None

    @property
    def device(self) -> torch.device:
        """Where inputs go: the execution device under CPU offload, else where the weights are."""
        if self.execution_device is not None:
            return self.execution_device
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ templates
    def _messages(self, prompt: str, num_images: int) -> list[dict[str, Any]]:
        if self.processor is not None:
            content: Any = [{"type": "image"} for _ in range(num_images)]
            content.append({"type": "text", "text": prompt})
            system: Any = [{"type": "text", "text": self.config.system_prompt}]
        else:
            if num_images:
                raise ValueError("images need a vision-language thinker (pass a processor)")
            content, system = prompt, self.config.system_prompt
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

    def chat_prompt(self, prompt: str, num_images: int = 0) -> str:
        """The chat-formatted prompt text, ending with the assistant's generation prompt."""
        templater = self.processor if self.processor is not None else self.tokenizer
        return render_chat(templater, self._messages(prompt, num_images), add_generation_prompt=True)

    def pseudo_cot_prefix(self, prompt: str, num_images: int = 0) -> str:
        """Chat prompt plus an empty think block, up to and including ``</think>``."""
        head = self.chat_prompt(prompt, num_images)
        opened = head.rstrip().endswith(self.config.think_open)
        return head + ("" if opened else self.config.think_open + "\n") + "\n" + self.config.think_close

    # ------------------------------------------------------------------ encoding
    def _tokenize(self, texts: list[str], images: Sequence[Sequence[Any]] | None) -> dict[str, torch.Tensor]:
        if self.processor is not None:
            flat = [im for group in images for im in group] if images else None
            self.processor.tokenizer.padding_side = "left"
            batch = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
        else:
            batch = self.tokenizer(
                texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False
            )
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _check(self, prompts: Sequence[str], images: Sequence[Sequence[Any]] | None) -> None:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"got {len(images)} image lists for {len(prompts)} prompts")

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], think: bool = True,
               images: Sequence[Sequence[Any]] | None = None, seed: int | None = None) -> ThinkerOutput:
        """Turn prompts (and optional per-prompt image lists) into conditioning states."""
        self._check(prompts, images)
        self._require_think_tokens()
        device = self.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            if think:
                return self._think(list(prompts), images)
            return self._direct(list(prompts), images)

    def _direct(self, prompts: list[str], images: Sequence[Sequence[Any]] | None) -> ThinkerOutput:
        counts = [len(images[i]) if images else 0 for i in range(len(prompts))]
        prefixes = [self.pseudo_cot_prefix(p, n) for p, n in zip(prompts, counts, strict=True)]
        texts = [pre + "\n\n" + p + self.end_token for pre, p in zip(prefixes, prompts, strict=True)]
        batch = self._tokenize(texts, images)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        with capture_last_layers(self.model, self.config.num_layers) as records:
            self.model(**batch, use_cache=False)
        states = stack_records(records)  # (B, S, n * D)
        spans, sequences, starts = [], [], []
        for row in range(ids.shape[0]):
            real = int(attention[row].sum())
            first = ids.shape[1] - real  # left padding
            # The close token we inserted is the last token of the prefix; find it by the prefix's
            # own length so a literal "</think>" inside the user prompt cannot move the cut.
            prefix_len = len(self._tokenize([prefixes[row]], [images[row]] if images else None)["input_ids"][0])
            close = first + prefix_len - 1
            assert int(ids[row, close]) == self.close_id, "pseudo-CoT prefix tokenized unexpectedly"
            start = close + 1 if self.config.extract == "cut" else first
            spans.append((start, ids.shape[1]))
            sequences.append(ids[row, first:].cpu())
            starts.append(prefix_len)
        out_states, mask = _gather(states, spans)
        return ThinkerOutput(out_states, mask, [""] * len(prompts), list(prompts), sequences, starts)

    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Think-mode ``model.generate`` on a tokenized, left-padded batch: per-row budgets, and a
        stop one step after every row's end token. Returns the sequences (prompt + completion)."""
        cfg = self.config
        prompt_length = batch["input_ids"].shape[1]
        sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k or None}
        generation = GenerationConfig(
            max_new_tokens=cfg.max_think_tokens + cfg.max_rewrite_tokens + 3,
            do_sample=cfg.do_sample, **(sampling if cfg.do_sample else {}),
            pad_token_id=self.pad_id, eos_token_id=None, bos_token_id=None, use_cache=True,
        )
        budget = ThinkBudget(prompt_length, self.close_id, self.end_ids, self.pad_id,
                             cfg.max_think_tokens, cfg.max_rewrite_tokens)
        processors = [budget]
        if self.token_callback is not None:
            processors.insert(0, TokenTap(prompt_length, self.token_callback))
        stop = AllRowsEnded(prompt_length, self.close_id, self.end_ids)
        with _without_eos_stop(self.model):
            return self.model.generate(**batch, generation_config=generation,
                                       logits_processor=LogitsProcessorList(processors), stopping_criteria=[stop])

    def _think(self, prompts: list[str], images: Sequence[Sequence[Any]] | None) -> ThinkerOutput:
        cfg = self.config
        counts = [len(images[i]) if images else 0 for i in range(len(prompts))]
        texts = [self.chat_prompt(p, n) for p, n in zip(prompts, counts, strict=True)]
        batch = self._tokenize(texts, images)
        prompt_length = batch["input_ids"].shape[1]
        with capture_last_layers(self.model, cfg.num_layers) as records:
            sequences = self.generate(batch)
        states = stack_records(records)  # (B, S - 1, n * D): every token but the last was fed
        attention = batch["attention_mask"]
        spans, reasoning, rewritten, seqs, starts = [], [], [], [], []
        for row in range(sequences.shape[0]):
            completion = sequences[row, prompt_length:].tolist()
            span = _completion_span(completion, self.close_id, self.end_ids)
            assert span is not None and span[1] is not None, "generation stopped before the end token"
            close, end = span
            first = prompt_length - int(attention[row].sum())
            start = prompt_length + close + 1 if cfg.extract == "cut" else first
            spans.append((start, prompt_length + end + 1))
            think_tokens = completion[:close]
            open_ids = self.tokenizer.encode(cfg.think_open, add_special_tokens=False)
            if len(open_ids) == 1 and open_ids[0] in think_tokens:
                think_tokens = think_tokens[think_tokens.index(open_ids[0]) + 1 :]
            reasoning.append(self.tokenizer.decode(think_tokens, skip_special_tokens=True).strip())
            rewritten.append(
                self.tokenizer.decode(completion[close + 1 : end], skip_special_tokens=True).strip()
            )
            seqs.append(sequences[row, first : prompt_length + end + 1].cpu())
            starts.append(prompt_length - first)
        out_states, mask = _gather(states, spans)
        return ThinkerOutput(out_states, mask, reasoning, rewritten, seqs, starts)


def _gather(states: torch.Tensor, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``[start, end)`` of each row out of ``states`` and right-pad them into one batch."""
    length = max(end - start for start, end in spans)
    out = states.new_zeros(len(spans), length, states.shape[-1])  # (B, T, n * D)
    mask = torch.zeros(len(spans), length, dtype=torch.long, device=states.device)
    for row, (start, end) in enumerate(spans):
        out[row, : end - start] = states[row, start:end]
        mask[row, : end - start] = 1
    return out, mask
