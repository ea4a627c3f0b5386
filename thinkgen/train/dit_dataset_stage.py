"""DiT stages 1-3 on your own captioned images, from any pipeline folder thinkgen loads.

``init`` is a thinkgen folder, a T2G / diffusers ``QwenImagePipeline`` folder or a ThinkGen release
folder; the result is saved back in the same layout (a finetuned T2G folder loads in diffusers'
``QwenImagePipeline``). What trains:

* ``dit_connector``: the bridge (``thinkgen``), or the DiT's text input (the ThinkGen release's
  prepadding and caption embedder; Qwen-Image's ``txt_norm`` and ``txt_in``);
* ``dit_pretrain`` / ``dit_finetune``: the whole DiT (and the bridge), or LoRA adapters (``lora``).

Each step reads its rows (:class:`thinkgen.data.BucketBatches`: one aspect-ratio bucket per step;
with ``dataset.streaming`` the batches a shuffled stream makes, :mod:`thinkgen.data.streamed`),
runs the frozen thinker on their captions (:class:`FrozenStates`, optionally cached on disk),
encodes the images with the frozen VAE, and trains the rectified-flow loss. Nothing is computed up
front, so memory is that of a batch whatever the dataset's size. Every batch is a pure function of
``(seed, step)``: caption dropout, timesteps and noise of example ``i`` come from a generator
seeded with ``(seed, step, i)``, so any split over processes sees the same global batch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from PIL import Image

from .. import flow
from ..data import BucketBatches, CaptionedImages, DataError, bucket_sizes, to_pixels
from ..data.streamed import StreamedImages
from ..generator import encode_images, latent_channels, patchify, spatial_factor
from ..loading import MODEL_INDEX, MODULES, stored_dtype
from ..lora import add_lora, load_lora, merge_lora, save_lora
from ..pipeline import ThinkGenPipeline
from .config import TrainConfig
from .dit_stage import FlowModule
from .states import TRAINABLE_BRIDGE, FrozenStates

# the DiT's own text input, per class: what stage 1 trains when there is no thinkgen bridge
TEXT_INPUT = {"ThinkGenTransformer2DModel": ("prepad_embed", "time_caption_embed.caption_embedder"),
              "QwenImageTransformer2DModel": ("txt_norm", "txt_in")}
ADAPTER_INFO = "adapter.json"
THINKER_FOLDERS = ("thinker", "text_encoder", "mllm")  # where each layout keeps its thinker


def load_for_training(config: TrainConfig) -> tuple[ThinkGenPipeline, torch.nn.Module | None]:
    """The pipeline of ``config.init`` ready for a DiT stage: the frozen thinker and VAE in the compute
    dtype, the DiT (and the ``thinkgen`` bridge, returned, else None) in fp32, the master weights;
    with ``lora`` the DiT frozen but for its adapters, its base weights in the compute dtype."""
    compute = torch.bfloat16 if config.run.mixed_precision == "bf16" else torch.float32
    pipe = ThinkGenPipeline.from_pretrained(config.init, torch_dtype=compute)
    bridge = pipe.bridge if pipe.conditioning.name in TRAINABLE_BRIDGE else None
    pipe.thinker.model.requires_grad_(False).eval()
    pipe.vae.requires_grad_(False).eval()
    pipe.transformer.float().requires_grad_(True)
    if bridge is not None:  # it trains with the DiT, except under LoRA (the adapters are all that is saved)
        bridge.requires_grad_(not config.lora.rank)
        if not config.lora.rank:
            bridge.float()
    if config.lora.rank:
        add_lora(pipe.transformer, config.lora.rank, config.lora.alpha, config.lora.targets, seed=config.run.seed)
        for parameter in pipe.transformer.parameters():  # no fp32 master copy of what does not train
            if not parameter.requires_grad:
                parameter.data = parameter.data.to(compute)
    return pipe, bridge


class DatasetDiTStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        pipe, self.bridge = load_for_training(config)
        self.pipe = pipe
        if config.stage == "dit_connector" and not config.lora.rank:  # only the text input trains
            pipe.transformer.requires_grad_(False)
            if self.bridge is None:  # the DiT's own text input
                for name in TEXT_INPUT[type(pipe.transformer).__name__]:
                    part = (pipe.transformer.get_parameter(name) if name == "prepad_embed"
                            else pipe.transformer.get_submodule(name))
                    part.requires_grad_(True)
        data = config.dataset
        sizes = bucket_sizes(data.resolution, pipe.multiple, data.buckets)
        if data.streaming:  # batches in the order the stream makes them
            self.data = StreamedImages(data.path, sizes, config.run.batch_size, config.run.seed, data.caption_column,
                                       data.max_image_pixels, data.shuffle_buffer)
            self.batches = lambda step, size: self.data.batches(step)
        else:  # random access: batches drawn by (seed, step)
            self.data = CaptionedImages(data.path, data.caption_column, data.max_image_pixels)
            self.batches = BucketBatches(self.data, sizes, config.run.seed)
        self.states = FrozenStates(pipe, config.dataset.state_cache)
        self.model = FlowModule(self.bridge, pipe.transformer, pipe.token_grid(sizes[0][0], sizes[0][1]))

    def place(self, device: torch.device) -> None:
        """The frozen thinker and VAE compute where the trained DiT does."""
        self.pipe.thinker.model.to(device)
        self.pipe.vae.to(device)

    # ------------------------------------------------------------------ batches
    def batch(self, step: int, start: int, size: int) -> dict:
        cfg = self.config
        (height, width), rows = self.batches(step, cfg.run.batch_size)
        rows = rows[start : start + size]
        captions, sigmas, noises = [], [], []
        factor = spatial_factor(self.pipe.vae)
        shape = (latent_channels(self.pipe.vae), height // factor, width // factor)
        for offset, row in enumerate(rows):
            caption = self.data.caption(row)
            self.states.check(caption, self.data.where(row))
            g = torch.Generator().manual_seed(hash((cfg.run.seed, step, start + offset)) & 0x7FFFFFFF)
            drop = torch.rand((), generator=g).item() < cfg.data.caption_dropout
            captions.append("" if drop else caption)
            sigmas.append(flow.sample_timesteps(1, cfg.data.timesteps, cfg.data.timestep_shift, generator=g))
            noises.append(torch.randn(*shape, generator=g))
        references = [self.data.references(row) for row in rows]  # a bucket's rows bring as many
        edit = bool(references[0])
        if len(references[0]) > self.pipe.max_source_images:
            raise DataError(f"{self.data.where(rows[0])}: {len(references[0])} reference images; this model takes "
                            f"at most {self.pipe.max_source_images} per edit")
        # a thinker that sees reads an edit's instruction with its source images, as `thinkgen edit` does
        seen = references if edit and self.pipe.thinker.processor is not None else None
        states, mask = self.states(captions, seen)
        x0 = self._latents([self.data.image(row) for row in rows], height, width)
        patch = self.pipe.patch
        batch = {"states": states, "mask": mask, "sigma": torch.cat(sigmas), "x0": patchify(x0, patch),
                 "noise": patchify(torch.stack(noises), patch), "grid": self.pipe.token_grid(height, width)}
        if edit:  # (B, K, N, C p p): each source image resized to the target's size, as `thinkgen edit` does
            batch["reference"] = torch.stack([patchify(self._latents(list(slot), height, width), patch)
                                              for slot in zip(*references, strict=True)], dim=1)
        return batch

    def _latents(self, images: list[Image.Image], height: int, width: int) -> torch.Tensor:
        vae = self.pipe.vae
        pixels = to_pixels(images, height, width, self.pipe.multiple)  # (B, 3, H, W) in [-1, 1]
        with torch.no_grad():
            return encode_images(vae, pixels.to(vae.device, vae.dtype)).float()  # (B, C, h, w)

    # ------------------------------------------------------------------ saving
    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        save_result(self.pipe, self.model, self.config, directory, ema)


def save_result(pipe: ThinkGenPipeline, model: torch.nn.Module, config: TrainConfig, directory: Path,
                ema: dict[str, torch.Tensor] | None, thinker: bool = False, dit: bool = True) -> None:
    """What a stage writes, aside first and renamed into place, so an interrupted save never leaves
    a half-written model: LoRA adapters (diffusers format; with ``lora.merge`` also the merged
    pipeline), or the pipeline in the layout of ``config.init``. The components that trained
    (``thinker``, ``dit``: the DiT and its bridge) are stored in the dtypes init stored them in; the
    others are init's own files, linked (the frozen ones were held in the compute dtype)."""
    from .chat_stage import _link_or_copy
    from .loop import load_ema

    init = Path(config.init)
    load_ema(model, ema)
    temporary = directory.parent / f".{directory.name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    if config.lora.rank:
        save_lora(pipe.transformer, temporary)
        (temporary / ADAPTER_INFO).write_text(json.dumps({"base": str(init.resolve())}, indent=2) + "\n")
        if config.lora.merge or thinker:  # a whole pipeline too: the adapters folded in, or a trained thinker
            whole = ThinkGenPipeline.from_pretrained(init)
            if config.lora.merge:
                load_lora(whole.transformer, temporary)
                merge_lora(whole.transformer)
            if thinker:
                whole.thinker.model.load_state_dict(pipe.thinker.model.state_dict())
            whole.save_pretrained(temporary)
            dit = config.lora.merge  # unmerged, the DiT is init's and its adapters sit beside it
    else:
        pipe.save_pretrained(temporary)
    if (temporary / MODEL_INDEX).exists():
        trained = set(THINKER_FOLDERS if thinker else ()) | set(("transformer", "bridge") if dit else ())
        for name in MODULES:
            if not ((init / name).is_dir() and (temporary / name).is_dir()):
                continue
            if name in trained:
                _cast_folder(temporary / name, stored_dtype(init / name))
            else:
                shutil.rmtree(temporary / name)
                shutil.copytree(init / name, temporary / name, copy_function=_link_or_copy)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(temporary, directory)


def _cast_folder(folder: Path, dtype: torch.dtype) -> None:
    """Store a saved component's floating-point weights in ``dtype`` (the dtype its source stored)."""
    from safetensors.torch import load_file, save_file

    for file in sorted(folder.glob("*.safetensors")):
        tensors = load_file(file)
        if all(t.dtype == dtype or not t.is_floating_point() for t in tensors.values()):
            continue
        save_file({k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}, file,
                  metadata={"format": "pt"})

