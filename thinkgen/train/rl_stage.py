"""Reinforcement-learning stages: thinker GRPO, DiT Flow-GRPO, SepGRPO and Dual-GRPO.

* ``thinker_grpo`` (ThinkGen stage 4): per prompt, G sampled reasoning + rewrite rollouts; the
  frozen DiT draws every rollout of a prompt **from the same initial noise** (so the rewrite is the
  only thing that differs), the reward registry scores the images, and the thinker takes a GRPO step.
* ``dit_flow_grpo`` (stage 5): the thinker (frozen, greedy) writes each prompt's instruction once;
  the DiT draws K images with the SDE sampler, recording log-probabilities; the bridge and DiT
  take a Flow-GRPO step.
* ``sep_grpo``: both, alternating in rounds (``rl.rounds``, e.g. ``[[thinker, 200], [dit, 100]]``).
* ``dual_grpo`` (T2G): a tree of J sampled traces x K images per prompt. A trace's reward is the
  mean over its K images and its advantage is relative to the prompt's J traces; each image's
  advantage is relative to the K images of its trace. Both models update every step, with loss
  weights ``rl.beta_thinker`` and ``rl.beta_dit``. Reflection prompts draw nothing: their traces
  are scored by their verdicts and train the thinker alone.

The DiT's half (Flow-GRPO rollouts and loss) is in :mod:`.rl_dit`. Everything runs inside the
shared loop (:mod:`.loop`): ``batch(step, ...)`` makes the rollouts
(no gradients), ``model(batch)`` returns the loss. ``run.batch_size`` counts *prompts* per step.
Rollouts are a pure function of the weights, the seed and the step, so resuming from a
checkpoint repeats them exactly. With ``rl.num_iterations`` > 1 a rollout batch is reused for that
many optimizer steps (the clipped ratio then matters); resuming inside such a window draws the
window's rollouts again with the resumed weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..flow import Velocity, euler_sample
from ..generator import Reference, backend_for
from ..hidden_states import capture_last_layers, stack_records
from ..loading import stored_dtype
from ..pipeline import ThinkGenPipeline, to_pil
from ..reflection import judge_prompt
from ..rewards import WeightedReward
from ..rl.grpo import completion_logprobs, group_advantages, grpo_loss
from ..thinker import Thinker
from ..world import suites
from ..world.captions import canonical, target_of
from ..world.render import render
from .config import ConfigError, TrainConfig
from .loop import load_ema
from .rl_dit import FlowGRPOPart, _seed

DEFAULT_SPLITS = {"reasoning": "rl"}  # other suites: "train"


def conditioning_states(records: list[list[torch.Tensor]], sequences: list[torch.Tensor], prompt_lengths: list[int],
                        thinker: Thinker) -> list[torch.Tensor]:
    """From one teacher-forced forward's captured layers (``capture_last_layers`` around
    ``completion_logprobs``), each row's states at the positions the pipeline hands the bridge:
    after ``</think>`` for extract="cut", else all. (T_i, n D) each."""
    states = stack_records(records)  # (B, S, n D), right-padded like completion_logprobs' batch
    cut = thinker.config.extract == "cut"
    rows = []
    for row, (seq, start) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        first = start + think_length(seq[start:], thinker.close_id) + 1 if cut else 0
        rows.append(states[row, first : len(seq)])
    return rows


def relative_drift(states: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """sum ||states - reference||^2 / sum ||reference||^2 over every row and position."""
    drift = sum(((s - r) ** 2).sum() for s, r in zip(states, reference, strict=True))
    return drift / sum((r**2).sum() for r in reference)


def think_length(completion: torch.Tensor, close_id: int) -> int:
    """Tokens before the first ``</think>`` of a completion (all of it if there is none)."""
    hits = (completion == close_id).nonzero()
    return int(hits[0, 0]) if len(hits) else len(completion)


def prompt_for(item: suites.Item, sees: bool = False) -> str:
    """What the thinker is asked. Reflection: the request, and the image attached for a thinker
    that ``sees``, or else the image's description."""
    if item.suite == "reflection":
        return judge_prompt(item.prompt) if sees else judge_prompt(item.prompt, canonical(target_of(item.source)))
    return item.prompt


