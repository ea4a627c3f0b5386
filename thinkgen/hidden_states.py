"""Hidden states as conditioning: which tensors "the last n layers" are, captured by forward hooks.

"The last ``n`` layers" means exactly transformers' ``output_hidden_states[-n:]``: the raw outputs of
decoder blocks ``-n .. -2`` and the last block's output *after the final norm* (transformers applies
the final norm to the last entry). Hooks record them during ``generate`` too, so a thinker's states
come from the same forward calls that wrote its text, with no second pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def text_decoder(model: nn.Module) -> nn.Module:
    """The module holding the decoder blocks (``.layers``) and the final norm (``.norm``)."""
    candidates = [model]
    with contextlib.suppress(Exception):
        candidates.insert(0, model.get_decoder())
    for candidate in list(candidates):
        for name in ("language_model", "model", "text_model"):
            sub = getattr(candidate, name, None)
            if isinstance(sub, nn.Module):
                candidates.append(sub)
    for candidate in candidates:
        if isinstance(getattr(candidate, "layers", None), nn.ModuleList) and hasattr(
            candidate, "norm"
        ):
            return candidate
    raise TypeError(f"cannot find decoder layers and final norm in {type(model).__name__}")


@contextlib.contextmanager
def capture_last_layers(model: nn.Module, num_layers: int, detach: bool = True) -> Iterator[list[list[torch.Tensor]]]:
    """Record what transformers would return as ``hidden_states[-num_layers:]``, call by call
    (``detach=False`` keeps them in the autograd graph, for losses on the states).

    Yields one list per captured tensor (oldest layer first, the final norm last); every forward
    call appends its ``(B, T_call, D)`` output. Generation with a KV cache calls the model once
    for the prompt and once per new token, so concatenating a list along time gives the states of
    every token that was fed.
    """
    decoder = text_decoder(model)
    if num_layers > len(decoder.layers):
        raise ValueError(f"num_layers={num_layers} exceeds the model's {len(decoder.layers)}")
    # hidden_states[-1] is norm(last block); hidden_states[-k] (k >= 2) is block[-k]'s raw output.
    last = len(decoder.layers)
    modules = list(decoder.layers[last - num_layers : last - 1]) + [decoder.norm]
    records: list[list[torch.Tensor]] = [[] for _ in modules]

    def make_hook(store: list[torch.Tensor]):
        def hook(_module, _inputs, output):
            tensor = output[0] if isinstance(output, tuple) else output
            store.append(tensor.detach() if detach else tensor)

        return hook

    handles = [m.register_forward_hook(make_hook(r)) for m, r in zip(modules, records, strict=True)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def stack_records(records: list[list[torch.Tensor]]) -> torch.Tensor:
    return torch.cat([torch.cat(r, dim=1) for r in records], dim=-1)  # (B, S, n * D)
