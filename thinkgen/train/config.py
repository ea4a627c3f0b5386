"""Typed training configs, read from YAML. One file describes one stage of one run.

    stage: dit_pretrain          # thinker_pretrain | thinker_sft | dit_connector | dit_pretrain | dit_finetune
                                 # | thinker_grpo | dit_flow_grpo | sep_grpo | dual_grpo
    output_dir: runs/dit
    init: runs/connector/final   # a pipeline folder to start from (or a thinker folder)
    optim: {lr: 6.0e-4, warmup_steps: 200}
    run: {steps: 12000, batch_size: 32}
    data: {resolution: 32}
    ...

Unknown keys are errors (a typo should not silently train with a default). Every field is
typed and ranged (pydantic dataclasses in strict mode: no text for numbers, no NaN or infinity),
so a wrong value is one ``ConfigError`` naming the field, before anything is built.
"""

import argparse
import dataclasses
import os
import reprlib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from ..validate import CONFIG_BYTES, FileTooLarge, read_text, url

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def dataclass(cls):  # noqa: D103 - every config section is validated the same way
    return _pydantic_dataclass(cls, config=_STRICT)


Count = Annotated[int, Field(ge=1, le=10**9)]  # steps, sizes, batch: at least one
Size = Annotated[int, Field(ge=0, le=10**9)]  # may be zero (e.g. warm-up steps)
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(gt=0, le=10)]

RL_STAGES = ("thinker_grpo", "dit_flow_grpo", "sep_grpo", "dual_grpo")
STAGES = ("thinker_pretrain", "thinker_sft", "autoencoder", "dit_connector", "dit_pretrain", "dit_finetune",
          *RL_STAGES)
COMPILABLE_STAGES = ("dit_connector", "dit_pretrain", "dit_finetune")
# the stages each dataset.source feeds (ShapeWorld feeds every stage)
SOURCE_STAGES = {"images": ("dit_connector", "dit_pretrain", "dit_finetune"), "chat": ("thinker_sft",),
                 "prompts": RL_STAGES}


class ConfigError(ValueError):
    """A training config that cannot be used, with the reason in plain words."""


@dataclass
class OptimConfig:
    lr: Rate = 3e-4
    weight_decay: Annotated[float, Field(ge=0, le=10)] = 0.0
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.99)
    warmup_steps: Size = 100
    schedule: Literal["cosine", "constant"] = "cosine"  # constant: after warm-up
    min_lr_ratio: Fraction = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: Annotated[float, Field(gt=0)] = 1.0
    # AdamW's implementation: "foreach" (one kernel per operation over every tensor), "fused" (one
    # kernel for the whole update: fastest, but it rounds by an element's place in its shard, so the
    # weights then depend on the number of processes) or "loop"; None: foreach under fsdp (sharded
    # parameters make the loop ~4x slower: docs/training.md), torch's own choice under ddp
    implementation: Literal["foreach", "fused", "loop"] | None = None


@dataclass
class RunConfig:
    steps: Count = 1000
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32  # global batch: split across processes
    seed: Seed = 0
    log_every: Count = 20
    save_every: Count = 500
    keep_last: Annotated[int, Field(ge=1, le=1000)] = 2
    sample_every: Size = 0  # DiT stages: write a sample grid every N steps (0 = never)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # accelerate
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more time
    # torch.compile the stage's forward (supervised DiT stages, whose shapes are fixed): on this
    # 2-core CPU a stage-2 step takes 0.67-0.80x the time (benchmarks/bench_train.py); the first
    # step compiles (10-60 s) and needs a C++ compiler
    compile: bool = False
    threads: Annotated[int, Field(ge=0, le=1024)] = 0  # torch threads per process, 0 = leave as is


