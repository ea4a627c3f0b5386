"""Rectified flow: training target, timestep sampling and the Euler sampler, side by side.

Convention (the one diffusers uses): ``sigma`` runs from 1 (pure noise) to 0 (data),
``x_sigma = (1 - sigma) * x0 + sigma * noise``, and the model predicts the velocity
``v = noise - x0``, so one Euler step is ``x += (sigma_next - sigma) * v``.
Everything here takes a plain ``velocity(x, sigma) -> v`` function; it knows nothing of thinkers,
tokenizers or which transformer computes ``v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift
from tqdm.auto import tqdm

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, sigma (B,)) -> v


# ----------------------------------------------------------------------------- time shifts
def shift_sigmas(sigmas: torch.Tensor, shift: float = 1.0, mu: float | None = None) -> torch.Tensor:
    """Bend a schedule towards the noisy end, as diffusers' FlowMatchEulerDiscreteScheduler does.

    ``mu`` given: the exponential (resolution-dependent) shift ``e^mu / (e^mu + 1/sigma - 1)``;
    otherwise the static shift ``shift * sigma / (1 + (shift - 1) * sigma)``.
    """
    if mu is not None:
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def resolution_shift(num_latent_pixels: int) -> float:
    """ThinkGen / Lumina's static shift: ``sqrt(latent height * latent width) / 40``."""
    return math.sqrt(num_latent_pixels) / 40


# ----------------------------------------------------------------------------- training
def sample_timesteps(n: int, mode: str = "logit_normal", shift: float = 1.0, mean: float = 0.0,
                     std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training sigmas in (0, 1): ``uniform`` or ``logit_normal`` (SD3), then the static shift."""
    if mode == "uniform":
        t = torch.rand(n, generator=generator)
    elif mode == "logit_normal":
        t = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    else:
        raise ValueError(f"timestep mode must be 'uniform' or 'logit_normal', got {mode!r}")
    return shift_sigmas(t, shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The straight path between data and noise: ``(1 - sigma) * x0 + sigma * noise``."""
    sigma = sigma.view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, ...)
    return (1 - sigma) * x0 + sigma * noise


def flow_loss(velocity: Velocity, x0: torch.Tensor, sigma: torch.Tensor,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """Rectified-flow loss: mean squared error between predicted and true velocity."""
    noise = torch.randn_like(x0) if noise is None else noise
    x_sigma = add_noise(x0, noise, sigma)  # (B, ...)
    return F.mse_loss(velocity(x_sigma, sigma), noise - x0)


# ----------------------------------------------------------------------------- sampling
def scheduler_sigmas(scheduler: FlowMatchEulerDiscreteScheduler, steps: int, num_tokens: int,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``steps + 1`` sigmas from the saved scheduler itself, as Qwen-Image's pipeline asks for them.

    The request is ``linspace(1, 1/steps, steps)`` with the resolution-dependent ``mu`` of
    diffusers' ``calculate_shift``; ``set_timesteps`` then applies every config field the scheduler
    has (``shift``, ``use_dynamic_shifting``, ``time_shift_type``, ``shift_terminal``, Karras /
    exponential / beta sigmas, ``invert_sigmas``), so nothing here can drift from diffusers.
    The scheduler is left ready for ``scheduler.step`` (begin index 0).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config = scheduler.config
    mu = calculate_shift(num_tokens, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    with np.errstate(divide="ignore", invalid="ignore"):
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=device)
    if not bool(torch.isfinite(scheduler.sigmas).all()):  # e.g. shift_terminal with one step: 0/0
        raise ValueError(f"the scheduler's config gives no finite schedule for {steps} step(s); use more steps")
    scheduler.set_begin_index(0)
    return scheduler.sigmas


def sigma_schedule(steps: int, shift: float = 1.0, mu: float | None = None) -> torch.Tensor:
    """The same schedule for a plain scheduler config: static ``shift``, or ``mu`` when given."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=mu is not None)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.sigmas


def guide(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float,
          v_image: torch.Tensor | None = None, image_scale: float = 1.0) -> torch.Tensor:
    """Classifier-free guidance. With ``v_image`` (reference image but no text) it is the
    three-way editing form ``uncond + s_img (image - uncond) + s_txt (cond - image)``."""
    if v_image is None:
        return v_uncond + scale * (v_cond - v_uncond)
    return v_uncond + image_scale * (v_image - v_uncond) + scale * (v_cond - v_image)


def guide_rescaled(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Qwen-Image's "true CFG": plain guidance, then each token's vector rescaled to the norm of
    the conditional one (``comb * |cond| / |comb|``), which keeps large scales from overshooting."""
    combined = v_uncond + scale * (v_cond - v_uncond)  # (B, N, C)
    return combined * (v_cond.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))


Step = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (x, v, step index) -> next x


@torch.no_grad()
def euler_sample(velocity: Velocity, noise: torch.Tensor, sigmas: torch.Tensor,
                 progress: bool = False, callback: Callable[[int, torch.Tensor], None] | None = None,
                 step: Step | None = None) -> torch.Tensor:
    """Integrate the flow ODE from ``sigmas[0]`` to ``sigmas[-1]`` with Euler steps.

    ``step`` replaces the update ``x + (sigma_next - sigma) * v``: the pipeline passes the
    scheduler's own ``step``, whose dtype handling (fp32 update, result in the model's dtype) is
    part of what makes a picture bit-identical to diffusers'."""
    x = noise
    for i in tqdm(range(len(sigmas) - 1), desc="sampling", disable=not progress, leave=False):
        sigma = sigmas[i].expand(x.shape[0])  # (B,)
        v = velocity(x, sigma)  # (B, ...)
        x = x + (sigmas[i + 1] - sigmas[i]) * v if step is None else step(x, v, i)
        if callback is not None:
            callback(i, x)
    return x
