"""LoRA adapters on a DiT through peft, saved and read in diffusers' LoRA format.

The adapters are added with diffusers' own ``add_adapter`` (both DiT classes carry
``PeftAdapterMixin``), saved as ``pytorch_lora_weights.safetensors`` with diffusers' key names
(``transformer.<module>.lora_A.weight``), so ``QwenImagePipeline.load_lora_weights`` reads an
adapter thinkgen trained, and :func:`load_lora` reads the Qwen-Image LoRAs the community
publishes (diffusers converts their other key layouts). ``merge`` folds them into the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# the attention projections, as diffusers' Qwen-Image LoRA scripts adapt them; both DiTs name them so
DEFAULT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def add_lora(transformer: nn.Module, rank: int, alpha: float | None = None,
             targets: list[str] | None = None, seed: int = 0) -> None:
    """Freeze ``transformer`` and add trainable rank-``rank`` adapters (B starts at zero, so the
    model starts exactly as it was; A is drawn from ``seed``, the same in every process)."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank,
                                           target_modules=targets or DEFAULT_TARGETS))


def save_lora(transformer: nn.Module, directory: Path) -> None:
    """Write the adapters in diffusers' format (``transformer.``-prefixed peft keys, safetensors)."""
    from diffusers.loaders import QwenImageLoraLoaderMixin
    from peft.utils import get_peft_model_state_dict

    layers = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(transformer).items()}
    QwenImageLoraLoaderMixin.save_lora_weights(directory, transformer_lora_layers=layers, weight_name=WEIGHT_NAME)


def load_lora(transformer: nn.Module, path: str | Path, adapter_name: str | None = None) -> None:
    """Read a diffusers-format (or community-format) Qwen-Image LoRA file or folder into ``transformer``."""
    from diffusers.loaders import QwenImageLoraLoaderMixin

    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: LoRA weights are read from safetensors only")
        state = QwenImageLoraLoaderMixin.lora_state_dict(str(path.parent), weight_name=path.name,
                                                         local_files_only=True, use_safetensors=True)
    elif path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ValueError(f"{path}: no .safetensors LoRA file")
        name = WEIGHT_NAME if (path / WEIGHT_NAME).exists() else files[0].name
        state = QwenImageLoraLoaderMixin.lora_state_dict(str(path), weight_name=name, local_files_only=True,
                                                         use_safetensors=True)
    else:
        raise ValueError(f"LoRA not found: {path}")
    transformer.load_lora_adapter(state, prefix="transformer", adapter_name=adapter_name)


def merge_lora(transformer: nn.Module) -> None:
    """Fold the adapters into the base weights and remove them (the model is then plain again)."""
    transformer.fuse_lora()
    transformer.unload_lora()