class RLModule(nn.Module):
    """The trained parts (thinker LM, bridge, DiT); ``forward(batch)`` is the RL loss."""

    def __init__(self, stage: RLStage) -> None:
        super().__init__()
        self.thinker_model = stage.pipe.thinker.model
        self.bridge, self.transformer = stage.pipe.bridge, stage.pipe.transformer
        self.stage = [stage]  # a list: not a submodule

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        stage = self.stage[0]
        rl = stage.config.rl
        loss = torch.zeros((), device=self.transformer.device)
        if "thinker" in batch:
            weight = rl.beta_thinker if batch["phase"] == "dual" else 1.0
            loss = loss + weight * stage.thinker_loss(batch["thinker"])
        if "dit" in batch:
            weight = rl.beta_dit if batch["phase"] == "dual" else 1.0
            loss = loss + weight * stage.dit_loss(batch["dit"])
        return loss


class RLStage(FlowGRPOPart):
    """Rollouts, rewards and losses of the four RL stages (see the module docstring)."""

    def __init__(self, config: TrainConfig) -> None:
        if not config.init:
            raise ConfigError(f"{config.stage} needs `init`: a trained pipeline folder to improve")
        if config.thinker.lora_rank:
            raise ConfigError("thinker.lora_rank: LoRA is for the SFT stages; the RL stages train all weights")
        self.config = config
        rl = config.rl
        # train in float32; save in the precision the pipeline came in (the embedded model is fp16)
        self.saved_dtype = stored_dtype(Path(config.init) / "transformer")
        self.pipe = pipe = ThinkGenPipeline.from_pretrained(config.init, torch_dtype=torch.float32)
        self.trains_thinker = config.stage in ("thinker_grpo", "sep_grpo", "dual_grpo")
        self.trains_dit = config.stage in ("dit_flow_grpo", "sep_grpo", "dual_grpo")
        pipe.thinker.model.requires_grad_(self.trains_thinker)
        pipe.bridge.requires_grad_(self.trains_dit)
        pipe.transformer.requires_grad_(self.trains_dit)
        # frozen copies for the KL terms (only when they are weighted)
        self.ref_thinker = (self._frozen(pipe.thinker.model)
                            if self.trains_thinker and (rl.beta or rl.state_beta or rl.direct_state_beta) else None)
        self.ref_direct = (Thinker(self.ref_thinker, pipe.thinker.tokenizer, pipe.thinker.processor, pipe.thinker.config)
                           if self.ref_thinker is not None and rl.direct_state_beta else None)
        self.ref_bridge = self._frozen(pipe.bridge) if self.trains_dit and rl.flow_beta else None
        self.ref_backend = backend_for(self._frozen(pipe.transformer)) if self.ref_bridge is not None else None
        sampling = replace(pipe.thinker.config, do_sample=True, temperature=rl.temperature, top_k=rl.top_k,
                           top_p=1.0)
        self.sampler = Thinker(pipe.thinker.model, pipe.thinker.tokenizer, pipe.thinker.processor, sampling)
        try:
            self.rewards = WeightedReward(rl.rewards, rl.allow_external_rewards)
        except ValueError as error:
            raise ConfigError(f"rl.rewards: {error}") from None
        self.pools = {suite: suites.build(suite, rl.pool_size, rl.splits.get(suite, DEFAULT_SPLITS.get(suite, "train")))
                      for suite in rl.scenarios}
        for suite, pool in self.pools.items():
            if not pool:
                raise ValueError(f"no {suite} items for RL")
        self.model = RLModule(self)
        self.metrics: dict[str, float] = {}
        self._cache: tuple[tuple[int, int, int], dict] | None = None
        self.log_path = Path(config.output_dir) / "rollouts.jsonl"

    def resume_at(self, step: int) -> None:
        """Keep the rollout log lines of the steps before ``step`` (a resumed run writes the rest
        again; a fresh run into the same folder starts the log anew)."""
        if not self.log_path.exists():
            return
        kept = [line for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) < step]
        temporary = self.log_path.with_name(self.log_path.name + ".tmp")
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, self.log_path)

    def _modules(self) -> tuple[nn.Module, ...]:
        return (self.pipe.thinker.model, self.pipe.bridge, self.pipe.transformer, self.pipe.vae)

    @staticmethod
    def _frozen(module: nn.Module) -> nn.Module:
        return copy.deepcopy(module).requires_grad_(False).eval()

    # ------------------------------------------------------------------ what trains, at what lr
    def param_groups(self) -> list[dict[str, Any]]:
        rl, lr = self.config.rl, self.config.optim.lr
        groups = []
        if self.trains_thinker:
            groups.append({"params": [p for p in self.pipe.thinker.model.parameters() if p.requires_grad],
                           "lr": rl.thinker_lr or lr})
        if self.trains_dit:
            params = list(self.pipe.bridge.parameters()) + list(self.pipe.transformer.parameters())
            groups.append({"params": [p for p in params if p.requires_grad], "lr": rl.dit_lr or lr})
        return groups

    def phase(self, step: int) -> str:
        stage = self.config.stage
        if stage == "thinker_grpo":
            return "thinker"
        if stage == "dit_flow_grpo":
            return "dit"
        if stage == "dual_grpo":
            return "dual"
        rounds = self.config.rl.rounds
        position = step % sum(n for _, n in rounds)
        for name, n in rounds:
            if position < n:
                return name
            position -= n
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ rollouts
    def _items(self, window: int) -> list[suites.Item]:
        """The global batch of prompts of a step (a pure function of seed and step)."""
        rl = self.config.rl
        rng = random.Random(_seed(self.config.run.seed, "prompts", window))
        names = list(rl.scenarios)
        chosen = rng.choices(names, weights=[rl.scenarios[n] for n in names], k=self.config.run.batch_size)
        return [rng.choice(self.pools[name]) for name in chosen]

    def batch(self, step: int, start: int, size: int) -> dict[str, Any]:
        window = step - step % self.config.rl.num_iterations
        key = (window, start, size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        items = self._items(window)[start : start + size]
        phase = self.phase(window)
        self.metrics = {}
        with torch.no_grad():
            if phase == "thinker":
                batch = {"phase": phase, "thinker": self._thinker_rollout(items, window, start)}
            elif phase == "dit":
                batch = {"phase": phase, "dit": self._dit_rollout(items, window, start)}
            else:
                thinker_part, dit_part = self._dual_rollout(items, window, start)
                batch = {"phase": phase, "thinker": thinker_part}
                if dit_part is not None:  # None: every prompt of the batch is a reflection item
                    batch["dit"] = dit_part
        self._cache = (key, batch)
        if start == 0:  # one process logs
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": step, "phase": phase, **self.metrics}) + "\n")
        return batch

    def _resolution(self, item: suites.Item) -> int:
        return suites.RESOLUTION.get(item.suite, self.pipe.defaults["height"])

    def _by_resolution(self, items: list[suites.Item]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(self._resolution(item), []).append(index)
        return groups

    def _null(self, bridge: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unconditional text states through ``bridge`` (re-encoded: the thinker may be training)."""
        thought = self.pipe.thinker.encode([""], think=False)
        return (bridge or self.pipe.bridge)(thought.states.to(self.pipe.device), thought.mask.to(self.pipe.device))

    def _reference(self, items: list[suites.Item], resolution: int) -> Reference | None:
        if not any(item.source is not None for item in items):
            return None
        images = [Image.fromarray(render(item.source or item.scene, resolution)) for item in items]
        return self.pipe.reference(images, resolution, resolution)

    def _velocity(self, states: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int], reference: Reference | None,
                  cfg: float, null: tuple[torch.Tensor, torch.Tensor], bridge: nn.Module | None = None,
                  backend: Any = None) -> Velocity:
        """The guided velocity for thinker states: through ``bridge`` (default: the trained one) and the
        DiT ``backend`` (default: the trained one), with ``null`` as the unconditional text."""
        text, text_mask = (bridge or self.pipe.bridge)(states, mask)
        return self.pipe.guided_velocity(text, text_mask, grid, reference, cfg,
                                         self.pipe.defaults["image_guidance_scale"], backend=backend, null=null)

    def _images(self, items: list[suites.Item], states: torch.Tensor, mask: torch.Tensor,
                seeds: list[int]) -> list[Image.Image | None]:
        """Draw every sample with the frozen DiT (ODE sampler), sample i from noise ``seeds[i]``.

        Samples whose inputs are identical bit for bit (the same item, noise seed and conditioning
        states: a group's rollouts that sampled the same tokens) are drawn once and share the image.
        A trained thinker repeats itself often, and drawing is most of a thinker-GRPO step."""
        rl, pipe = self.config.rl, self.pipe
        images: list[Image.Image | None] = [None] * len(items)
        null = self._null()
        drawn_rows = all_rows = 0
        for resolution, rows in self._by_resolution(items).items():
            rows = [r for r in rows if items[r].suite != "reflection"]
            if not rows:
                continue
            first: dict[tuple, int] = {}
            source = [first.setdefault(self._draw_key(items[r], seeds[r], states[r], mask[r]), r) for r in rows]
            unique = sorted(set(source))
            grid = pipe.token_grid(resolution, resolution)
            velocity = self._velocity(states[unique], mask[unique], grid,
                                      self._reference([items[r] for r in unique], resolution), self._cfg(), null)
            noise = pipe.initial_noise([seeds[r] for r in unique], resolution, resolution)
            x = euler_sample(velocity, noise, pipe.sigmas(rl.render_steps, grid))
            drawn = dict(zip(unique, to_pil(pipe.decode(x, resolution, resolution)), strict=True))
            for r, s in zip(rows, source, strict=True):
                images[r] = drawn[s] if r == s else drawn[s].copy()
            drawn_rows, all_rows = drawn_rows + len(unique), all_rows + len(rows)
        if all_rows:
            self.metrics["render/unique_share"] = drawn_rows / all_rows  # over every resolution group
        return images

    @staticmethod
    def _draw_key(item: suites.Item, seed: int, states: torch.Tensor, mask: torch.Tensor) -> tuple:
        """What decides a drawing exactly: the item (its reference image), the noise seed and the
        conditioning states bit for bit (the mask cuts each row's padding off)."""
        valid = states[mask.bool()].detach().cpu().contiguous()
        # as raw bytes: numpy has no bfloat16, and a byte view is exact for every dtype
        return id(item), seed, valid.shape, valid.dtype, valid.flatten().view(torch.uint8).numpy().tobytes()

    def _cfg(self) -> float:
        cfg = self.config.rl.guidance_scale
        return self.pipe.defaults["guidance_scale"] if cfg is None else cfg

    @property
    def _sees(self) -> bool:
        return self.pipe.thinker.processor is not None

    def _thinker_images(self, items: list[suites.Item]) -> list[list[Image.Image]] | None:
        """What a thinker that sees is shown with each prompt: the source image of an edit or of a
        reflection item (drawn as the suite draws it), nothing otherwise; None for a text-only one."""
        if not self._sees:
            return None
        return [[Image.fromarray(render(item.source, self._resolution(item)))] if item.source is not None
                and item.suite in ("editing", "reflection") else [] for item in items]

    def _vision_inputs(self, images: list[list[Image.Image]] | None) -> dict[str, torch.Tensor] | None:
        """The image processor's inputs for ``completion_logprobs``, every prompt's images in order."""
        flat = [image for group in images or [] for image in group]
        if not flat:
            return None
        out = self.pipe.thinker.processor.image_processor(images=flat, return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def _encode(self, thinker: Thinker, items: list[suites.Item], copies: int, **options: Any):
        """``thinker.encode`` of each item's prompt ``copies`` times, with its images if it sees;
        returns the thought and the image inputs that re-forwarding its sequences needs."""
        expanded = [item for item in items for _ in range(copies)]
        images = self._thinker_images(expanded)
        thought = thinker.encode([prompt_for(item, self._sees) for item in expanded], images=images, **options)
        return thought, self._vision_inputs(images)

    def _sample_thoughts(self, items: list[suites.Item], copies: int, seed: int):
        return self._encode(self.sampler, items, copies, think=True, seed=seed)

    def _thinker_part(self, thought, vision: dict[str, torch.Tensor] | None, advantages: torch.Tensor,
                      items: list[suites.Item] | None = None) -> dict[str, Any]:
        rl = self.config.rl
        part = {"sequences": thought.sequences, "prompt_lengths": thought.prompt_lengths,
                "advantages": advantages.to(self.pipe.device), "vision": vision}
        if self.ref_direct is not None and items:
            part["direct"] = self._direct_anchor(items)
        pad = self.pipe.thinker.pad_id
        if rl.num_iterations > 1:  # the rollout policy's log-probs; otherwise the current ones, detached
            part["old_logprobs"], _ = completion_logprobs(self.pipe.thinker.model, thought.sequences,
                                                          thought.prompt_lengths, pad, rl.temperature, vision)
        if self.ref_thinker is not None:
            with capture_last_layers(self.ref_thinker, self.pipe.thinker.config.num_layers) as records:
                part["ref_logprobs"], _ = completion_logprobs(self.ref_thinker, thought.sequences,
                                                              thought.prompt_lengths, pad, rl.temperature, vision)
            if rl.state_beta:
                part["ref_states"] = conditioning_states(records, thought.sequences, thought.prompt_lengths,
                                                         self.pipe.thinker)
        close = self.pipe.thinker.close_id
        lengths = [think_length(seq[start:], close) for seq, start in zip(thought.sequences, thought.prompt_lengths,
                                                                          strict=True)]
        self.metrics["cot_length"] = sum(lengths) / len(lengths)
        self.metrics["completion_length"] = sum(len(s) - p for s, p in zip(thought.sequences, thought.prompt_lengths,
                                                                           strict=True)) / len(lengths)
        return part

    def _direct_anchor(self, items: list[suites.Item]) -> dict[str, Any]:
        """The frozen reference's direct-mode states of each prompt, and the token rows that
        rebuild them by one teacher-forced forward (``start`` at ``</think>``, which
        ``conditioning_states`` cuts after)."""
        with torch.no_grad():
            thought, vision = self._encode(self.ref_direct, items, 1, think=False)
        lengths = thought.mask.sum(dim=1).tolist()
        return {"sequences": thought.sequences, "starts": [p - 1 for p in thought.prompt_lengths], "vision": vision,
                "ref_states": [thought.states[row, : int(n)] for row, n in enumerate(lengths)]}

    def _score(self, items: list[suites.Item], images, rewrites: list[str]) -> torch.Tensor:
        rewards, parts = self.rewards(items, images, rewrites)
        self.metrics["reward"] = sum(rewards) / len(rewards)
        for suite in sorted({i.suite for i in items}):
            picked = [r for r, i in zip(rewards, items, strict=True) if i.suite == suite]
            self.metrics[f"reward/{suite}"] = sum(picked) / len(picked)
        for name, value in parts.items():
            self.metrics[f"reward_part/{name}"] = value
        return torch.tensor(rewards, dtype=torch.float32)

    def _advantages(self, rewards: torch.Tensor, group: int, model: str) -> torch.Tensor:
        """Group-relative advantages; logs the share of groups whose rewards are all equal (they
        teach nothing: TRL's frac_reward_zero_std)."""
        grouped = rewards.view(-1, group)
        self.metrics[f"{model}/frac_reward_zero_std"] = float((grouped == grouped[:, :1]).all(dim=1).float().mean())
        return group_advantages(rewards, group, self.config.rl.scale_rewards)

    def _thinker_rollout(self, items: list[suites.Item], window: int, start: int) -> dict[str, Any]:
        rl, seed = self.config.rl, self.config.run.seed
        G = rl.num_generations
        thought, vision = self._sample_thoughts(items, G, _seed(seed, "think", window, start))
        expanded = [item for item in items for _ in range(G)]
        # the same initial noise for every rollout of a prompt: only the rewrite differs
        noise_seeds = [_seed(seed, "noise", window, start + p) for p in range(len(items)) for _ in range(G)]
        images = (self._images(expanded, thought.states.to(self.pipe.device), thought.mask.to(self.pipe.device),
                               noise_seeds) if self.rewards.needs_images else [None] * len(expanded))
        rewards = self._score(expanded, images, thought.rewritten)
        return self._thinker_part(thought, vision, self._advantages(rewards, G, "thinker"), items)

    def _dual_rollout(self, items: list[suites.Item], window: int, start: int):
        """J traces per prompt; each drawn prompt's traces get K SDE images (the DiT's part). A
        reflection trace draws nothing: its verdict is its reward, so it trains the thinker only.
        Returns (thinker part, DiT part or None when no prompt of the batch draws)."""
        rl, seed = self.config.rl, self.config.run.seed
        J, K = rl.num_generations, rl.images_per_prompt
        thought, vision = self._sample_thoughts(items, J, _seed(seed, "think", window, start))
        trace_rewards = torch.zeros(len(items) * J)  # (P J,)
        drawn = [p * J + j for p, item in enumerate(items) if item.suite != "reflection" for j in range(J)]
        judged = [p * J + j for p, item in enumerate(items) if item.suite == "reflection" for j in range(J)]
        dit_part = None
        if drawn:
            rows = torch.tensor(drawn)
            states = thought.states[rows].to(self.pipe.device).repeat_interleave(K, 0)  # (P' J K, L, D)
            mask = thought.mask[rows].to(self.pipe.device).repeat_interleave(K, 0)
            expanded = [items[r // J] for r in drawn for _ in range(K)]
            rewrites = [thought.rewritten[r] for r in drawn for _ in range(K)]
            dit_part, rewards = self._dit_part(expanded, states, mask, K, window, start, rewrites, J * K)
            trace_rewards[rows] = rewards.view(-1, K).mean(dim=1)  # a trace scores the mean of its images
        if judged:
            rewards, _ = self.rewards([items[r // J] for r in judged], [None] * len(judged),
                                      [thought.rewritten[r] for r in judged])
            trace_rewards[torch.tensor(judged)] = torch.tensor(rewards, dtype=torch.float32)
            self.metrics["reward/reflection"] = sum(rewards) / len(rewards)
        self.metrics["reward"] = float(trace_rewards.mean())  # the image mean when every prompt draws
        thinker_part = self._thinker_part(thought, vision, self._advantages(trace_rewards, J, "thinker"), items)
        return thinker_part, dit_part

    # ------------------------------------------------------------------ losses (with gradients)
    def thinker_loss(self, part: dict[str, Any]) -> torch.Tensor:
        rl = self.config.rl
        anchored = "ref_states" in part
        with (capture_last_layers(self.pipe.thinker.model, self.pipe.thinker.config.num_layers, detach=False)
              if anchored else contextlib.nullcontext([])) as records:
            logprobs, mask = completion_logprobs(self.pipe.thinker.model, part["sequences"], part["prompt_lengths"],
                                                 self.pipe.thinker.pad_id, rl.temperature, part["vision"])
        anchor = None
        if anchored:  # relative squared drift of what the DiT reads
            states = conditioning_states(records, part["sequences"], part["prompt_lengths"], self.pipe.thinker)
            anchor = relative_drift(states, part["ref_states"])
        old = part.get("old_logprobs", logprobs.detach())
        loss, stats = grpo_loss(logprobs, old, part["advantages"], mask, rl.epsilon, rl.epsilon_high,
                                part.get("ref_logprobs"), rl.beta, rl.importance, rl.loss_type,
                                self.pipe.thinker.config.max_think_tokens + self.pipe.thinker.config.max_rewrite_tokens + 3)
        self.metrics.update({"thinker/clip_fraction": stats.clip_fraction, "thinker/kl": stats.kl,
                             "thinker/ratio": stats.ratio_mean})
        if anchor is not None:
            self.metrics["thinker/state_drift"] = float(anchor.detach())
            loss = loss + rl.state_beta * anchor
        if "direct" in part:  # the same anchor on what the DiT reads in direct mode
            direct = part["direct"]
            with capture_last_layers(self.pipe.thinker.model, self.pipe.thinker.config.num_layers,
                                     detach=False) as records:
                completion_logprobs(self.pipe.thinker.model, direct["sequences"], direct["starts"],
                                    self.pipe.thinker.pad_id, rl.temperature, direct["vision"])
            states = conditioning_states(records, direct["sequences"], direct["starts"], self.pipe.thinker)
            drift = relative_drift(states, direct["ref_states"])
            self.metrics["thinker/direct_state_drift"] = float(drift.detach())
            loss = loss + rl.direct_state_beta * drift
        return loss

    # ------------------------------------------------------------------ the result
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        load_ema(self.model, ema)
        for module in self._modules():
            module.to(self.saved_dtype).eval()
        self.pipe.save_pretrained(directory)
