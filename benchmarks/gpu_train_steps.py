"""One training step per shipped real config (``configs/real/train/*.yaml``), layers cut to fit one GPU.

The trained model of each config (the DiT, or the thinker for thinker SFT) is built at its released
width from the config's ``init`` folder, with only ``layers`` of its blocks, random weights in fp32
(the master weights), LoRA adapters and gradient checkpointing as the config says. One step is
forward + backward + AdamW on random inputs of the config's shapes (image tokens of
``dataset.resolution``, ``data.max_length`` text tokens, ``run.batch_size / 8`` samples: one GPU's
share of 8), under bf16 autocast when ``run.mixed_precision: bf16``. Reports the time of the second
step, the share of the model's blocks kept, and the peak accelerator memory.

Called by ``gpu_real_scale.py``; ``--tiny`` replaces each ``init`` by a tiny folder of the same layout
and the shapes by a smoke run's (:data:`TINY`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LAYER_KEYS = ("num_layers", "num_hidden_layers")


def _cut(model_class, config: dict, layers: int) -> tuple[dict, int]:
    """The config with at most ``layers`` blocks (and refiner blocks); returns it and the original count."""
    config = dict(config)
    total = 0
    for key in LAYER_KEYS:
        if key in config:
            total = config[key]
            config[key] = min(layers, config[key])
    if "num_refiner_layers" in config:
        config["num_refiner_layers"] = min(1, config["num_refiner_layers"])
    return config, total


def build_cut(folder: Path, name: str, layers: int, device: str) -> tuple[torch.nn.Module, int]:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, PreTrainedModel

    from thinkgen.loading import component_class, read_index

    klass = component_class(read_index(folder), name)
    with init_empty_weights(include_buffers=False):
        if issubclass(klass, PreTrainedModel):
            config = AutoConfig.from_pretrained(folder / name, local_files_only=True)
            text = getattr(config, "text_config", config)
            total = text.num_hidden_layers
            text.num_hidden_layers = min(layers, total)
            if hasattr(config, "vision_config"):
                config.vision_config.depth = min(layers, config.vision_config.depth)
            model = klass._from_config(config)
        else:
            config, total = _cut(klass, dict(klass.load_config(folder / name)), layers)
            model = klass.from_config(config)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.fill_(1.0) if ("norm" in pname and p.dim() == 1) else p.normal_(0, 0.02)
    return model.float().train(), total


TINY = {"dataset.resolution": 32, "data.max_length": 16, "run.batch_size": 8}  # a smoke run's shapes


def step_time(config_path: Path, device: str, layers: int, init: Path | None = None) -> str:
    from thinkgen.generator import backend_for, latent_channels, patch_size, spatial_factor
    from thinkgen.loading import read_index
    from thinkgen.lora import add_lora
    from thinkgen.memory import empty_model
    from thinkgen.train import config as C
    from thinkgen.train.loop import enable_gradient_checkpointing

    overrides = {"init": str(init), **TINY} if init is not None else {}
    cfg = C.load(config_path, overrides)
    folder = Path(cfg.init)
    index = read_index(folder)
    thinker = cfg.stage.startswith("thinker_")
    name = next(n for n in ("thinker", "text_encoder", "mllm") if n in index) if thinker else "transformer"
    model, total = build_cut(folder, name, layers, device)
    if cfg.lora.rank and not thinker:
        add_lora(model, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets)
    if cfg.run.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-6)
    batch = max(1, cfg.run.batch_size // 8)
    if thinker:
        vocab = getattr(model.config, "text_config", model.config).vocab_size
        ids = torch.randint(0, vocab, (batch, cfg.data.max_length), device=device)

        def forward() -> torch.Tensor:
            return model(input_ids=ids, labels=ids).loss
    else:
        vae = empty_model(folder, index, "vae")
        backend = backend_for(model)
        p = patch_size(backend.in_channels, vae)
        side = cfg.dataset.resolution // (spatial_factor(vae) * p)
        tokens = torch.randn(batch, side * side, latent_channels(vae) * p * p, device=device)
        text = torch.randn(batch, cfg.data.max_length, backend.text_channels, device=device)
        mask = torch.ones(batch, cfg.data.max_length, dtype=torch.long, device=device)
        sigma = torch.full((batch,), 0.5, device=device)

        def forward() -> torch.Tensor:
            return backend(tokens, sigma, text, mask, (side, side)).float().pow(2).mean()

    autocast = (torch.autocast(device.split(":")[0], dtype=torch.bfloat16) if cfg.run.mixed_precision == "bf16"
                else contextlib.nullcontext())
    cuda = device.startswith("cuda")
    seconds = 0.0
    for attempt in range(2):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with autocast:
            loss = forward()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start if attempt else seconds
    peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    kept = min(layers, total)
    return f"{seconds:8.3f} s ({kept} of {total} blocks, {batch} samples{peak})"


def rows(device: str, tiny: bool, layers: int = 2) -> list[tuple[str, str]]:
    """``(config name, timing)`` for every shipped real training config."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        inits = {}
        if tiny:  # tiny folders of the same layouts stand in for the released ones
            from diffusers import QwenImagePipeline

            from thinkgen.tiny import tiny_qwen_image, tiny_thinkgen_release

            QwenImagePipeline(**tiny_qwen_image()).save_pretrained(Path(tmp) / "t2g")
            tiny_thinkgen_release().save_pretrained(Path(tmp) / "thinkgen")
            inits = {"t2g": Path(tmp) / "t2g", "thinkgen": Path(tmp) / "thinkgen"}
        for path in sorted((ROOT / "configs" / "real" / "train").glob("*.yaml")):
            family = path.stem.split("_")[0]
            init = inits.get(family) if tiny else None
            out.append((f"train step {path.stem}", step_time(path, device, layers, init)))
    return out
