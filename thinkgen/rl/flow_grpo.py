"""Flow-GRPO for the DiT (ThinkGen stage 5): an SDE sampler with log-probabilities, and its loss.

The ODE sampler of :mod:`thinkgen.flow` is deterministic, so it has no policy to improve. Flow-GRPO
turns each Euler step into a Gaussian step with the same marginals (the reverse-time SDE of the
rectified flow), ``x_next ~ N(mean, (std * sqrt(-dt))^2)``, with (``a`` = noise level)::

    std  = a * sqrt(sigma / (1 - s)),  s = sigma, or sigma_max (the schedule's second sigma) where
           sigma = 1: only the denominator is substituted, as flow_grpo's sde_step_with_logprob does
    mean = x * (1 + std^2 dt / (2 sigma)) + v * (1 + std^2 (1 - sigma) / (2 sigma)) * dt

With ``a = 0`` it is the plain Euler step. The log-probability of the drawn ``x_next`` is the
Gaussian log-density, averaged over latent dimensions, computed in float32 from float32 model
output, sample and next sample (before any rounding to the model's dtype); the PPO-style loss
compares it under the current and the rollout weights. The KL to a reference policy divides by
``std^2`` (not by the step's variance ``std^2 |dt|``), as flow_grpo's trainer does, so published
``beta`` values carry over. Same conventions as :mod:`thinkgen.flow`
(sigma 1 = noise, 0 = data, ``v = noise - x0``, ``dt = sigma_next - sigma < 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..flow import Velocity


def sde_step(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor, sigma_next: float | torch.Tensor,
             noise_level: float, sigma_max: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SDE step from ``x`` (B, ...) with velocity ``v``: ``(mean, scale, std)``, where ``scale =
    std * sqrt(-dt)`` is the step's standard deviation and ``std`` the noise level's std_t.

    ``sigma_max`` (default ``sigma_next``) replaces ``sigma`` in the denominator of
    ``sqrt(sigma / (1 - sigma))`` where ``sigma == 1`` (a schedule starting at pure noise).
    Everything is computed in float32.
    """
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32)
    dt = sigma_next - sigma  # < 0
    denominator = torch.where(sigma >= 1, torch.as_tensor(sigma_max if sigma_max is not None else sigma_next,
                                                          dtype=torch.float32), sigma)
    std = noise_level * torch.sqrt(sigma / (1 - denominator))
    x, v = x.float(), v.float()
    mean = x * (1 + std**2 * dt / (2 * sigma)) + v * (1 + std**2 * (1 - sigma) / (2 * sigma)) * dt
    return mean, std * torch.sqrt(-dt), std


def gaussian_logprob(sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """Log-density of ``sample`` under N(mean, std^2) per dimension, averaged over all but dim 0: (B,)."""
    std = torch.as_tensor(std, dtype=torch.float32)
    sample, mean = sample.float(), mean.float()
    density = -((sample - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return density.flatten(1).mean(dim=1)


@dataclass
class Trajectory:
    """What an SDE rollout recorded at its stochastic steps (all detached)."""

    sample: torch.Tensor  # (B, ...) the final x at sigma = 0
    steps: list[int] = field(default_factory=list)  # indices i into sigmas of the recorded SDE steps
    inputs: list[torch.Tensor] = field(default_factory=list)  # x before each recorded step
    outputs: list[torch.Tensor] = field(default_factory=list)  # x after it, float32
    logprobs: list[torch.Tensor] = field(default_factory=list)  # (B,) log p(output | input)


@torch.no_grad()
def sde_sample(velocity: Velocity, noise: torch.Tensor, sigmas: torch.Tensor, noise_level: float = 0.7,
               sde_steps: Sequence[int] | None = None, generator: torch.Generator | None = None) -> Trajectory:
    """Sample from ``noise`` down ``sigmas``; the steps in ``sde_steps`` (all by default) are
    stochastic and recorded, the others are deterministic Euler steps (Flow-GRPO-Fast's window)."""
    x = noise
    chosen = set(range(len(sigmas) - 1)) if sde_steps is None else set(sde_steps)
    trajectory = Trajectory(sample=noise)
    sigma_max = float(sigmas[1]) if len(sigmas) > 1 else None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        v = velocity(x, sigma.expand(x.shape[0]))  # (B, ...)
        if i not in chosen:
            x = x + (sigma_next - sigma) * v
            continue
        mean, scale, _ = sde_step(x, v, sigma, sigma_next, noise_level, sigma_max)
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
        x_next = mean + scale * eps  # float32: the log-prob is of this sample, before any rounding
        trajectory.steps.append(i)
        trajectory.inputs.append(x)
        trajectory.outputs.append(x_next)
        trajectory.logprobs.append(gaussian_logprob(x_next, mean, scale))
        x = x_next.to(noise.dtype)  # the model's dtype for the next step
    trajectory.sample = x
    return trajectory


@dataclass
class FlowGRPOStats:
    clip_fraction: float
    kl: float


def flow_grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                   clip_range: float = 1e-4, advantage_clip: float = 5.0, mean: torch.Tensor | None = None,
                   ref_mean: torch.Tensor | None = None, std: torch.Tensor | float = 1.0,
                   beta: float = 0.0) -> tuple[torch.Tensor, FlowGRPOStats]:
    """PPO-clipped loss of one SDE step, to be minimised; all of shape (B,) but the means.

    The KL to the reference policy is closed-form for two Gaussians with the same std:
    ``||mean - ref_mean||^2 / (2 std^2)``, averaged over latent dimensions.
    """
    adv = advantages.clamp(-advantage_clip, advantage_clip)
    ratio = torch.exp(logprobs - old_logprobs)  # (B,)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = torch.max(unclipped, clipped).mean()
    kl = torch.zeros((), device=logprobs.device)
    if beta and mean is not None and ref_mean is not None:
        std = torch.as_tensor(std, dtype=torch.float32)
        kl = ((mean - ref_mean.detach()) ** 2).flatten(1).mean(1) / (2 * std**2)  # (B,)
        kl = kl.mean()
        loss = loss + beta * kl
    with torch.no_grad():
        fraction = ((ratio - 1).abs() > clip_range).float().mean()
    return loss, FlowGRPOStats(float(fraction), float(kl.detach()))
