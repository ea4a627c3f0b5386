"""Typed training configs, read from YAML. One file describes one stage of one run.

    stage: dit_pretrain          # thinker_pretrain | thinker_sft | dit_connector | dit_pretrain | dit_finetune
                                 # | thinker_grpo | dit_flow_grpo | sep_grpo | dual_grpo
    output_dir: runs/dit
    init: runs/connector/final   # a pipeline folder to start from (or a thinker folder / "tiny:..." recipe)
    optim: {lr: 6.0e-4, warmup_steps: 200}
    run: {steps: 12000, batch_size: 32}
    data: {resolution: 32}
    ...

Unknown keys are errors (a typo should not silently train with a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES = ("thinker_pretrain", "thinker_sft", "dit_connector", "dit_pretrain", "dit_finetune",
          "thinker_grpo", "dit_flow_grpo", "sep_grpo", "dual_grpo")
RL_STAGES = STAGES[5:]


class ConfigError(ValueError):
    """A training config that cannot be used, with the reason in plain words."""


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0


@dataclass
class RunConfig:
    steps: int = 1000
    batch_size: int = 32  # global batch: split across processes
    seed: int = 0
    log_every: int = 20
    save_every: int = 500
    keep_last: int = 2
    sample_every: int = 0  # DiT stages: write a sample grid every N steps (0 = never)
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more time
    threads: int = 0  # torch threads per process, 0 = leave as is


@dataclass
class ThinkerModelConfig:
    """The tiny ShapeWorld thinker (used when ``init`` does not name an existing thinker)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    system_prompt: str = "Think about the request, then describe the image to draw."
    max_think_tokens: int = 48
    max_rewrite_tokens: int = 24
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) instead of all weights
    lora_alpha: int = 16


@dataclass
class DiTModelConfig:
    """The tiny DiT (REFERENCE §6: width 128, 6 layers, 4x4 pixel patches at 32 px)."""

    width: int = 128
    num_layers: int = 6
    num_heads: int = 4
    text_width: int = 64
    patch: int = 4
    num_prepadding: int = 23
    connector: str = "linear"
    extract: str = "cut"
    resolution: int = 32


@dataclass
class DataConfig:
    caption_dropout: float = 0.1  # DiT: replace the caption by "" (the CFG unconditional)
    canonical_fraction: float = 0.5  # DiT: share of canonical captions (what think mode writes)
    max_objects: int = 4
    cache_size: int = 20000  # DiT: distinct training scenes (their thinker states are cached)
    curated: str = "all"  # stage 3: "all" | "multi" (two or more objects) | "relations"
    timesteps: str = "logit_normal"
    max_length: int = 96  # thinker: tokens per training sequence
    knowledge_repeats: int = 20  # thinker pretraining: passes over the knowledge corpus
    captions: int = 4000
    reasoning_examples: int = 3000
    composition_examples: int = 1500