@dataclass
class ThinkerModelConfig:
    """The tiny ShapeWorld thinker (used when ``init`` does not name an existing thinker)."""

    hidden_size: Annotated[int, Field(ge=2, le=65536)] = 128
    num_layers: Annotated[int, Field(ge=1, le=1024)] = 4
    num_heads: Annotated[int, Field(ge=1, le=1024)] = 4
    intermediate_size: Annotated[int, Field(ge=1, le=10**6)] = 384
    system_prompt: str = "Think about the request, then describe the image to draw."
    max_think_tokens: Annotated[int, Field(ge=0, le=65536)] = 48
    max_rewrite_tokens: Annotated[int, Field(ge=1, le=65536)] = 24
    lora_rank: Annotated[int, Field(ge=0, le=4096)] = 0  # > 0: train LoRA adapters (peft) instead of all weights
    lora_alpha: Annotated[int, Field(ge=1, le=65536)] = 16
    # A thinker that sees: the vision-language class to build (None: a text-only Qwen3), with a
    # small vision tower of `vision_patch` px patches (2 x 2 of them make one image token)
    vision: Literal["qwen3_vl", "qwen2_5_vl"] | None = None
    vision_width: Annotated[int, Field(ge=16, le=65536)] = 64
    vision_depth: Annotated[int, Field(ge=1, le=1024)] = 2
    vision_patch: Annotated[int, Field(ge=1, le=64)] = 4

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(f"thinker.hidden_size ({self.hidden_size}) must split into num_heads "
                              f"({self.num_heads}) heads of an even width")


