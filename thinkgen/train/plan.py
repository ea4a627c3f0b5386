"""Memory per GPU before launch: ``thinkgen train CONFIG --plan --gpus N --gpu-memory GiB``.

Every model of the stage is built from its config on the meta device (:func:`thinkgen.memory.empty_model`:
no weights are read, a config-only folder such as ``configs/real/t2g`` is enough), the parts that
train are chosen as the stage chooses them (connector, whole DiT, LoRA adapters, the thinker), and
each GPU's share is counted as the engine holds it:

* the trained model in fp32 (master weights): split over the GPUs with ``fsdp``, whole with ``ddp``
  (the frozen base weights under LoRA in the compute dtype);
  with ``fsdp`` also the two blocks being gathered at a time, in the compute dtype;
* gradients (fp32) and AdamW's two states (fp32) of what trains, and its EMA if any: split the same way;
* frozen models outside the trained one (the thinker of a DiT stage, the VAE): whole, in the compute dtype;
* activations: ``ACTIVATION_WIDTHS`` saved values of the model's width per token per block in the
  compute dtype (a fused attention keeps no token-by-token matrix), or one per token per block plus
  one whole block with gradient checkpointing; a language model's logits (fp32, twice) on top.

Tokens per sample: image tokens of the largest bucket (``dataset.resolution``) plus ``data.max_length``
text tokens for a DiT; ``data.max_length`` for a thinker. Flow-GRPO's backward runs per micro-batch,
a process's prompts' K images each at one recorded step with CFG's negative branch: that many samples. It is an estimate: allocator slack, CUDA
context and communication buffers (a few GiB on a GPU) come on top, hence ``headroom``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..loading import layout_of, read_index
from ..memory import MODEL_COMPONENTS, empty_model
from .config import TrainConfig

GIB = 1024**3
# saved activations per token per block, in units of the block's width: a pre-norm block keeps its
# normalised input, q, k, v, the attention output and its projection, the MLP's input, its hidden
# layer (about 4 widths, before and after the activation) and output, and the residual sums;
# an MMDiT block counts each stream's tokens once. Compared with the values saved by the tiny
# models' training steps in benchmarks/bench_plan.py.
ACTIVATION_WIDTHS = 18
THINKER_NAMES = ("thinker", "text_encoder", "mllm")


@dataclass
class MemoryPlan:
    gpus: int
    gpu_memory_gib: float
    rows: list[tuple[str, int]] = field(default_factory=list)  # (what, bytes per GPU)
    notes: list[str] = field(default_factory=list)
    headroom: float = 0.9  # share of a GPU's memory the plan may fill

    @property
    def total(self) -> int:
        return sum(b for _, b in self.rows)

    @property
    def fits(self) -> bool:
        return self.total <= self.headroom * self.gpu_memory_gib * GIB

    def table(self) -> str:
        lines = [f"per GPU, {self.gpus} GPU{'s' if self.gpus > 1 else ''} of {self.gpu_memory_gib:g} GiB:"]
        lines += [f"  {what:<46}{_size(b):>12}" for what, b in self.rows]
        lines.append(f"  {'total':<46}{_size(self.total):>12}")
        verdict = "fits" if self.fits else "does NOT fit"
        lines.append(f"  {verdict} ({self.headroom:.0%} of {self.gpu_memory_gib:g} GiB = "
                     f"{self.headroom * self.gpu_memory_gib:.1f} GiB usable)")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _size(count: int) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{count / 1024**2:.2f} MiB"


def _count(model: nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)


def _blocks(model: nn.Module) -> list[nn.Module]:
    from .parallel import block_classes

    names = block_classes(model)
    return [m for m in model.modules() if type(m).__name__ in names and _count(m)]


def _width(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for key in ("hidden_size",):
        value = getattr(getattr(config, "text_config", config), key, None) if config is not None else None
        if isinstance(value, int):
            return value
    if hasattr(config, "num_attention_heads") and hasattr(config, "attention_head_dim"):
        return config.num_attention_heads * config.attention_head_dim  # Qwen-Image's MMDiT
    raise ValueError(f"cannot tell the width of {type(model).__name__}")


def plan(config: TrainConfig, gpus: int, gpu_memory_gib: float) -> MemoryPlan:
    """The memory one GPU needs for ``config`` on ``gpus`` GPUs (see the module's docstring)."""
    if not config.init:
        raise ValueError("--plan reads the models from the config's init folder (config-only folders are enough)")
    if config.run.batch_size % gpus:
        raise ValueError(f"run.batch_size {config.run.batch_size} is not divisible by {gpus} GPUs")
    folder = Path(config.init)
    index = read_index(folder)
    components = [n for n in MODEL_COMPONENTS[layout_of(index)] if n in index]
    thinker_name = next(n for n in components if n in THINKER_NAMES)
    both = config.stage in ("sep_grpo", "dual_grpo")
    trains = {"thinker": config.stage.startswith("thinker_") or both, "DiT": config.is_dit or both}
    sharded = config.parallel.strategy == "fsdp"
    split = gpus if sharded else 1
    compute = 2 if config.run.mixed_precision == "bf16" else 4
    result = MemoryPlan(gpus, gpu_memory_gib)
    activations = []
    for kind, name in (("thinker", thinker_name), ("DiT", "transformer")):
        if not trains[kind]:
            continue
        trained = empty_model(folder, index, name)
        lora = config.lora.rank and (kind == "DiT" or not config.stage.endswith("grpo"))  # RL: adapters on the DiT
        _choose(trained, config, kind == "thinker", lora)
        learning = _count(trained, trainable=True)
        bridge = 0 if kind == "thinker" or "bridge" not in components or lora else _count(empty_model(folder, index, "bridge"))
        learning += bridge  # VGI-refine's bridge trains with the DiT
        frozen_inside = _count(trained, trainable=False)  # LoRA's base weights: kept in the compute dtype
        if lora:
            result.rows.append((f"{kind} base weights (frozen)" + (" (sharded)" if sharded else ""),
                                compute * frozen_inside // split))
            frozen_inside = 0
        result.rows.append((f"{kind} weights, fp32 master" + (" (sharded)" if sharded else ""),
                            4 * (_count(trained, trainable=True) + frozen_inside + bridge) // split))
        result.rows.append((f"{kind} gradients, fp32 ({learning / 1e6:,.1f}M trained)", 4 * learning // split))
        result.rows.append((f"{kind} AdamW states, fp32", 8 * learning // split))
        if config.ema_decay:
            result.rows.append((f"{kind} EMA, fp32", 4 * learning // split))
        blocks = _blocks(trained)
        if sharded and blocks:
            result.rows.append((f"{kind}: two gathered blocks", 2 * max(_count(b) for b in blocks) * compute))
        vae = empty_model(folder, index, "vae") if kind == "DiT" else None
        activations.append(_activations(trained, vae, config, gpus, compute, len(blocks)))
        if kind == "thinker" and config.stage.endswith("grpo") and config.rl.beta:
            result.rows.append(("reference thinker for rl.beta (frozen, whole)", _count(trained) * compute))
    # a thinker SFT reads only the thinker; every other stage keeps what does not train, frozen, whole
    sft = config.stage.startswith("thinker_") and not config.stage.endswith("grpo")
    trained_names = {thinker_name} if trains["thinker"] else set()
    trained_names |= {"transformer", "bridge"} if trains["DiT"] else set()
    for name in [] if sft else [n for n in components if n not in trained_names]:
        result.rows.append((f"{name} (frozen, whole)", _count(empty_model(folder, index, name)) * compute))
    # the thinker's and the DiT's losses back up in separate micro-batches: the larger one counts
    result.rows.append(("activations", max(activations)))
    if not sharded and gpus > 1:
        result.notes.append("ddp keeps a whole copy of the model, gradients and AdamW states on every GPU")
    return result


def _choose(model: nn.Module, config: TrainConfig, trains_thinker: bool, lora: bool) -> None:
    """What trains, as the stage chooses it (on the meta model)."""
    from ..lora import add_lora
    from .dit_dataset_stage import TEXT_INPUT

    if lora:
        if trains_thinker:
            from peft import LoraConfig, inject_adapter_in_model

            from .chat_stage import THINKER_TARGETS

            model.requires_grad_(False)
            inject_adapter_in_model(LoraConfig(r=config.lora.rank, target_modules=config.lora.targets or THINKER_TARGETS),
                                    model)
        else:
            add_lora(model, config.lora.rank, config.lora.alpha, config.lora.targets)
    elif config.stage == "dit_connector" and not trains_thinker:
        model.requires_grad_(False)
        for name in TEXT_INPUT.get(type(model).__name__, ()):
            part = model.get_parameter(name) if name == "prepad_embed" else model.get_submodule(name)
            part.requires_grad_(True)
    else:
        model.requires_grad_(True)


def _activations(model: nn.Module, vae: nn.Module | None, config: TrainConfig, gpus: int, compute: int,
                 blocks: int) -> int:
    from ..generator import backend_for, patch_size, spatial_factor

    samples = config.run.batch_size // gpus
    rl, rl_stage = config.rl, config.stage.endswith("grpo")
    if vae is not None and rl_stage:  # one micro-batch at a time: the process's prompts' K images (J K in
        traces = rl.num_generations if config.stage == "dual_grpo" else 1  # dual), at one step, with CFG's negative
        samples *= traces * rl.images_per_prompt * (2 if rl.flow_cfg else 1)
    elif rl_stage:  # G traces per prompt: the prompt and up to max_completion_length sampled tokens
        samples *= rl.num_generations
    width = _width(model)
    if vae is None:  # a thinker: text tokens, and the logits over the vocabulary
        tokens = config.data.max_length + (rl.max_completion_length or 1024 if rl_stage else 0)
        vocab = getattr(model.config, "text_config", model.config).vocab_size
        logits = samples * tokens * vocab * 4 * 2  # fp32 logits and their log-softmax
    else:  # a DiT: the largest bucket's image tokens and the text tokens
        factor = spatial_factor(vae) * patch_size(backend_for(model).in_channels, vae)
        tokens = (config.dataset.resolution // factor) ** 2 + config.data.max_length
        logits = 0
    per_block = samples * tokens * width * compute
    if config.run.gradient_checkpointing:  # each block's input kept, one block recomputed at a time
        return per_block * blocks + per_block * ACTIVATION_WIDTHS + logits
    return per_block * ACTIVATION_WIDTHS * blocks + logits


def plan_table(config: TrainConfig, gpus: int, gpu_memory_gib: float) -> tuple[str, bool]:
    result = plan(config, gpus, gpu_memory_gib)
    header = (f"{config.stage} from {config.init}: {config.parallel.strategy}, mixed precision "
              f"{config.run.mixed_precision}, gradient checkpointing {'on' if config.run.gradient_checkpointing else 'off'}"
              f", LoRA {'rank ' + str(config.lora.rank) if config.lora.rank else 'off'}, global batch {config.run.batch_size}")
    return header + "\n" + result.table(), result.fits

