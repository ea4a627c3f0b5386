"""Parameters and weight memory per component, from the configs alone (nothing is loaded).

Each model component of a folder (any layout :mod:`thinkgen.loading` reads) is built on the meta
device with accelerate's ``init_empty_weights``, so a 20B-parameter DiT costs no memory to count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .loading import PipelineLoadError, component_class, layout_of, read_index

MODEL_COMPONENTS = {"thinkgen": ("thinker", "bridge", "transformer", "vae"),
                    "qwen-image": ("text_encoder", "transformer", "vae"),
                    "thinkgen-release": ("mllm", "transformer", "vae")}


@dataclass
class ComponentSize:
    name: str
    class_name: str
    parameters: int

    def bytes(self, dtype: torch.dtype) -> int:
        return self.parameters * torch.empty((), dtype=dtype).element_size()


def empty_model(directory: Path, index: dict, name: str) -> torch.nn.Module:
    """Component ``name`` of a folder, built from its config on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, PreTrainedModel

    from .loading import check_component_files

    klass = component_class(index, name)
    folder = directory / name
    check_component_files(folder)  # file sizes and config sizes before anything is built
    try:
        with init_empty_weights():
            if issubclass(klass, PreTrainedModel):
                return klass._from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
            return klass.from_config(klass.load_config(folder))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise PipelineLoadError(f"cannot build {name} from {folder}: {error}") from None


def component_sizes(directory: str | Path) -> list[ComponentSize]:
    directory = Path(directory)
    index = read_index(directory)
    sizes = []
    for name in MODEL_COMPONENTS[layout_of(index)]:
        if name not in index:
            continue
        model = empty_model(directory, index, name)
        sizes.append(ComponentSize(name, type(model).__name__, sum(p.numel() for p in model.parameters())))
    return sizes


def memory_table(directory: str | Path, dtype: torch.dtype = torch.bfloat16) -> str:
    """A plain-text table: component, class, parameters, weight memory in ``dtype``."""
    sizes = component_sizes(directory)
    gib = 1024**3
    lines = [f"{'component':<14}{'class':<40}{'parameters':>16}{str(dtype).removeprefix('torch.'):>12}"]
    for size in sizes:
        lines.append(f"{size.name:<14}{size.class_name:<40}{size.parameters / 1e9:>15.3f}B"
                     f"{size.bytes(dtype) / gib:>8.2f} GiB")
    total = sum(s.parameters for s in sizes)
    largest = max((s.bytes(dtype) for s in sizes), default=0)
    lines.append(f"{'total':<14}{'':<40}{total / 1e9:>15.3f}B{sum(s.bytes(dtype) for s in sizes) / gib:>8.2f} GiB")
    lines.append(f"{'model offload':<14}{'(largest component on the accelerator)':<40}{'':>16}{largest / gib:>8.2f} GiB")
    return "\n".join(lines)