@dataclass
class DiTModelConfig:
    """The tiny DiT (REFERENCE §6: width 128, 6 layers, 4x4 pixel patches at 32 px)."""

    width: Annotated[int, Field(ge=8, le=65536)] = 128
    num_layers: Annotated[int, Field(ge=1, le=1024)] = 6
    num_heads: Annotated[int, Field(ge=1, le=1024)] = 4
    text_width: Annotated[int, Field(ge=1, le=65536)] = 64
    patch: Literal[1, 2, 4, 8, 16] = 4
    num_prepadding: Annotated[int, Field(ge=0, le=4096)] = 23
    connector: Literal["linear", "mlp", "transformer"] = "linear"
    extract: Literal["cut", "all"] = "cut"
    resolution: Annotated[int, Field(ge=8, le=1024)] = 32
    # an AutoencoderKL folder (the ``autoencoder`` stage's output): the DiT draws its latents, patch
    # being counted in latent pixels; None = draw pixels (the identity autoencoder)
    autoencoder: Annotated[str, Field(min_length=1)] | None = None

    def __post_init__(self) -> None:
        if self.width % self.num_heads or (self.width // self.num_heads) % 2 or self.width // self.num_heads < 8:
            raise ConfigError(f"dit.width ({self.width}) must split into num_heads ({self.num_heads}) heads of an "
                              "even width of at least 8")
        if self.resolution % self.patch:
            raise ConfigError(f"dit.resolution ({self.resolution}) must be a multiple of dit.patch ({self.patch})")


@dataclass
class AutoencoderModelConfig:
    """The ``autoencoder`` stage's AutoencoderKL: one halving of the side per block after the first."""

    block_out_channels: list[Annotated[int, Field(ge=1, le=65536)]] = field(default_factory=lambda: [16, 32, 32])
    latent_channels: Annotated[int, Field(ge=1, le=4096)] = 8
    layers_per_block: Annotated[int, Field(ge=1, le=64)] = 1
    norm_num_groups: Annotated[int, Field(ge=1, le=4096)] = 8
    kl_weight: Annotated[float, Field(ge=0)] = 1e-4
    resolution: Annotated[int, Field(ge=8, le=1024)] = 32

    def __post_init__(self) -> None:
        if self.resolution < 24:
            raise ConfigError(f"ae.resolution ({self.resolution}) must be at least 24: the training scenes' text "
                              "(up to four characters of a 5 x 7 font) needs 23 pixels")
        if not self.block_out_channels or any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(f"ae.block_out_channels {self.block_out_channels} must be non-empty multiples of "
                              f"ae.norm_num_groups ({self.norm_num_groups})")
        factor = 2 ** (len(self.block_out_channels) - 1)
        if self.resolution % factor:
            raise ConfigError(f"ae.resolution ({self.resolution}) must be a multiple of {factor} "
                              f"(2 ** (blocks - 1))")


@dataclass
class LayoutAlignConfig:
    """DiT stages: a second loss on block ``layer``'s image tokens, the ShapeWorld layout of each token
    (train/layout_align.py; REPA's idea with exact labels instead of an image encoder). 0 = off."""

    weight: Annotated[float, Field(ge=0, le=100)] = 0.0
    layer: Annotated[int, Field(ge=0, le=1023)] = 2


@dataclass
class DataConfig:
    caption_dropout: Fraction = 0.1  # DiT: replace the caption by "" (the CFG unconditional)
    canonical_fraction: Fraction = 0.5  # DiT: share of canonical captions (what think mode writes)
    max_objects: Annotated[int, Field(ge=1, le=16)] = 4
    cache_size: Annotated[int, Field(ge=1, le=10**7)] = 20000  # DiT: distinct training scenes (states cached)
    # DiT finetune: a subset of the scenes (dit_stage._curated says which)
    curated: Literal["all", "multi", "relations", "multi_relations", "relations_counting"] = "all"
    # DiT stages: share of steps that train editing (the editing suite's train split: the source
    # image as reference tokens, the edit instruction as the text, the edited scene as the target)
    edit_fraction: Fraction = 0.0
    # DiT stages: folders of a model's own drawings judged by the parser (experiments/scripts/draw_reflection_data.py);
    # each drawing that needs a fix joins the edits: the drawing as reference, the fix as the text, the
    # parsed drawing with the fix applied as the target (world.corpora.drawn_edit_examples)
    drawn_edits: str | list[str] | None = None
    # DiT stages: folders of a model's own drawings (`thinkgen eval --no-think --out`), replayed as
    # training scenes: each image under its prompt, read in direct mode. Training on new captions
    # keeps what the model drew for prompts they never show (riddles, say): "learning without
    # forgetting" (dit_stage.replay_examples; docs/dit_experiments.md, "Session 20")
    replay: str | list[str] | None = None
    # which replayed drawings: "all" (keep what the model drew, right or wrong) or "right" (only
    # those its suite's scorer gives full marks: learning from its own successes, as rejection sampling)
    replay_select: Literal["all", "right"] = "all"
    text_fraction: Fraction = 0.0  # DiT and autoencoder stages: share of training scenes that are words (text suite, train split)
    # DiT stages: "distinct" words (each once before any twice; 95 % have 3-4 characters, as distinct
    # words come) or "balanced" lengths (each of 1-4 characters a quarter; short words repeat)
    text_lengths: Literal["distinct", "balanced"] = "distinct"
    timesteps: Literal["logit_normal", "uniform"] = "logit_normal"
    # DiT stages: the static shift bent into every training sigma (flow.shift_sigmas; above 1 trains the
    # noisy end more, where a scene's layout is decided). A pipeline samples with its scheduler's own shift.
    timestep_shift: Annotated[float, Field(gt=0, le=20)] = 1.0
    # DiT stages: how the composition test's position and colour-binding statements are held out of
    # training: no "scenes" showing one, or no "captions" saying one (dit_stage.TrainingScenes)
    held_out: Literal["scenes", "captions"] = "scenes"
    # DiT stages: share of training captions whose states come from think mode (the frozen thinker
    # writes its reasoning and rewrite, greedily, and the DiT reads the states after </think>, as
    # in `pipe(..., think=True)`) instead of the pseudo-CoT template of direct mode
    think_states: Fraction = 0.0
    max_length: Annotated[int, Field(ge=8, le=65536)] = 96  # thinker: tokens per training sequence
    knowledge_repeats: Annotated[int, Field(ge=0, le=10**4)] = 20  # thinker pretraining: passes over the corpus
    captions: Annotated[int, Field(ge=0, le=10**7)] = 4000
    reasoning_examples: Annotated[int, Field(ge=0, le=10**7)] = 3000
    composition_examples: Annotated[int, Field(ge=0, le=10**7)] = 1500
    text_examples: Annotated[int, Field(ge=0, le=10**7)] = 0  # thinker SFT: text-suite prompts -> the text "..."
    photo_examples: Annotated[int, Field(ge=0, le=10**7)] = 0  # thinker SFT: "a photo of <caption>" -> the caption
    # thinker stages with `thinker.vision`: examples with an image (world.corpora.seeing_examples)
    describe_examples: Annotated[int, Field(ge=0, le=10**7)] = 0  # scene -> canonical caption
    edit_examples: Annotated[int, Field(ge=0, le=10**7)] = 0  # source image + request -> edit
    reflection_examples: Annotated[int, Field(ge=0, le=10**7)] = 0  # image + prompt -> fix or "right"
    # folders of a model's own drawings judged by the parser (experiments/scripts/draw_reflection_data.py):
    # each drawing + its prompt -> the fix, or "right"; repeated this many times
    drawn_reflection: str | list[str] | None = None
    drawn_reflection_repeats: Annotated[int, Field(ge=1, le=10**4)] = 1
    image_size: Annotated[int, Field(ge=8, le=1024)] = 32  # px, as the suites draw them


@dataclass
class DatasetConfig:
    """Where a stage's examples come from (thinkgen.data). ``shapeworld`` builds them from ShapeWorld
    scenes (the ``data:`` section says how); ``images`` reads your captioned images through Hugging
    Face ``datasets``: a folder with ``metadata.jsonl`` (``file_name`` + ``caption``; optional
    ``reference_file_name`` + an instruction as the caption, for editing), or a ``.jsonl`` /
    ``.parquet`` file whose image column holds paths (relative to the file) or encoded bytes; ``chat``
    reads a ``.jsonl`` of conversations (TRL's conversational format) for thinker SFT; ``prompts`` a
    ``.txt`` (a prompt per line) or ``.jsonl`` (``prompt`` + fields a reward reads) for the RL stages."""

    source: Literal["shapeworld", "images", "chat", "prompts"] = "shapeworld"
    path: Annotated[str, Field(min_length=1)] | None = None
    caption_column: Annotated[str, Field(min_length=1)] = "caption"
    # aspect-ratio buckets of about resolution**2 pixels (sides multiples of the pipeline's factor);
    # False: every image centre-cropped to resolution x resolution
    resolution: Annotated[int, Field(ge=8, le=8192)] = 1024
    buckets: bool = True
    max_image_pixels: Annotated[int, Field(ge=64, le=2**31)] = 64_000_000  # refuse bigger (decompression bombs)
    # images only: read the rows as a stream (no Arrow table prepared first), shuffled through a buffer
    streaming: bool = False
    shuffle_buffer: Annotated[int, Field(ge=1, le=10**8)] = 10_000
    # a folder of safetensors shards holding the frozen thinker's states, keyed by caption and thinker:
    # repeated epochs read them instead of running the thinker again (None = always recompute)
    state_cache: Annotated[str, Field(min_length=1)] | None = None


@dataclass
class ParallelConfig:
    """How processes share a stage. ``ddp`` replicates the model (accelerate); ``fsdp`` shards weights,
    gradients and optimizer states over the processes with PyTorch's FSDP2 (``fully_shard`` per block,
    sharded ``torch.distributed.checkpoint`` checkpoints that resume on any number of processes)."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    # fsdp: free each block's gathered weights after its forward (True: least memory, a second gather
    # in backward) or keep them until backward (False: ZeRO-2's trade, one gather fewer per block)
    reshard_after_forward: bool = True


@dataclass
class LoraConfig:
    """Train low-rank adapters (peft) instead of all weights: of the DiT in the DiT stages and the RL
    stages (where a trained thinker trains whole), of the thinker in thinker SFT. DiT adapters are
    saved in diffusers' LoRA format next to the pipeline, thinker adapters in peft's; ``merge`` also
    writes the merged pipeline."""

    rank: Annotated[int, Field(ge=0, le=4096)] = 0  # 0 = off
    alpha: Annotated[float, Field(gt=0, le=65536)] | None = None  # None = rank
    # module names to adapt (peft target_modules); None = the attention projections of the DiT
    targets: list[Annotated[str, Field(min_length=1)]] | None = None
    merge: bool = False


@dataclass
class JudgeConfig:
    """``rl.rewards: {judge: w}``: a VLM judge behind an OpenAI-compatible chat endpoint (thinkgen.reward_models)."""

    url: Annotated[str, Field(min_length=1)]  # e.g. http://127.0.0.1:8000/v1 (vLLM / SGLang serve)
    model: Annotated[str, Field(min_length=1)]
    question: str = "Does this image show: {prompt}? Answer yes or no."  # {field}s of the prompt row
    answer: Literal["yes_no", "score_10"] = "yes_no"
    api_key_env: str | None = None  # the environment variable holding the API key, if any
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 16

    def __post_init__(self) -> None:
        try:
            url(self.url)
        except argparse.ArgumentTypeError as error:
            raise ConfigError(f"judge.url: {error}") from None


@dataclass
class ScorerConfig:
    """``rl.rewards: {scorer: w}``: an image-classification model from a local folder (transformers)."""

    path: Annotated[str, Field(min_length=1)]
    label: str | None = None  # the label whose probability is the reward (None: a one-logit head)
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16


@dataclass
class RLConfig:
    """Reinforcement learning (stages 4-5, SepGRPO, Dual-GRPO); ``run.batch_size`` counts prompts."""

    scenarios: dict[str, Annotated[float, Field(ge=0)]] = field(default_factory=lambda: {"reasoning": 1.0})  # suite -> share
    splits: dict[str, Literal["train", "test", "rl"]] = field(default_factory=dict)  # suite -> split (default: reasoning rl, else train)
    pool_size: Annotated[int, Field(ge=1, le=10**6)] = 512  # items per scenario to draw prompts from
    rewards: dict[str, float] = field(default_factory=lambda: {"shapeworld": 1.0})  # name -> weight
    allow_external_rewards: bool = False  # rewards named "module:function" import and run that code: opt in
    scale_rewards: Literal["group", "batch", "none"] = "group"
    num_iterations: Annotated[int, Field(ge=1, le=1000)] = 1  # optimizer steps per rollout batch
    # thinker GRPO (TRL's names and defaults where they exist)
    num_generations: Annotated[int, Field(ge=2, le=1024)] = 8  # G rollouts per prompt (Dual-GRPO: J traces)
    temperature: Annotated[float, Field(gt=0, le=100)] = 1.0
    top_k: Annotated[int, Field(ge=0, le=10**6)] = 0
    epsilon: Annotated[float, Field(gt=0, le=10)] = 0.2
    epsilon_high: Annotated[float, Field(gt=0, le=10)] | None = None  # DAPO's clip-higher (e.g. 0.28); None = epsilon
    beta: Annotated[float, Field(ge=0)] = 0.0  # KL to the frozen reference thinker
    # anchor on the conditioning states (the rewrite span's last layers, what the DiT reads) to the
    # frozen reference's on the same tokens: relative squared error, weighted by state_beta
    state_beta: Annotated[float, Field(ge=0)] = 0.0
    # the same anchor on the direct-mode states of each prompt (the pseudo-CoT template, no thinking):
    # thinker RL samples only think mode, yet moves what the DiT reads when the user does not think
    direct_state_beta: Annotated[float, Field(ge=0)] = 0.0
    importance: Literal["token", "sequence"] = "token"
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "grpo"
    thinker_lr: Rate | None = None  # None: optim.lr
    max_completion_length: Annotated[int, Field(ge=1, le=65536)] | None = None  # sampled tokens per trace on your prompts; None: the pipeline's budget
    render_steps: Annotated[int, Field(ge=1, le=1000)] = 10  # ODE steps when the frozen DiT draws thinker rollouts
    guidance_scale: Annotated[float, Field(ge=0, le=100)] | None = None  # None: the pipeline's default
    # DiT Flow-GRPO
    images_per_prompt: Annotated[int, Field(ge=2, le=1024)] = 8  # K
    think: bool = True  # the frozen thinker writes instructions in think mode (greedy)
    noise_level: Annotated[float, Field(ge=0, le=10)] = 0.7
    train_steps: Annotated[int, Field(ge=1, le=1000)] = 10  # denoising reduction: SDE steps while training
    sde_window: Annotated[int, Field(ge=0, le=1000)] = 0  # > 0: Flow-GRPO-Fast, this many consecutive SDE steps
    sde_window_range: list[int] | None = None  # [lo, hi]: the window's first step is drawn from lo..hi
    share_noise: bool = False  # the K images of a prompt (or trace) start from one initial noise
    timestep_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0  # share of the recorded steps trained on
    clip_range: Annotated[float, Field(gt=0, le=10)] = 1e-4
    advantage_clip: Annotated[float, Field(gt=0)] = 5.0
    flow_beta: Annotated[float, Field(ge=0)] = 0.0  # KL to the frozen reference DiT
    flow_cfg: bool = True  # CFG while sampling and training the DiT
    dit_lr: Rate | None = None
    # schedules
    rounds: list[tuple[Literal["thinker", "dit"], Annotated[int, Field(ge=1)]]] = field(
        default_factory=lambda: [("thinker", 100), ("dit", 100)])  # sep_grpo, cycled
    beta_thinker: Annotated[float, Field(ge=0)] = 0.5  # dual_grpo loss weights (T2G's beta1, beta2)
    beta_dit: Annotated[float, Field(ge=0)] = 0.5

    def check(self, shapeworld: bool = True) -> None:
        """``shapeworld``: the prompts are ShapeWorld's (``scenarios`` are checked)."""
        from ..world.suites import SUITES

        for suite in self.scenarios if shapeworld else ():
            if suite not in SUITES:
                raise ConfigError(f"rl.scenarios: unknown suite {suite!r}; suites are {SUITES}")
        external = [name for name in self.rewards if ":" in name]
        if external and not self.allow_external_rewards:
            raise ConfigError(f"rl.rewards: {external[0]!r} is an import path: it would import and run any code it "
                              "names; set rl.allow_external_rewards: true to allow reward functions from outside thinkgen")
        if shapeworld and (not self.scenarios or any(w < 0 for w in self.scenarios.values())
                           or not sum(self.scenarios.values())):
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
    stage: Literal[STAGES]  # type: ignore[valid-type]
    output_dir: Annotated[str, Field(min_length=1)]
    init: Annotated[str, Field(min_length=1)] | None = None  # pipeline folder, thinker folder, or None (fresh tiny)
    thinker_dir: Annotated[str, Field(min_length=1)] | None = None  # DiT stages without ``init``: the trained thinker
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    thinker: ThinkerModelConfig = field(default_factory=ThinkerModelConfig)
    dit: DiTModelConfig = field(default_factory=DiTModelConfig)
    ae: AutoencoderModelConfig = field(default_factory=AutoencoderModelConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    layout_align: LayoutAlignConfig = field(default_factory=LayoutAlignConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    judge: JudgeConfig | None = None
    scorer: ScorerConfig | None = None
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0  # > 0: keep an EMA of the trained weights and save it

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.run.steps < 1 or self.run.batch_size < 1:
            raise ConfigError("run.steps and run.batch_size must be >= 1")
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError(f"optim.schedule must be cosine or constant, got {self.optim.schedule!r}")
        curated = ("all", "multi", "relations", "multi_relations", "relations_counting")
        if self.data.curated not in curated:
            raise ConfigError(f"data.curated must be one of {', '.join(curated)}, got {self.data.curated!r}")
        for name in ("drawn_reflection", "drawn_edits", "replay"):  # one folder or several: a list after loading
            if isinstance(getattr(self.data, name), str):
                setattr(self.data, name, [getattr(self.data, name)])
        if self.data.drawn_edits and self.data.edit_fraction == 0:
            raise ConfigError("data.drawn_edits needs data.edit_fraction > 0 (the share of steps that train edits)")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.stage in RL_STAGES:
            self.rl.check(shapeworld=self.dataset.source == "shapeworld")
        if self.layout_align.weight and self.stage not in ("dit_pretrain", "dit_finetune"):
            raise ConfigError(f"layout_align is a loss of the DiT stages that train the DiT (dit_pretrain, "
                              f"dit_finetune), not of {self.stage}")
        if self.dataset.source != "shapeworld":
            stages = SOURCE_STAGES[self.dataset.source]
            if self.dataset.path is None:
                raise ConfigError(f"dataset.source {self.dataset.source!r} reads dataset.path: set it")
            if self.stage not in stages:
                raise ConfigError(f"dataset.source {self.dataset.source!r} feeds the stages {stages}, not {self.stage}")
            if not self.init:
                raise ConfigError("a stage on your own data starts from a pipeline folder: set init")
        if self.dataset.streaming and self.dataset.source != "images":
            raise ConfigError(f"dataset.streaming reads captioned images (dataset.source: images), not "
                              f"{self.dataset.source!r}")
        if self.lora.rank and self.dataset.source == "shapeworld":
            raise ConfigError("lora: adapters are trained by the stages on your data (dataset.source images or "
                              "chat); the ShapeWorld thinker stages use thinker.lora_rank")
        if self.dataset.source == "prompts" and any(":" in name for name in self.rl.rewards) \
                and not self.rl.allow_external_rewards:
            raise ConfigError("rl.rewards: an import path runs any code it names; set rl.allow_external_rewards: true")
        if self.parallel.strategy == "fsdp":
            if self.run.sample_every:
                raise ConfigError("run.sample_every draws on one process, which a sharded (fsdp) model cannot: "
                                  "set it to 0 and draw from a saved checkpoint")
            if self.run.compile:
                raise ConfigError("run.compile is not supported with parallel.strategy fsdp yet")
        if self.run.compile and self.stage not in COMPILABLE_STAGES:
            raise ConfigError(f"run.compile is for the supervised DiT stages {COMPILABLE_STAGES} (fixed shapes); "
                              f"{self.stage}'s shapes change every step, so it would recompile instead")

    @property
    def is_dit(self) -> bool:
        return self.stage.startswith("dit_")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TUPLES = {"betas", "rounds"}
OPTIONAL_SECTIONS = {"judge", "scorer"}  # absent (None) unless a config writes them  # YAML has lists; strict validation wants the tuples the fields declare


_SHORT = reprlib.Repr()  # a bad value shown short, whatever its size (never formatted whole)
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 4
_SHORT.maxlevel = 2


def _one_line(error: ValidationError, where: str) -> str:
    """The first problem of a pydantic error as ``config.optim.lr: must be ... (got -1)``."""
    first = error.errors()[0]
    location = ".".join([where, *(str(part) for part in first["loc"])])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("value_error", "assertion_error"):
        return message
    shown = _SHORT.repr(first.get("input"))
    return f"{location}: {message} (got {shown[:60]})"


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(sorted(map(str, unknown)))}")
    values = {}
    for name, value in data.items():
        nested = {"optim": OptimConfig, "run": RunConfig, "data": DataConfig, "thinker": ThinkerModelConfig,
                  "dit": DiTModelConfig, "ae": AutoencoderModelConfig, "rl": RLConfig,
                  "layout_align": LayoutAlignConfig, "dataset": DatasetConfig, "parallel": ParallelConfig,
                  "lora": LoraConfig, "judge": JudgeConfig, "scorer": ScorerConfig}.get(name) if cls is TrainConfig else None
        if nested is not None and not (value is None and name in OPTIONAL_SECTIONS):
            value = _build(nested, value or {}, f"{where}.{name}")
        elif name in TUPLES and isinstance(value, list):
            value = tuple(value) if name == "betas" else [tuple(v) if isinstance(v, list) else v for v in value]
        values[name] = value
    try:
        return cls(**values)
    except ValidationError as error:
        raise ConfigError(_one_line(error, where)) from None
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def from_dict(data: dict[str, Any]) -> TrainConfig:
    if "stage" not in data or "output_dir" not in data:
        raise ConfigError("a config needs at least 'stage' and 'output_dir'")
    return _build(TrainConfig, data, "config")


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``): a config has no use for them, and a few hundred bytes of
    nested aliases expand to billions of values (a "billion laughs" document)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config",
                                              event.start_mark)
        return super().compose_node(parent, index)


