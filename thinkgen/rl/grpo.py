"""GRPO for the thinker (ThinkGen stage 4): advantages, token log-probs and the clipped loss.

Plain functions over tensors, so each piece can be checked against a hand computation:

* :func:`group_advantages` — ``r - mean(group)``, then divided by the group's std, the batch's
  std, or nothing (Dr. GRPO);
* :func:`completion_logprobs` — log-probabilities of the sampled tokens under a causal LM at a
  sampling temperature, with a mask of the completion positions;
* :func:`grpo_loss` — the clipped surrogate (``epsilon`` below, ``epsilon_high`` above, as in DAPO)
  with token- or sequence-level importance ratios, the k3 KL estimator to a frozen reference,
  and the ``grpo`` / ``dr_grpo`` / ``dapo`` normalisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

SCALES = ("group", "batch", "none")
NORMALIZATIONS = ("grpo", "dr_grpo", "dapo")
IMPORTANCE = ("token", "sequence")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages of ``rewards`` (B,), laid out as consecutive groups of ``group_size``.

    The std is the unbiased one (as TRL computes it); ``eps`` keeps all-equal groups at zero.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.view(-1, group_size)  # (P, G)
    centred = (groups - groups.mean(dim=1, keepdim=True)).flatten()  # (B,)
    if scale == "group":
        std = groups.std(dim=1).repeat_interleave(group_size) if group_size > 1 else torch.zeros_like(centred)
        return centred / (std + eps)
    if scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        return centred / (std + eps)
    return centred


def completion_logprobs(model: nn.Module, sequences: list[torch.Tensor], prompt_lengths: list[int],
                        pad_id: int, temperature: float = 1.0,
                        vision: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of each sequence's completion (tokens from ``prompt_lengths[i]`` on).

    ``sequences`` are unpadded token ids (prompt + completion); they are right-padded into one batch.
    ``vision``: for a vision-language model whose prompts hold images, the image processor's
    ``pixel_values`` and ``image_grid_thw`` of those images in row order (the sequences already
    hold each image's tokens).
    Returns ``logprobs`` and ``mask``, both (B, T) with T = the longest completion, left-aligned.
    """
    device = next(model.parameters()).device
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        attention[row, : len(seq)] = 1
    ids, attention = ids.to(device), attention.to(device)
    extra = {}
    if vision is not None:  # image tokens are marked 1, as the processor marks them for multimodal RoPE
        extra = {k: v.to(device) for k, v in vision.items()}
        extra["mm_token_type_ids"] = (ids == model.config.image_token_id).long()
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False, **extra).logits[:, :-1]  # (B, S-1, V)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, S-1): log p(token t+1 | ..t)
    width = max(len(s) - p for s, p in zip(sequences, prompt_lengths, strict=True))
    out = token_logp.new_zeros(len(sequences), width)
    mask = torch.zeros(len(sequences), width, dtype=torch.float32, device=device)
    for row, (seq, start) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        n = len(seq) - start
        out[row, :n] = token_logp[row, start - 1 : start - 1 + n]
        mask[row, :n] = 1
    return out, mask


@dataclass
class GRPOStats:
    clip_fraction: float
    kl: float
    ratio_mean: float


def _global_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over processes (no gradient), for normalising by the global token count."""
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
    return value


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, epsilon: float = 0.2, epsilon_high: float | None = None,
              ref_logprobs: torch.Tensor | None = None, beta: float = 0.0,
              importance: str = "token", normalization: str = "grpo",
              max_completion_length: int | None = None) -> tuple[torch.Tensor, GRPOStats]:
    """The clipped GRPO surrogate, to be minimised.

    ``logprobs`` (B, T) carries gradients; ``old_logprobs`` are the rollout policy's, ``ref_logprobs``
    the frozen reference's; ``advantages`` (B,); ``mask`` (B, T) marks completion tokens.

    * ``importance="token"``: one ratio per token; ``"sequence"`` (GSPO): the exp of the mean
      log-ratio over the sequence, shared by its tokens.
    * ``normalization``: ``grpo`` averages tokens within each sequence, then sequences;
      ``dr_grpo`` divides the token sum by ``B * max_completion_length``; ``dapo`` divides it by the
      number of completion tokens in the global batch (summed over processes under DDP, and
      multiplied back by the world size because DDP averages gradients).
    """
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    log_ratio = (logprobs - old_logprobs) * mask  # (B, T)
    if importance == "sequence":
        log_ratio = (log_ratio.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)).expand_as(logprobs)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = advantages.view(-1, 1)  # (B, 1)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T)
    kl = torch.zeros_like(per_token)
    if beta and ref_logprobs is not None:
        delta = ref_logprobs - logprobs
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, always >= 0
        per_token = per_token + beta * kl
    if normalization == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif normalization == "dr_grpo":
        length = max_completion_length or mask.shape[1]
        loss = (per_token * mask).sum() / (mask.shape[0] * length)
    else:
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        loss = (per_token * mask).sum() / _global_sum(mask.sum()).clamp(min=1) * world
    with torch.no_grad():
        active = mask.sum().clamp(min=1)
        was_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon_high) & (adv > 0))
        stats = GRPOStats(float((was_clipped.float() * mask).sum() / active),
                          float((kl * mask).sum() / active), float((ratio * mask).sum() / active))
    return loss, stats
