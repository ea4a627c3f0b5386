"""The DiT half of the RL stages: Flow-GRPO rollouts and loss (``dit_flow_grpo``, and the DiT's
part of ``sep_grpo`` and ``dual_grpo``). :class:`~.rl_stage.RLStage` mixes it in; the helpers it
calls (``_velocity``, ``_score``, ``_advantages``, ...) are RLStage's own."""

from __future__ import annotations

import random
from typing import Any

import torch

from ..pipeline import to_pil
from ..rl.flow_grpo import flow_grpo_loss, gaussian_logprob, sde_sample, sde_step
from ..world import suites


def _seed(*parts: Any) -> int:
    """A rollout seed from its parts (step window, prompt, ...): the same parts, the same seed."""
    return random.Random(repr(parts)).randrange(2**31)


def sde_window(rl, rng: random.Random) -> range | None:
    """Flow-GRPO-Fast: the ``rl.sde_window`` consecutive stochastic steps, placed at random
    (``rl.sde_window_range``), or None (every step stochastic)."""
    if not rl.sde_window:
        return None
    low, high = rl.sde_window_range or (0, max(0, rl.train_steps - rl.sde_window))
    first = rng.randint(low, high)
    return range(first, min(rl.train_steps, first + rl.sde_window))


class FlowGRPOPart:
    """SDE rollouts of the policy DiT and their clipped Flow-GRPO loss."""

    def _dit_part(self, items: list[suites.Item], states: torch.Tensor, mask: torch.Tensor, group: int,
                  window: int, start: int, rewrites: list[str], per_prompt: int) -> tuple[dict[str, Any], torch.Tensor]:
        """SDE rollouts of the policy DiT for already-thought samples; images in groups of ``group``
        (advantages), ``per_prompt`` consecutive rows per prompt (``rl.share_noise``)."""
        rl, pipe, seed = self.config.rl, self.pipe, self.config.run.seed
        rng = random.Random(_seed(seed, "window", window, start))
        null = self._null()
        parts, images = [], [None] * len(items)
        for resolution, rows in self._by_resolution(items).items():
            grid = pipe.token_grid(resolution, resolution)
            sigmas = pipe.sigmas(rl.train_steps, grid)
            steps = sde_window(rl, rng)
            reference = self._reference([items[r] for r in rows], resolution)
            velocity = self._velocity(states[rows], mask[rows], grid, reference, self._cfg_dit(), null)
            # share_noise: a prompt's images differ only by the SDE steps, the ones that are trained,
            # so the reward differences within a group are credited to what the DiT did there
            noise_rows = [r // per_prompt if rl.share_noise else r for r in rows]
            noise = pipe.initial_noise([_seed(seed, "dit-noise", window, start, n) for n in noise_rows], resolution,
                                       resolution)
            generator = torch.Generator().manual_seed(_seed(seed, "sde", window, start, resolution))
            trajectory = sde_sample(velocity, noise, sigmas, rl.noise_level, steps, generator)
            for r, image in zip(rows, to_pil(pipe.decode(trajectory.sample, resolution, resolution)), strict=True):
                images[r] = image
            recorded = list(range(len(trajectory.steps)))
            keep = max(1, round(rl.timestep_fraction * len(recorded)))
            chosen = sorted(rng.sample(recorded, keep))
            parts.append({"rows": rows, "states": states[rows], "mask": mask[rows], "grid": grid, "sigmas": sigmas,
                          "reference": reference, "steps": [trajectory.steps[j] for j in chosen],
                          "inputs": [trajectory.inputs[j] for j in chosen],
                          "outputs": [trajectory.outputs[j] for j in chosen],
                          "old_logprobs": [trajectory.logprobs[j] for j in chosen]})
        rewards = self._score(items, images, rewrites)
        advantages = self._advantages(rewards, group, "dit").to(pipe.device)
        for part in parts:
            part["advantages"] = advantages[part["rows"]]
        return {"parts": parts}, rewards

    def _cfg_dit(self) -> float:
        return self._cfg() if self.config.rl.flow_cfg else 1.0

    def _dit_rollout(self, items: list[suites.Item], window: int, start: int) -> dict[str, Any]:
        rl = self.config.rl
        items = [i for i in items if i.suite != "reflection"]  # reflection draws nothing
        if not items:
            raise ValueError("dit_flow_grpo needs a scenario that draws images (not only reflection)")
        thought, _ = self._encode(self.pipe.thinker, items, 1, think=rl.think)
        K = rl.images_per_prompt
        states = thought.states.to(self.pipe.device).repeat_interleave(K, 0)
        mask = thought.mask.to(self.pipe.device).repeat_interleave(K, 0)
        expanded = [item for item in items for _ in range(K)]
        rewrites = [r for r in thought.rewritten for _ in range(K)]
        part, _ = self._dit_part(expanded, states, mask, K, window, start, rewrites, K)
        return part

    # ------------------------------------------------------------------ loss (with gradients)
    def dit_loss(self, part: dict[str, Any]) -> torch.Tensor:
        rl = self.config.rl
        null = self._null()
        ref_null = self._null(self.ref_bridge) if self.ref_bridge is not None else None
        total, count, clip_fractions, kls = 0.0, 0, [], []
        for sub in part["parts"]:
            condition = (sub["states"], sub["mask"], sub["grid"], sub["reference"], self._cfg_dit())
            velocity = self._velocity(*condition, null)
            ref_velocity = None
            if self.ref_bridge is not None:
                with torch.no_grad():
                    ref_velocity = self._velocity(*condition, ref_null, self.ref_bridge, self.ref_backend)
            sigmas, sigma_max = sub["sigmas"], float(sub["sigmas"][1])
            for i, x, x_next, old in zip(sub["steps"], sub["inputs"], sub["outputs"], sub["old_logprobs"], strict=True):
                sigma = sigmas[i].expand(x.shape[0])
                mean, scale, std = sde_step(x, velocity(x, sigma), sigmas[i], sigmas[i + 1], rl.noise_level,
                                            sigma_max)
                logprob = gaussian_logprob(x_next, mean, scale)
                ref_mean = None
                if ref_velocity is not None:
                    with torch.no_grad():
                        ref_mean, _, _ = sde_step(x, ref_velocity(x, sigma), sigmas[i], sigmas[i + 1],
                                                  rl.noise_level, sigma_max)
                loss, stats = flow_grpo_loss(logprob, old, sub["advantages"], rl.clip_range, rl.advantage_clip,
                                             mean, ref_mean, std, rl.flow_beta)
                total = total + loss * x.shape[0]
                count += x.shape[0]
                clip_fractions.append(stats.clip_fraction)
                kls.append(stats.kl)
        self.metrics.update({"dit/clip_fraction": sum(clip_fractions) / len(clip_fractions),
                             "dit/kl": sum(kls) / len(kls)})
        return total / count