@dataclass
class RLConfig:
    """Reinforcement learning (stages 4-5, SepGRPO, Dual-GRPO); ``run.batch_size`` counts prompts."""

    scenarios: dict[str, float] = field(default_factory=lambda: {"reasoning": 1.0})  # suite -> share
    splits: dict[str, str] = field(default_factory=dict)  # suite -> split (default: reasoning rl, else train)
    pool_size: int = 512  # items per scenario to draw prompts from
    rewards: dict[str, float] = field(default_factory=lambda: {"shapeworld": 1.0})  # name -> weight
    scale_rewards: str = "group"  # group | batch | none
    num_iterations: int = 1  # optimizer steps per rollout batch
    # thinker GRPO (TRL's names and defaults where they exist)
    num_generations: int = 8  # G rollouts per prompt (Dual-GRPO: J traces)
    temperature: float = 1.0
    top_k: int = 0
    epsilon: float = 0.2
    epsilon_high: float | None = None  # DAPO's clip-higher (e.g. 0.28); None = epsilon
    beta: float = 0.0  # KL to the frozen reference thinker
    # anchor on the conditioning states (the rewrite span's last layers, what the DiT reads) to the
    # frozen reference's on the same tokens: relative squared error, weighted by state_beta
    state_beta: float = 0.0
    importance: str = "token"  # token | sequence
    loss_type: str = "grpo"  # grpo | dr_grpo | dapo
    thinker_lr: float | None = None  # None: optim.lr
    render_steps: int = 10  # ODE steps when the frozen DiT draws thinker rollouts
    guidance_scale: float | None = None  # None: the pipeline's default
    # DiT Flow-GRPO
    images_per_prompt: int = 8  # K
    think: bool = True  # the frozen thinker writes instructions in think mode (greedy)
    noise_level: float = 0.7
    train_steps: int = 10  # denoising reduction: SDE steps while training (evaluation uses the default)
    sde_window: int = 0  # > 0: Flow-GRPO-Fast, only this many consecutive steps are stochastic
    sde_window_range: list[int] | None = None  # [lo, hi]: the window's first step is drawn from lo..hi
    share_noise: bool = False  # the K images of a prompt (or trace) start from one initial noise
    timestep_fraction: float = 1.0  # share of the recorded steps trained on
    clip_range: float = 1e-4
    advantage_clip: float = 5.0
    flow_beta: float = 0.0  # KL to the frozen reference DiT
    flow_cfg: bool = True  # CFG while sampling and training the DiT
    dit_lr: float | None = None
    # schedules
    rounds: list = field(default_factory=lambda: [["thinker", 100], ["dit", 100]])  # sep_grpo, cycled
    beta_thinker: float = 0.5  # dual_grpo loss weights (T2G's beta1, beta2)
    beta_dit: float = 0.5

    def check(self) -> None:
        from ..world.suites import SUITES

        for suite in self.scenarios:
            if suite not in SUITES:
                raise ConfigError(f"rl.scenarios: unknown suite {suite!r}; suites are {SUITES}")
        if not self.scenarios or any(w < 0 for w in self.scenarios.values()) or not sum(self.scenarios.values()):
            raise ConfigError("rl.scenarios needs at least one suite with a positive share")
        for name, allowed in (("scale_rewards", ("group", "batch", "none")), ("importance", ("token", "sequence")),
                              ("loss_type", ("grpo", "dr_grpo", "dapo"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"rl.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.num_generations < 2 or self.images_per_prompt < 2:
            raise ConfigError("rl.num_generations and rl.images_per_prompt must be >= 2 (advantages are relative)")
        if self.num_iterations < 1 or self.train_steps < 1 or self.render_steps < 1:
            raise ConfigError("rl.num_iterations, rl.train_steps and rl.render_steps must be >= 1")
        if not 0 < self.timestep_fraction <= 1:
            raise ConfigError(f"rl.timestep_fraction must be in (0, 1], got {self.timestep_fraction}")
        if self.sde_window_range is not None:
            window = self.sde_window_range
            if not self.sde_window:
                raise ConfigError("rl.sde_window_range places the SDE window: set rl.sde_window too")
            if len(window) != 2 or not 0 <= window[0] <= window[1] or window[1] + self.sde_window > self.train_steps:
                raise ConfigError(f"rl.sde_window_range must be [lo, hi] with 0 <= lo <= hi and hi + sde_window "
                                  f"<= train_steps ({self.train_steps}), got {window}")
        if not self.rounds or any(len(r) != 2 or r[0] not in ("thinker", "dit") or int(r[1]) < 1 for r in self.rounds):
            raise ConfigError("rl.rounds must be a list of [thinker|dit, steps] pairs with steps >= 1")


@dataclass
class TrainConfig:
    stage: str
    output_dir: str
    init: str | None = None  # pipeline folder, thinker folder, or None for a fresh tiny model
    thinker_dir: str | None = None  # DiT stages without ``init``: the trained thinker to condition on
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    thinker: ThinkerModelConfig = field(default_factory=ThinkerModelConfig)
    dit: DiTModelConfig = field(default_factory=DiTModelConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    ema_decay: float = 0.0  # > 0: keep an EMA of the trained weights and save it

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.run.steps < 1 or self.run.batch_size < 1:
            raise ConfigError("run.steps and run.batch_size must be >= 1")
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError(f"optim.schedule must be cosine or constant, got {self.optim.schedule!r}")
        if self.data.curated not in ("all", "multi", "relations"):
            raise ConfigError(f"data.curated must be all, multi or relations, got {self.data.curated!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.stage in RL_STAGES:
            self.rl.check()

    @property
    def is_dit(self) -> bool:
        return self.stage.startswith("dit_")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    values = {}
    for name, value in data.items():
        nested = {"optim": OptimConfig, "run": RunConfig, "data": DataConfig, "thinker": ThinkerModelConfig,
                  "dit": DiTModelConfig, "rl": RLConfig}.get(name) if cls is TrainConfig else None
        if nested is not None:
            value = _build(nested, value or {}, f"{where}.{name}")
        elif name == "betas":
            value = tuple(value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def from_dict(data: dict[str, Any]) -> TrainConfig:
    if "stage" not in data or "output_dir" not in data:
        raise ConfigError("a config needs at least 'stage' and 'output_dir'")
    return _build(TrainConfig, data, "config")


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` (dotted keys, e.g. ``{"run.steps": 10}``) win."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return from_dict(data)


def save(config: TrainConfig, path: str | Path) -> None:
    data = config.to_dict()
    data["optim"]["betas"] = list(data["optim"]["betas"])
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
