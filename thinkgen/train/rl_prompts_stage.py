"""The four RL stages on your prompts (``dataset.source: prompts``), from any pipeline folder thinkgen
loads, sharded or not: ``thinker_grpo`` (ThinkGen stage 4), ``dit_flow_grpo`` (stage 5), ``sep_grpo``
(the two alternating in ``rl.rounds``) and ``dual_grpo`` (T2G: both at once from J traces x K images).

Each step draws ``run.batch_size`` prompts (a pure function of seed and step; each process takes
its share), and the phase of the step decides the rollouts:

* ``dit``: the thinker writes every prompt's conditioning once (greedy; ``rl.think``: reasoning first),
  then the policy DiT draws ``rl.images_per_prompt`` (K) images per prompt with the SDE sampler
  (:mod:`thinkgen.rl.flow_grpo`), recording log-probabilities at the ``rl.train_steps`` steps (or a
  window of ``rl.sde_window``); the clipped Flow-GRPO loss trains the DiT (and a ``thinkgen`` bridge).
* ``thinker``: the thinker samples ``rl.num_generations`` (G) traces per prompt through its pipeline's
  own conditioning (:meth:`Conditioning.sample`: VGI-refine's states after ``</think>``, T2G's
  rewrite re-encoded, the release's states); the DiT draws each trace from the prompt's one initial
  noise (ODE, ``rl.render_steps``), so the trace is the only thing that differs; GRPO trains the thinker.
* ``dual``: J traces per prompt, K SDE images per trace (image ``k`` of every trace from the same
  noise). An image's advantage is relative to its trace's K images; a trace's reward is the mean of
  its images and its advantage relative to the prompt's J traces. The loss is
  ``rl.beta_thinker`` x GRPO + ``rl.beta_dit`` x Flow-GRPO.

The reward models (``rl.rewards``: the registry's functions, a ``judge`` behind an OpenAI-compatible
endpoint, a local ``scorer``) score every image. Rollouts run inside the policy module's forward (no
gradients), so FSDP2 gathers the sharded weights for them as for the loss. A prompt's sampling,
noise and SDE draws come from seeds of (seed, step, prompt), and a process rolls its prompts out one
at a time, so 2 processes give what 1 gives.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.base import pad_rows
from ..data.prompts import PromptRow, PromptRows
from ..flow import euler_sample
from ..pipeline import to_pil
from ..rewards import WeightedReward
from ..rl.flow_grpo import flow_grpo_loss, gaussian_logprob, sde_sample, sde_step
from ..rl.grpo import completion_logprobs, group_advantages, grpo_loss
from .config import ConfigError, TrainConfig
from .dit_dataset_stage import load_for_training, save_result
from .rl_dit import _seed, sde_window
from .rl_stage import RLStage
from .states import FrozenStates

TRAINS_THINKER = ("thinker_grpo", "sep_grpo", "dual_grpo")
TRAINS_DIT = ("dit_flow_grpo", "sep_grpo", "dual_grpo")


class PolicyModule(nn.Module):
    """What trains (the thinker, the ``thinkgen`` bridge, the DiT: whichever the stage trains);
    ``forward`` rolls out (``{"rollout": ...}``) or returns the loss."""

    def __init__(self, thinker: nn.Module | None, bridge: nn.Module | None, transformer: nn.Module | None,
                 stage: PromptRLStage) -> None:
        super().__init__()
        self.thinker, self.bridge, self.transformer = thinker, bridge, transformer
        self.stage = [stage]  # a list: not a submodule

    def forward(self, batch: dict[str, Any]) -> Any:
        if "rollout" in batch:
            return self.stage[0].rollout(**batch["rollout"])
        return self.stage[0].loss(batch)


class PromptRLStage:
    def __init__(self, config: TrainConfig) -> None:
        rl = config.rl
        self.trains_thinker, self.trains_dit = config.stage in TRAINS_THINKER, config.stage in TRAINS_DIT
        refused = {"rl.flow_beta": rl.flow_beta, "rl.state_beta": rl.state_beta,
                   "rl.direct_state_beta": rl.direct_state_beta}
        for name, value in refused.items():
            if value:
                raise ConfigError(f"{name} (a KL to a frozen copy) is not available on your prompts yet: set it to 0")
        if rl.scale_rewards == "batch":
            raise ConfigError("rl.scale_rewards: batch is not available on your prompts (a process sees its own "
                              "prompts only): use group or none")
        if rl.num_iterations != 1:
            raise ConfigError("rl.num_iterations: one optimizer step per rollout batch on your prompts (set it to 1)")
        if config.lora.rank and not self.trains_dit:
            raise ConfigError(f"lora: in the RL stages adapters train the DiT, and {config.stage} trains the thinker "
                              "(all its weights): set lora.rank: 0")
        if self.trains_thinker and rl.loss_type == "dr_grpo" and not rl.max_completion_length:
            raise ConfigError("rl.loss_type dr_grpo divides by rl.max_completion_length: set it")
        if self.trains_thinker and config.dataset.state_cache:
            raise ConfigError(f"dataset.state_cache: {config.stage} trains the thinker, so its states cannot be cached")
        self.config = config
        pipe, self.bridge = load_for_training(config)
        self.pipe = pipe
        compute = pipe.thinker.model.dtype
        # rl.beta: a KL to the thinker as it started, a frozen copy in the compute dtype
        self.ref_thinker = (copy.deepcopy(pipe.thinker.model).requires_grad_(False).eval()
                            if self.trains_thinker and rl.beta else None)
        if self.trains_thinker:  # fp32 master weights, as the DiT's
            pipe.thinker.model.float().requires_grad_(True)
        if not self.trains_dit:  # the DiT only draws: no master copy
            for module in (pipe.transformer, self.bridge):
                if module is not None:
                    module.to(compute).requires_grad_(False)
        self.prompts = PromptRows(config.dataset.path)
        self.states = FrozenStates(pipe, config.dataset.state_cache, per_row=True, think=rl.think)
        models = {name: dataclasses.asdict(section) if section is not None else None
                  for name, section in (("judge", config.judge), ("scorer", config.scorer))}
        try:
            self.rewards = WeightedReward(rl.rewards, rl.allow_external_rewards, models)
        except ValueError as error:
            raise ConfigError(f"rl.rewards: {error}") from None
        self.model = PolicyModule(pipe.thinker.model if self.trains_thinker else None,
                                  self.bridge if self.trains_dit else None,
                                  pipe.transformer if self.trains_dit else None, self)
        self.resolution = config.dataset.resolution
        pipe.check_size(self.resolution, self.resolution)
        self.metrics: dict[str, float] = {}
        self.log_path = Path(config.output_dir) / "rollouts.jsonl"
        self._null_states = None if self.bridge is None or self.trains_thinker else self.states([""])

    resume_at = RLStage.resume_at  # the rollout log keeps the lines of the steps before a resume
    phase = RLStage.phase

    def place(self, device: torch.device) -> None:
        self.pipe.thinker.model.to(device)
        if self.ref_thinker is not None:
            self.ref_thinker.to(device)
        self.pipe.vae.to(device)
        self.pipe.transformer.to(device)
        if self.bridge is not None:
            self.bridge.to(device)

    def param_groups(self) -> list[dict[str, Any]]:
        """The thinker at ``rl.thinker_lr``, the bridge and DiT at ``rl.dit_lr`` (both default to optim.lr)."""
        rl, lr, groups = self.config.rl, self.config.optim.lr, []
        if self.trains_thinker:
            groups.append({"params": [p for p in self.pipe.thinker.model.parameters() if p.requires_grad],
                           "lr": rl.thinker_lr or lr})
        if self.trains_dit:
            params = list(self.bridge.parameters()) if self.bridge is not None else []
            params = [p for p in params + list(self.pipe.transformer.parameters()) if p.requires_grad]
            groups.append({"params": params, "lr": rl.dit_lr or lr})
        return groups

    # ------------------------------------------------------------------ conditioning
    def _text(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditioning states -> the DiT's text (through the trained bridge of the ``thinkgen`` strategy)."""
        device = self.pipe.transformer.device
        states, mask = states.to(device), mask.to(device)
        if self.bridge is None:
            return states, mask
        weight = next(self.bridge.parameters())
        if not weight.requires_grad:  # a frozen bridge (LoRA, or the DiT not training) is in the compute dtype
            states = states.to(weight.dtype)
        return self.bridge(states, mask)

    def _null_states_now(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The negative branch's states before the bridge (the ``thinkgen`` strategy only), taken
        again while the thinker trains; None for the releases' strategies (their own negative)."""
        if self.bridge is None:
            return None
        return self._null_states if self._null_states is not None else self.states([""])

    def _null(self, null_states: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The negative branch of CFG, (1, L, D) and (1, L): the strategy's own default negative."""
        if null_states is not None:
            return self._text(*null_states)
        text, mask = self.pipe.conditioning.negative(None, 1)
        return text.to(self.pipe.transformer.device), mask.to(self.pipe.transformer.device)

    def _velocity(self, states: torch.Tensor, mask: torch.Tensor, null_states, copies: int = 1):
        """The guided velocity for ``states`` (B, L, D) (each row repeated ``copies`` times)."""
        text, text_mask = self._text(states, mask)
        text, text_mask = text.repeat_interleave(copies, 0), text_mask.repeat_interleave(copies, 0)
        rl = self.config.rl
        cfg = self.pipe.defaults["guidance_scale"] if rl.guidance_scale is None else rl.guidance_scale
        grid = self.pipe.token_grid(self.resolution, self.resolution)
        return self.pipe.guided_velocity(text, text_mask, grid, None, cfg if rl.flow_cfg else 1.0,
                                         null=self._null(null_states)), grid

    # ------------------------------------------------------------------ rollouts (no gradients)
    def batch(self, step: int, start: int, size: int) -> list[dict[str, Any]]:
        cfg = self.config
        rng = random.Random(f"prompts-{cfg.run.seed}-{step}")
        picks = [rng.randrange(len(self.prompts)) for _ in range(cfg.run.batch_size)][start : start + size]
        rows = [self.prompts[i] for i in picks]
        phase = self.phase(step)
        self.metrics = {}
        with torch.no_grad():  # inside the policy's forward: sharded weights are gathered for it
            micro = self.model({"rollout": {"rows": rows, "step": step, "start": start, "phase": phase}})
        if start == 0:  # one process logs
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": step, "phase": phase, **self.metrics}) + "\n")
        return micro

    def rollout(self, rows: list[PromptRow], step: int, start: int, phase: str) -> list[dict[str, Any]]:
        """This process's rollouts of a step, as the micro-batches the loss backs up one at a time."""
        null_states = self._null_states_now()
        if phase == "thinker":
            return [{"thinker": self._thinker_rollout(rows, step, start, null_states), "weight": 1.0}]
        if phase == "dit":
            states = self.states.rows([row.prompt for row in rows])  # (T_i, D) each
            parts = [self._dit_part([s], step, start + p, null_states) for p, s in enumerate(states)]
            rewards = self._score([row for row in rows for _ in range(self.config.rl.images_per_prompt)],
                                  [image for part in parts for image in part.pop("images")],
                                  [row.prompt for row in rows for _ in range(self.config.rl.images_per_prompt)])
            self._dit_advantages(parts, rewards)
        else:
            thinker, parts = self._dual_rollout(rows, step, start, null_states)
        # one micro-batch per recorded step, every part of this process in it: one step's graphs in
        # memory at a time, and the same number of micro-batches on any number of processes (so the
        # gradient sums associate as on one process); a dual step's thinker loss is one more. The loop
        # averages micro-batches, so each carries the weight that makes the step's loss
        # beta_thinker x GRPO + beta_dit x (Flow-GRPO averaged over the recorded steps)
        steps = len(parts[0]["steps"])
        if phase == "dit":
            return [{"dit": [_at(part, j) for part in parts], "weight": 1.0} for j in range(steps)]
        rl, count = self.config.rl, steps + 1
        return [{"thinker": thinker, "weight": count * rl.beta_thinker},
                *({"dit": [_at(part, j) for part in parts], "weight": count / steps * rl.beta_dit} for j in range(steps))]

    def _traces(self, row: PromptRow, index: int, step: int):
        rl = self.config.rl
        return self.pipe.conditioning.sample(row.prompt, rl.num_generations, rl.temperature, rl.top_k,
                                             rl.max_completion_length, _seed(self.config.run.seed, "think", step, index))

    def _thinker_rollout(self, rows: list[PromptRow], step: int, start: int, null_states) -> dict[str, Any]:
        """G traces per prompt, each drawn by the DiT (ODE) from the prompt's one noise; GRPO advantages."""
        rl, pipe, res, seed = self.config.rl, self.pipe, self.resolution, self.config.run.seed
        G = rl.num_generations
        sequences, starts, rewrites, images = [], [], [], []
        for p, row in enumerate(rows):
            traces = self._traces(row, start + p, step)
            states, mask = pad_rows(traces.states, torch.float32)  # (G, L, D)
            velocity, grid = self._velocity(states, mask, null_states)
            noise = pipe.initial_noise([_seed(seed, "noise", step, start + p)] * G, res, res)
            sigmas = pipe.sigmas(rl.render_steps, grid)
            x = euler_sample(velocity, noise, sigmas, step=pipe.euler_step(sigmas))
            images += to_pil(pipe.decode(x, res, res))
            sequences += traces.sequences
            starts += traces.prompt_lengths
            rewrites += traces.rewritten
        rewards = self._score([row for row in rows for _ in range(G)], images, rewrites)
        return self._thinker_part(sequences, starts, self._advantages(rewards, G, "thinker"))

    def _dual_rollout(self, rows: list[PromptRow], step: int, start: int, null_states):
        """J traces per prompt, K SDE images per trace: the thinker's part and the DiT's parts."""
        rl = self.config.rl
        J, K = rl.num_generations, rl.images_per_prompt
        sequences, starts, rewrites, parts = [], [], [], []
        for p, row in enumerate(rows):
            traces = self._traces(row, start + p, step)
            parts += [self._dit_part([s], step, start + p, null_states, trace=j) for j, s in enumerate(traces.states)]
            sequences += traces.sequences
            starts += traces.prompt_lengths
            rewrites += [r for r in traces.rewritten for _ in range(K)]
        rewards = self._score([row for row in rows for _ in range(J * K)],
                              [image for part in parts for image in part.pop("images")], rewrites)
        self._dit_advantages(parts, rewards)
        trace_rewards = rewards.view(-1, K).mean(dim=1)  # (P J,): a trace scores the mean of its images
        thinker = self._thinker_part(sequences, starts, self._advantages(trace_rewards, J, "thinker"))
        return thinker, parts

    def _dit_part(self, states: list[torch.Tensor], step: int, index: int, null_states,
                  trace: int | None = None) -> dict[str, Any]:
        """K SDE images of one prompt's (or trace's) states, from seeds of (step, prompt, trace): the
        recorded steps, their log-probabilities and the images."""
        rl, pipe, seed, res = self.config.rl, self.pipe, self.config.run.seed, self.resolution
        K = rl.images_per_prompt
        prng = random.Random(_seed(seed, "window", step, index))  # a prompt's traces share window and steps
        state, mask = states[0][None], torch.ones(1, states[0].shape[0], dtype=torch.long)
        velocity, grid = self._velocity(state, mask, null_states, K)
        sigmas = pipe.sigmas(rl.train_steps, grid)
        steps = sde_window(rl, prng)
        noise = pipe.initial_noise([_seed(seed, "noise", step, index, 0 if rl.share_noise else k)
                                    for k in range(K)], res, res)
        sde = ("sde", step, index) if trace is None else ("sde", step, index, trace)
        generator = torch.Generator().manual_seed(_seed(seed, *sde))
        trajectory = sde_sample(velocity, noise, sigmas, rl.noise_level, steps, generator)
        recorded = list(range(len(trajectory.steps)))
        chosen = sorted(prng.sample(recorded, max(1, round(rl.timestep_fraction * len(recorded)))))
        return {"states": state, "mask": mask, "null": null_states, "sigmas": sigmas,
                "steps": [trajectory.steps[j] for j in chosen], "inputs": [trajectory.inputs[j] for j in chosen],
                "outputs": [trajectory.outputs[j] for j in chosen],
                "old_logprobs": [trajectory.logprobs[j] for j in chosen],
                "images": to_pil(pipe.decode(trajectory.sample, res, res))}

    def _dit_advantages(self, parts: list[dict[str, Any]], rewards: torch.Tensor) -> None:
        K = self.config.rl.images_per_prompt
        advantages = self._advantages(rewards, K, "dit")
        for i, part in enumerate(parts):
            part["advantages"] = advantages[i * K : (i + 1) * K]

    def _thinker_part(self, sequences: list[torch.Tensor], starts: list[int], advantages: torch.Tensor
                      ) -> dict[str, Any]:
        lengths = [len(s) - p for s, p in zip(sequences, starts, strict=True)]
        self.metrics["completion_length"] = sum(lengths) / len(lengths)
        part = {"sequences": sequences, "prompt_lengths": starts, "advantages": advantages}
        if self.ref_thinker is not None:
            part["ref_logprobs"], _ = self._logprobs(self.ref_thinker, part)
        return part

    def _logprobs(self, model: nn.Module, part: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Completion log-probs and mask, (B, T): each prompt's traces go through ``model`` as one batch,
        so a trace's values do not depend on which prompts share its process."""
        G, rl, pad = self.config.rl.num_generations, self.config.rl, self.pipe.thinker.pad_id
        sequences, starts, pieces = part["sequences"], part["prompt_lengths"], []
        for first in range(0, len(sequences), G):
            pieces.append(completion_logprobs(model, sequences[first : first + G], starts[first : first + G], pad,
                                              rl.temperature))
        width = max(lp.shape[1] for lp, _ in pieces)
        return (torch.cat([F.pad(lp, (0, width - lp.shape[1])) for lp, _ in pieces]),
                torch.cat([F.pad(mask, (0, width - mask.shape[1])) for _, mask in pieces]))

    def _score(self, rows: list[PromptRow], images, rewrites: list[str]) -> torch.Tensor:
        total, parts = self.rewards(rows, images, rewrites)
        self.metrics["reward"] = sum(total) / len(total)  # this process's prompts
        for name, value in parts.items():
            self.metrics[f"reward_part/{name}"] = value
        return torch.tensor(total, dtype=torch.float32)

    def _advantages(self, rewards: torch.Tensor, group: int, model: str) -> torch.Tensor:
        grouped = rewards.view(-1, group)
        self.metrics[f"{model}/frac_reward_zero_std"] = float((grouped == grouped[:, :1]).all(dim=1).float().mean())
        return group_advantages(rewards, group, self.config.rl.scale_rewards)

    # ------------------------------------------------------------------ losses (with gradients)
    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """One micro-batch's loss: a thinker part (GRPO) or DiT parts at one recorded step (Flow-GRPO)."""
        if "thinker" in batch:
            return batch["weight"] * self.thinker_loss(batch["thinker"])
        return batch["weight"] * self.dit_loss(batch["dit"])

    def thinker_loss(self, part: dict[str, Any]) -> torch.Tensor:
        """GRPO on the traces' completion tokens (one optimizer step per rollout: the ratio is 1 and
        the gradient is the policy gradient), with ``rl.beta`` x the k3 KL to the starting thinker."""
        rl = self.config.rl
        logprobs, mask = self._logprobs(self.pipe.thinker.model, part)
        ref = part.get("ref_logprobs")
        loss, stats = grpo_loss(logprobs, logprobs.detach(), part["advantages"].to(logprobs.device), mask,
                                rl.epsilon, rl.epsilon_high, None if ref is None else ref.to(logprobs.device), rl.beta,
                                rl.importance, rl.loss_type, rl.max_completion_length)
        self.metrics.update({"thinker/clip_fraction": stats.clip_fraction, "thinker/kl": stats.kl})
        return loss

    def dit_loss(self, parts: list[dict[str, Any]]) -> torch.Tensor:
        """The clipped Flow-GRPO loss of one micro-batch: every part's K images at one recorded step
        (the mean over its images)."""
        rl = self.config.rl
        total, count, clipped = 0.0, 0, []
        for part in parts:
            K = part["advantages"].shape[0]
            velocity, _ = self._velocity(part["states"], part["mask"], part["null"], K)
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
        """The pipeline in the layout of ``init``: what trained in the dtype init stored it in, the rest linked."""
        save_result(self.pipe, self.model, self.config, directory, ema, thinker=self.trains_thinker,
                    dit=self.trains_dit)


def _at(part: dict[str, Any], j: int) -> dict[str, Any]:
    """A DiT part cut to its ``j``-th recorded step."""
    return {**part, **{key: [part[key][j]] for key in ("steps", "inputs", "outputs", "old_logprobs")}}
