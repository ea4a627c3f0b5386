"""DiT Flow-GRPO on your prompts (``stage: dit_flow_grpo`` with ``dataset.source: prompts``), from
any pipeline folder thinkgen loads, sharded or not, whole DiT or LoRA adapters.

Each step draws ``run.batch_size`` prompts (a pure function of seed and step; each process takes
its share). The frozen thinker writes every prompt's conditioning once (``rl.think``: reasoning
first), then the policy DiT draws ``rl.images_per_prompt`` images per prompt with the SDE sampler
(:mod:`thinkgen.rl.flow_grpo`), recording log-probabilities at the ``rl.train_steps`` steps (or a
window of ``rl.sde_window`` of them). The reward models (``rl.rewards``: the registry's functions,
a ``judge`` behind an OpenAI-compatible endpoint, a local ``scorer``) score each image, advantages
are relative to the prompt's group, and the clipped Flow-GRPO loss trains the DiT (and the bridge of
the ``thinkgen`` strategy). Rollouts run inside the policy module's forward (no gradients), so FSDP2
gathers the sharded weights for them as for the loss. A prompt's noise and SDE draws come from
seeds of (seed, step, prompt), so 2 processes give what 1 gives.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.prompts import PromptRows
from ..pipeline import to_pil
from ..rewards import WeightedReward
from ..rl.flow_grpo import flow_grpo_loss, gaussian_logprob, sde_sample, sde_step
from ..rl.grpo import group_advantages
from .config import ConfigError, TrainConfig
from .dit_dataset_stage import load_for_training, save_result
from .rl_dit import _seed, sde_window
from .states import FrozenStates


class PolicyModule(nn.Module):
    """The trained parts (bridge, DiT); ``forward`` rolls out (``{"rollout": ...}``) or returns the loss."""

    def __init__(self, bridge: nn.Module | None, transformer: nn.Module, stage: PromptFlowGRPOStage) -> None:
        super().__init__()
        self.bridge, self.transformer = bridge, transformer
        self.stage = [stage]  # a list: not a submodule

    def forward(self, batch: dict[str, Any]) -> Any:
        if "rollout" in batch:
            return self.stage[0].rollout(**batch["rollout"])
        return self.stage[0].loss(batch)


class PromptFlowGRPOStage:
    def __init__(self, config: TrainConfig) -> None:
        rl = config.rl
        if rl.flow_beta:
            raise ConfigError("rl.flow_beta (a KL to a frozen copy of the DiT) is not available on your prompts yet: "
                              "set it to 0")
        if rl.scale_rewards == "batch":
            raise ConfigError("rl.scale_rewards: batch is not available on your prompts (a process sees its own "
                              "prompts only): use group or none")
        self.config = config
        pipe, self.bridge = load_for_training(config)
        self.pipe = pipe
        self.prompts = PromptRows(config.dataset.path)
        self.states = FrozenStates(pipe, config.dataset.state_cache, per_row=True, think=rl.think)
        models = {name: dataclasses.asdict(section) if section is not None else None
                  for name, section in (("judge", config.judge), ("scorer", config.scorer))}
        try:
            self.rewards = WeightedReward(rl.rewards, rl.allow_external_rewards, models)
        except ValueError as error:
            raise ConfigError(f"rl.rewards: {error}") from None
        self.model = PolicyModule(self.bridge, pipe.transformer, self)
        self.resolution = config.dataset.resolution
        pipe.check_size(self.resolution, self.resolution)
        self.metrics: dict[str, float] = {}
        self.log_path = Path(config.output_dir) / "rollouts.jsonl"
        self._null_states = self.states([""]) if self.bridge is not None else None

    def place(self, device: torch.device) -> None:
        self.pipe.thinker.model.to(device)
        self.pipe.vae.to(device)

    # ------------------------------------------------------------------ conditioning
    def _text(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen states -> the DiT's text (through the trained bridge of the ``thinkgen`` strategy)."""
        device = self.pipe.transformer.device
        states, mask = states.to(device), mask.to(device)
        return self.bridge(states, mask) if self.bridge is not None else (states, mask)

    def _null(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The negative branch of CFG, (1, L, D) and (1, L): the strategy's own default negative."""
        if self.bridge is not None:
            return self._text(*self._null_states)
        text, mask = self.pipe.conditioning.negative(None, 1)
        return text.to(self.pipe.transformer.device), mask.to(self.pipe.transformer.device)

    def _velocity(self, states: torch.Tensor, mask: torch.Tensor, copies: int):
        text, text_mask = self._text(states, mask)
        text, text_mask = text.expand(copies, -1, -1), text_mask.expand(copies, -1)
        cfg = self.pipe.defaults["guidance_scale"] if self.config.rl.guidance_scale is None else self.config.rl.guidance_scale
        grid = self.pipe.token_grid(self.resolution, self.resolution)
        return self.pipe.guided_velocity(text, text_mask, grid, None, cfg if self.config.rl.flow_cfg else 1.0,
                                         null=self._null()), grid

    # ------------------------------------------------------------------ rollouts (no gradients)
    def batch(self, step: int, start: int, size: int) -> dict[str, Any]:
        cfg = self.config
        rng = random.Random(f"prompts-{cfg.run.seed}-{step}")
        picks = [rng.randrange(len(self.prompts)) for _ in range(cfg.run.batch_size)][start : start + size]
        rows = [self.prompts[i] for i in picks]
        self.metrics = {}
        states = self.states.rows([row.prompt for row in rows])  # (T_i, D) each
        with torch.no_grad():  # inside the policy's forward: sharded weights are gathered for it
            parts = self.model({"rollout": {"states": states, "step": step, "start": start}})
        rewards = torch.tensor(self._score(rows, [image for part in parts for image in part.pop("images")]))
        K = cfg.rl.images_per_prompt
        advantages = group_advantages(rewards, K, cfg.rl.scale_rewards)
        grouped = rewards.view(-1, K)
        self.metrics.update({"reward": float(rewards.mean()),  # this process's prompts
                             "dit/frac_reward_zero_std": float((grouped == grouped[:, :1]).all(dim=1).float().mean())})
        for p, part in enumerate(parts):
            part["advantages"] = advantages[p * K : (p + 1) * K]
        if start == 0:  # one process logs
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": step, **self.metrics}) + "\n")
        # one micro-batch per recorded step, every prompt of this process in it: one step's graphs in
        # memory at a time, and the same number of micro-batches on any number of processes (so the
        # gradient sums associate as on one process)
        return [{"parts": [{**part, "steps": [part["steps"][j]], "inputs": [part["inputs"][j]],
                            "outputs": [part["outputs"][j]], "old_logprobs": [part["old_logprobs"][j]]}
                           for part in parts]}
                for j in range(len(parts[0]["steps"]))]

    def rollout(self, states: list[torch.Tensor], step: int, start: int) -> list[dict[str, Any]]:
        """K SDE images per prompt, each prompt from its own seeds (so any split over processes agrees)."""
        rl, pipe, seed = self.config.rl, self.pipe, self.config.run.seed
        K, res = rl.images_per_prompt, self.resolution
        parts = []
        for p, row in enumerate(states):
            index = start + p  # the prompt's place in the global batch
            prng = random.Random(_seed(seed, "window", step, index))
            state, mask = row[None], torch.ones(1, row.shape[0], dtype=torch.long)
            velocity, grid = self._velocity(state, mask, K)
            sigmas = pipe.sigmas(rl.train_steps, grid)
            steps = sde_window(rl, prng)
            noise = pipe.initial_noise([_seed(seed, "noise", step, index, 0 if rl.share_noise else k)
                                        for k in range(K)], res, res)
            generator = torch.Generator().manual_seed(_seed(seed, "sde", step, index))
            trajectory = sde_sample(velocity, noise, sigmas, rl.noise_level, steps, generator)
            recorded = list(range(len(trajectory.steps)))
            chosen = sorted(prng.sample(recorded, max(1, round(rl.timestep_fraction * len(recorded)))))
            parts.append({"states": state, "mask": mask, "sigmas": sigmas, "grid": grid,
                          "steps": [trajectory.steps[j] for j in chosen],
                          "inputs": [trajectory.inputs[j] for j in chosen],
                          "outputs": [trajectory.outputs[j] for j in chosen],
                          "old_logprobs": [trajectory.logprobs[j] for j in chosen],
                          "images": to_pil(pipe.decode(trajectory.sample, res, res))})
        return parts

    def _score(self, rows, images) -> list[float]:
        K = self.config.rl.images_per_prompt
        expanded = [row for row in rows for _ in range(K)]
        total, parts = self.rewards(expanded, images, [row.prompt for row in expanded])
        for name, value in parts.items():
            self.metrics[f"reward_part/{name}"] = value
        return total

    # ------------------------------------------------------------------ the loss (with gradients)
    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The clipped Flow-GRPO loss of one micro-batch: this process's prompts, K images each, at one
        recorded step (the mean over its images)."""
        rl = self.config.rl
        total, count, clipped = 0.0, 0, []
        for part in batch["parts"]:
            K = part["advantages"].shape[0]
            velocity, _ = self._velocity(part["states"], part["mask"], K)
            sigmas = part["sigmas"]
            sigma_max = float(sigmas[1])
            for i, x, x_next, old in zip(part["steps"], part["inputs"], part["outputs"], part["old_logprobs"],
                                         strict=True):
                mean, scale, std = sde_step(x, velocity(x, sigmas[i].expand(K)), sigmas[i], sigmas[i + 1],
                                            rl.noise_level, sigma_max)
                loss, stats = flow_grpo_loss(gaussian_logprob(x_next, mean, scale), old, part["advantages"],
                                             rl.clip_range, rl.advantage_clip)
                total, count = total + loss * K, count + K
                clipped.append(stats.clip_fraction)
        self.metrics["dit/clip_fraction"] = sum(clipped) / len(clipped)  # of the last micro-batch
        return total / count

    # ------------------------------------------------------------------ the result
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        save_result(self.pipe, self.model, self.config, directory, ema)  # as the supervised DiT stages
