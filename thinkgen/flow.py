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

import torch
import torch.nn.functional as F
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


def resolution_mu(num_tokens: int, base_tokens: int = 256, max_tokens: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Qwen-Image / diffusers' ``mu``: linear in the number of image tokens."""
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    return base_shift + slope * (num_tokens - base_tokens)


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
def sigma_schedule(steps: int, shift: float = 1.0, mu: float | None = None) -> torch.Tensor:
    """``steps + 1`` sigmas from 1 to 0: evenly spaced in ``[1, 1/steps]``, shifted, then 0.

    Identical to ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(sigmas=
    linspace(1, 1/steps, steps), mu=mu)`` (the call Qwen-Image's pipeline makes).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sigmas = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    sigmas = shift_sigmas(sigmas, shift, mu).to(torch.float32)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def guide(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float,
          v_image: torch.Tensor | None = None, image_scale: float = 1.0) -> torch.Tensor:
    """Classifier-free guidance. With ``v_image`` (reference image but no text) it is the
    three-way editing form ``uncond + s_img (image - uncond) + s_txt (cond - image)``."""
    if v_image is None:
        return v_uncond + scale * (v_cond - v_uncond)
    return v_uncond + image_scale * (v_image - v_uncond) + scale * (v_cond - v_image)


@torch.no_grad()
def euler_sample(velocity: Velocity, noise: torch.Tensor, sigmas: torch.Tensor,
                 progress: bool = False, callback: Callable[[int, torch.Tensor], None] | None = None
                 ) -> torch.Tensor:
    """Integrate the flow ODE from ``sigmas[0]`` to ``sigmas[-1]`` with Euler steps."""
    x = noise
    for i in tqdm(range(len(sigmas) - 1), desc="sampling", disable=not progress, leave=False):
        sigma = sigmas[i].expand(x.shape[0])  # (B,)
        x = x + (sigmas[i + 1] - sigmas[i]) * velocity(x, sigma)  # (B, ...)
        if callback is not None:
            callback(i, x)
    return x
