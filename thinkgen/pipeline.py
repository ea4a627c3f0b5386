"""ThinkGenPipeline: prompt (+ images) -> thinker -> bridge -> DiT + rectified flow -> images.

A saved pipeline is a folder in Hugging Face layout, one subfolder per component::

    model_index.json      component classes + thinker settings + sampling defaults
    thinker/              transformers model (config.json, model.safetensors)
    tokenizer/ | processor/
    bridge/               thinkgen Bridge (config.json, diffusion_pytorch_model.safetensors)
    transformer/          diffusers transformer
    vae/                  diffusers autoencoder or thinkgen PixelAutoencoder
    scheduler/            FlowMatchEulerDiscreteScheduler config

Loading only ever instantiates classes from transformers, diffusers or thinkgen, only from local
files, and only from safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from . import flow
from .bridge import Bridge
from .generator import (
    Reference,
    backend_for,
    decode_latents,
    encode_images,
    latent_channels,
    patch_size,
    patchify,
    spatial_factor,
    unpatchify,
)
from .thinker import Thinker, ThinkerConfig, ThinkerOutput, load_processor, save_processor

MODEL_INDEX = "model_index.json"


class PipelineLoadError(Exception):
    """A pipeline folder is missing, incomplete or unreadable."""


@dataclass
class ThinkGenOutput:
    images: list[Image.Image] | torch.Tensor  # PIL images, or (N, 3, H, W) in [0, 1] for "pt"
    reasoning: list[str]  # per image
    rewritten: list[str]  # per image
    thinker: ThinkerOutput | None = field(default=None, repr=False)


def _to_pil(images: torch.Tensor) -> list[Image.Image]:
    array = (images.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in array]


def _pil_to_tensor(image: Image.Image, height: int, width: int) -> torch.Tensor:
    image = image.convert("RGB").resize((width, height), Image.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1)
    return array.permute(2, 0, 1)  # (3, H, W) in [-1, 1]


def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad dim 1 with zeros (states (B, T, D) or masks (B, T))."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros(x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, pad], dim=1)


class ThinkGenPipeline:
    """Think, then draw. Build it from components, or with :meth:`from_pretrained`."""

    def __init__(self, thinker: Thinker, bridge: Bridge, transformer: torch.nn.Module,
                 vae: torch.nn.Module, scheduler: FlowMatchEulerDiscreteScheduler,
                 defaults: dict[str, Any] | None = None) -> None:
        self.thinker, self.bridge, self.transformer = thinker, bridge, transformer
        self.vae, self.scheduler = vae, scheduler
        self.backend = backend_for(transformer)
        self.patch = patch_size(self.backend.in_channels, vae)
        if bridge.config.in_channels != thinker.state_dim:
            raise ValueError(f"bridge expects {bridge.config.in_channels} channels, thinker gives {thinker.state_dim}")
        if bridge.config.out_channels != self.backend.text_channels:
            raise ValueError(f"bridge gives {bridge.config.out_channels} channels, DiT expects {self.backend.text_channels}")
        self.defaults = {"height": 32, "width": 32, "num_inference_steps": 20, "guidance_scale": 4.0,
                         "image_guidance_scale": 2.0, **(defaults or {})}

    # ------------------------------------------------------------------ components
    @property
    def components(self) -> dict[str, Any]:
        parts = {"thinker": self.thinker.model}
        if self.thinker.processor is not None:
            parts["processor"] = self.thinker.processor
        else:
            parts["tokenizer"] = self.thinker.tokenizer
        parts.update(bridge=self.bridge, transformer=self.transformer, vae=self.vae, scheduler=self.scheduler)
        return parts

    def to(self, device: str | torch.device) -> ThinkGenPipeline:
        for module in (self.thinker.model, self.bridge, self.transformer, self.vae):
            module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def multiple(self) -> int:
        """Heights and widths must be multiples of this (autoencoder factor x patch size)."""
        return spatial_factor(self.vae) * self.patch

    # ------------------------------------------------------------------ saving and loading
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {"_class_name": type(self).__name__}
        for name, component in self.components.items():
            module = type(component).__module__.split(".")[0]
            index[name] = [module, type(component).__name__]
            if isinstance(component, torch.nn.Module):
                component.save_pretrained(directory / name, safe_serialization=True)
            elif name == "processor":
                save_processor(component, directory / name)
            else:  # tokenizer, processor, scheduler: JSON and tokenizer files
                component.save_pretrained(directory / name)
        index["thinker_config"] = self.thinker.config.to_dict()
        index["defaults"] = self.defaults
        (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, torch_dtype: torch.dtype | None = None) -> ThinkGenPipeline:
        """Load a folder written by :meth:`save_pretrained` (local files only)."""
        import diffusers
        import transformers

        from . import bridge as bridge_module
        from . import generator as generator_module

        directory = Path(directory)
        if not directory.is_dir():
            raise PipelineLoadError(f"model folder not found: {directory}")
        try:
            index = json.loads((directory / MODEL_INDEX).read_text())
        except FileNotFoundError:
            raise PipelineLoadError(f"{directory} is not a thinkgen pipeline (no {MODEL_INDEX})") from None
        except json.JSONDecodeError as error:
            raise PipelineLoadError(f"{directory / MODEL_INDEX} is not valid JSON: {error}") from None
        libraries = {"transformers": transformers, "diffusers": diffusers,
                     "thinkgen": (bridge_module, generator_module)}
        missing = {"thinker", "bridge", "transformer", "vae", "scheduler"} - set(index)
        if missing or not ({"tokenizer", "processor"} & set(index)):
            raise PipelineLoadError(f"{directory} lacks components: {sorted(missing) or ['tokenizer']}")
        loaded: dict[str, Any] = {}
        for name in ("thinker", "tokenizer", "processor", "bridge", "transformer", "vae", "scheduler"):
            if name not in index:
                continue
            try:
                library, class_name = index[name]
                owners = libraries[library]
                owners = owners if isinstance(owners, tuple) else (owners,)
                klass = next(getattr(o, class_name) for o in owners if hasattr(o, class_name))
            except (KeyError, ValueError, TypeError, StopIteration):
                raise PipelineLoadError(f"{MODEL_INDEX}: unsupported class for {name}: {index[name]!r}") from None
            kwargs: dict[str, Any] = {}
            if name == "thinker":
                kwargs = {"local_files_only": True, "dtype": torch_dtype or "auto"}
            elif name in ("tokenizer", "processor"):
                kwargs = {"local_files_only": True}
            elif name != "scheduler" and torch_dtype is not None:
                kwargs = {"torch_dtype": torch_dtype}
            try:
                if name == "processor":
                    loaded[name] = load_processor(klass, directory / name)
                else:
                    loaded[name] = klass.from_pretrained(directory / name, **kwargs)
            except Exception as error:  # any library's own error: report which component broke
                raise PipelineLoadError(f"cannot load {name} from {directory / name}: {error}") from error
        for module in ("thinker", "bridge", "transformer", "vae"):
            loaded[module].eval()
        thinker = Thinker(loaded["thinker"], tokenizer=loaded.get("tokenizer"),
                          processor=loaded.get("processor"),
                          config=ThinkerConfig(**index.get("thinker_config", {})))
        return cls(thinker, loaded["bridge"], loaded["transformer"], loaded["vae"], loaded["scheduler"],
                   defaults=index.get("defaults"))

    # ------------------------------------------------------------------ conditioning
    def condition(self, thinker_output: ThinkerOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Thinker states -> DiT text states and mask, through VGI-refine."""
        states = thinker_output.states.to(self.device, self.bridge.dtype)
        return self.bridge(states, thinker_output.mask.to(self.device))

    def unconditional(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The 'no prompt' condition for CFG: the pseudo-CoT encoding of an empty prompt."""
        if getattr(self, "_null_thought", None) is None:  # the thinker is frozen at inference
            self._null_thought = self.thinker.encode([""], think=False)
        text, mask = self.condition(self._null_thought)
        return text.expand(batch, -1, -1), mask.expand(batch, -1)

    def check_size(self, height: int, width: int) -> None:
        m = self.multiple
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % m:
                raise ValueError(f"{name} must be a positive multiple of {m}, got {value}")

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(self, prompts: str | list[str], think: bool = True,
                 images: list[list[Image.Image]] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 image_guidance_scale: float | None = None, seed: int = 0,
                 height: int | None = None, width: int | None = None,
                 num_images_per_prompt: int = 1, output_type: str = "pil",
                 progress: bool = False) -> ThinkGenOutput:
        """Generate images; noise of image ``i`` comes from ``seed + i``, so results don't depend
        on the batch they were drawn in (up to float rounding)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        height = self.defaults["height"] if height is None else height
        width = self.defaults["width"] if width is None else width
        steps = self.defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        cfg = self.defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        image_cfg = self.defaults["image_guidance_scale"] if image_guidance_scale is None else image_guidance_scale
        self.check_size(height, width)
        if num_images_per_prompt < 1 or steps < 1:
            raise ValueError("num_images_per_prompt and num_inference_steps must be >= 1")
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")

        thinker_images = images if self.thinker.processor is not None else None
        thought = self.thinker.encode(prompts, think=think, images=thinker_images, seed=seed)
        text, text_mask = self.condition(thought)  # (P, L, D), (P, L)
        repeat = num_images_per_prompt
        text, text_mask = text.repeat_interleave(repeat, 0), text_mask.repeat_interleave(repeat, 0)
        batch = text.shape[0]

        grid = self.token_grid(height, width)
        x = self.initial_noise([seed + i for i in range(batch)], height, width)  # (B, N, C p p)
        reference = None
        if images is not None:
            reference = self.reference([group[0] for group in images], height, width)
            reference = Reference(reference.tokens.repeat_interleave(repeat, 0), grid)

        velocity = self.guided_velocity(text, text_mask, grid, reference, cfg, image_cfg)
        x = flow.euler_sample(velocity, x, self.sigmas(steps, grid), progress=progress)
        pixels = self.decode(x, height, width)  # (B, 3, H, W) in [0, 1]
        reasoning = [r for r in thought.reasoning for _ in range(repeat)]
        rewritten = [r for r in thought.rewritten for _ in range(repeat)]
        out_images = _to_pil(pixels) if output_type == "pil" else pixels.cpu()
        return ThinkGenOutput(out_images, reasoning, rewritten, thought)

    # ------------------------------------------------------------------ the pieces of one generation
    # (``__call__`` chains them; reinforcement learning uses them one by one)
    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The DiT's token grid for an image size."""
        factor = spatial_factor(self.vae) * self.patch
        return height // factor, width // factor

    def initial_noise(self, seeds: list[int], height: int, width: int) -> torch.Tensor:
        """Patchified Gaussian noise, image ``i`` drawn from its own ``seeds[i]``: (B, N, C p p)."""
        factor = spatial_factor(self.vae)
        h, w = height // factor, width // factor  # latent grid
        noise = torch.stack([
            torch.randn(latent_channels(self.vae), h, w, generator=torch.Generator().manual_seed(seed))
            for seed in seeds
        ])  # (B, C, h, w)
        return patchify(noise, self.patch).to(self.device)

    def reference(self, images: list[Image.Image], height: int, width: int) -> Reference:
        """Reference images (one per sample) as DiT tokens, for editing."""
        pixels = torch.stack([_pil_to_tensor(image, height, width) for image in images])
        latents = encode_images(self.vae, pixels.to(self.device, self.vae.dtype))
        return Reference(patchify(latents.float(), self.patch), self.token_grid(height, width))

    def sigmas(self, steps: int, grid: tuple[int, int]) -> torch.Tensor:
        """The sampling schedule of the saved scheduler config, for this many tokens."""
        sched = self.scheduler.config
        mu = flow.resolution_mu(grid[0] * grid[1], sched.base_image_seq_len, sched.max_image_seq_len,
                                sched.base_shift, sched.max_shift) if sched.use_dynamic_shifting else None
        return flow.sigma_schedule(steps, shift=sched.shift, mu=mu).to(self.device)

    def decode(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Patchified latents (B, N, C p p) -> pixels (B, 3, H, W) in [0, 1]."""
        factor = spatial_factor(self.vae)
        latents = unpatchify(x, height // factor, width // factor, self.patch)
        pixels = decode_latents(self.vae, latents.to(self.vae.dtype))
        return ((pixels.float() + 1) / 2).clamp(0, 1)

    def guided_velocity(self, text: torch.Tensor, text_mask: torch.Tensor, grid: tuple[int, int],
                        reference: Reference | None = None, cfg: float = 1.0, image_cfg: float = 1.0,
                        backend: Any = None, null: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> flow.Velocity:
        """One batched transformer call per step: [cond, uncond(, uncond + reference)].

        ``backend`` and ``null`` (the unconditional text states and mask, (1, L, D) and (1, L))
        swap in other modules, e.g. a frozen reference copy during reinforcement learning.
        Gradients flow when the caller enables them."""
        backend = backend or self.backend
        batch = text.shape[0]
        branches = 1 if cfg == 1.0 else (3 if reference is not None and image_cfg != 1.0 else 2)
        texts, masks = [text], [text_mask]
        if branches > 1:
            null_text, null_mask = self.unconditional(batch) if null is None else (
                null[0].expand(batch, -1, -1), null[1].expand(batch, -1))
            length = max(text.shape[1], null_text.shape[1])
            texts = [_pad_to(text, length)] + [_pad_to(null_text, length)] * (branches - 1)
            masks = [_pad_to(text_mask, length)] + [_pad_to(null_mask, length)] * (branches - 1)
        all_text, all_mask = torch.cat(texts), torch.cat(masks)  # (k B, L, D), (k B, L)

        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            if branches == 3:  # editing: [cond, uncond + reference] see the image, uncond does not
                with_ref = Reference(reference.tokens.repeat(2, 1, 1), reference.grid)
                pick = torch.cat([torch.arange(batch), torch.arange(2 * batch, 3 * batch)])
                v_cond, v_image = backend(x.repeat(2, 1, 1), sigma.repeat(2), all_text[pick],
                                          all_mask[pick], grid, with_ref).chunk(2)
                v_uncond = backend(x, sigma, all_text[batch : 2 * batch],
                                   all_mask[batch : 2 * batch], grid)
                return flow.guide(v_cond, v_uncond, cfg, v_image, image_cfg)
            ref = None if reference is None else Reference(reference.tokens.repeat(branches, 1, 1), reference.grid)
            v = backend(x.repeat(branches, 1, 1), sigma.repeat(branches), all_text, all_mask,
                        grid, ref)  # (k B, N, C p p)
            if branches == 1:
                return v
            v_cond, v_uncond = v.chunk(2)
            return flow.guide(v_cond, v_uncond, cfg)

        return velocity