MAX_BASE_DEPTH = 32  # configs on configs: a recipe uses 2 or 3


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = read_text(path, CONFIG_BYTES, "config")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a YAML config") from None
    except FileTooLarge as error:
        raise ConfigError(str(error)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())[:300]}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping (stage: ..., output_dir: ...), not a {type(data).__name__}")
    return data


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` on top: sections (mappings) merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merged(out[key], value)
        out[key] = value
    return out


def _read_with_base(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config's mapping, on top of the config its ``base:`` names (a path relative to this file).

    A variant then states only what differs from the recipe it varies (its output folders, a step
    count), and a change to the base reaches every variant.
    """
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'base' loops back to itself ({' -> '.join(str(p) for p in chain)})")
    if len(chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: more than {MAX_BASE_DEPTH} configs deep in 'base' (from {chain[0]})")
    data = _read_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be the path of another config, got {base!r}")
    return _merged(_read_with_base(path.parent / base, (*chain, path.resolve())), data)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` (dotted keys, e.g. ``{"run.steps": 10}``) win.

    ``base: OTHER.yaml`` in a config reads OTHER first (relative to the config's folder) and puts
    this file's keys on top, section by section.
    """
    data = _read_with_base(Path(path))
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section")
        node[leaf] = value
    return from_dict(data)


def check_paths(config: TrainConfig) -> None:
    """What a config names on disk: existing input folders, then a writable output folder (made
    last, so that a refused config leaves nothing behind)."""
    for name in ("thinker_dir", "init", "dit.autoencoder"):
        folder = config.dit.autoencoder if name == "dit.autoencoder" else getattr(config, name)
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{name} folder not found: {folder}")
    if config.dataset.source != "shapeworld" and not Path(config.dataset.path).exists():
        raise ConfigError(f"dataset.path not found: {config.dataset.path}")
    if config.stage in ("dit_connector", "dit_pretrain", "dit_finetune") and config.dataset.source == "shapeworld" \
            and not (config.init or config.thinker_dir):
        raise ConfigError(f"a {config.stage} stage needs init (a pipeline folder) or thinker_dir (a trained thinker)")
    out = Path(config.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".thinkgen-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"output_dir {out} is not writable: {error.strerror or error}") from None
    if config.dataset.state_cache is not None:
        cache = Path(config.dataset.state_cache)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"dataset.state_cache {cache} cannot be made: {error.strerror or error}") from None


def save(config: TrainConfig, path: str | Path) -> None:
    data = config.to_dict()
    data["optim"]["betas"] = list(data["optim"]["betas"])
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
