"""ThinkGenPipeline: prompt (+ images) -> conditioning -> DiT + rectified flow -> images.

How prompts become DiT text states is a named strategy (:mod:`thinkgen.conditioning`), recorded
in ``model_index.json``: ``thinkgen`` (thinker + VGI-refine bridge), ``qwen-image`` (diffusers'
Qwen-Image encoding, with T2G's thinking) or ``thinkgen-release`` (the ThinkGen release's
conventions). The sigmas and every Euler step come from the saved diffusers scheduler itself,
unless a strategy reproduces a release's own scheduler. Folders are read and written by
:mod:`thinkgen.loading`: thinkgen's layout, a diffusers ``QwenImagePipeline`` folder (the T2G
release) and the ThinkGen release's layout, each unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from . import flow
from .bridge import Bridge
from .conditioning import Conditioning, build_conditioning
from .generator import (
    Reference,
    backend_for,
    decode_latents,
    latent_channels,
    patch_size,
    patchify,
    spatial_factor,
    unpatchify,
)
from .loading import MODEL_INDEX, PipelineLoadError, load_folder, save_folder  # noqa: F401 (re-exported)
from .thinker import Thinker, ThinkerOutput
from .validate import Limits


@dataclass
class ThinkGenOutput:
    images: list[Image.Image] | torch.Tensor  # PIL images, or (N, 3, H, W) in [0, 1] for "pt"
    reasoning: list[str]  # per image
    rewritten: list[str]  # per image
    thinker: ThinkerOutput | None = field(default=None, repr=False)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Pixels (N, 3, H, W) in [0, 1] -> PIL images, rounded as diffusers rounds them."""
    array = (images.detach().permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)  # as diffusers
    return [Image.fromarray(a) for a in array]


def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad dim 1 with zeros (states (B, T, D) or masks (B, T))."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros(x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, pad], dim=1)


class ThinkGenPipeline:
    """Think, then draw. Build it from components, or with :meth:`from_pretrained`.

    ``bridge`` is the VGI-refine module of the ``thinkgen`` conditioning (None for strategies
    without one, such as ``qwen-image``); ``conditioning`` is a strategy name (built from the
    thinker, the bridge and ``conditioning_settings``) or a built :class:`Conditioning`.
    """

    def __init__(self, thinker: Thinker, bridge: Bridge | None, transformer: torch.nn.Module,
                 vae: torch.nn.Module, scheduler: FlowMatchEulerDiscreteScheduler,
                 defaults: dict[str, Any] | None = None, conditioning: str | Conditioning = "thinkgen",
                 conditioning_settings: dict[str, Any] | None = None) -> None:
        self.thinker, self.bridge, self.transformer = thinker, bridge, transformer
        self.vae, self.scheduler = vae, scheduler
        self.backend = backend_for(transformer)
        self.patch = patch_size(self.backend.in_channels, vae)
        if isinstance(conditioning, str):
            conditioning = build_conditioning(conditioning, thinker, bridge, conditioning_settings)
        self.conditioning = conditioning
        if conditioning.text_channels != self.backend.text_channels:
            raise ValueError(f"the {conditioning.name!r} conditioning gives {conditioning.text_channels} "
                             f"channels, the DiT expects {self.backend.text_channels}")
        self.defaults = {"height": 32, "width": 32, "num_inference_steps": 20, "guidance_scale": 4.0,
                         "image_guidance_scale": 2.0, **(defaults or {})}
        self.limits = Limits()  # what one call may ask for (dataclasses.replace to raise max_pixels)
        self.offload_device: torch.device | None = None  # set by enable_*_cpu_offload
        self._hooks: list[Any] = []

    # ------------------------------------------------------------------ components
    @property
    def components(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"thinker": self.thinker.model}
        if self.thinker.processor is not None:
            parts["processor"] = self.thinker.processor
        else:
            parts["tokenizer"] = self.thinker.tokenizer
        if self.bridge is not None:
            parts["bridge"] = self.bridge
        parts.update(transformer=self.transformer, vae=self.vae, scheduler=self.scheduler)
        return parts

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return {k: v for k, v in self.components.items() if isinstance(v, torch.nn.Module)}

    def to(self, device: str | torch.device) -> ThinkGenPipeline:
        for module in self.modules.values():
            module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the computation runs (the accelerator when components are offloaded)."""
        if self.offload_device is not None:
            return self.offload_device
        return next(self.transformer.parameters()).device

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> ThinkGenPipeline:
        """Keep the components in CPU memory and move each to ``device`` when it runs, sending the
        one before it back (accelerate's hooks, chained thinker -> bridge -> transformer -> vae, as
        diffusers pipelines do): peak memory is about the largest component."""
        from accelerate import cpu_offload_with_hook

        self._remove_offload()
        hook = None
        self._hooks = []
        for module in self.modules.values():
            if next(module.parameters(), None) is None:  # e.g. the identity autoencoder: nothing to move
                module.to(device)
                continue
            module.to("cpu")
            _, hook = cpu_offload_with_hook(module, device, prev_module_hook=hook)
            self._hooks.append(hook)
        self._set_execution_device(torch.device(device))
        return self

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> ThinkGenPipeline:
        """Keep the weights in CPU memory and move each submodule's weights to ``device`` only for
        its own forward (accelerate's ``cpu_offload``): least memory, slowest."""
        from accelerate import cpu_offload

        self._remove_offload()
        for module in self.modules.values():
            module.to("cpu")
            cpu_offload(module, execution_device=device, offload_buffers=True)
        self._set_execution_device(torch.device(device))
        return self

    def enable_vae_tiling(self) -> ThinkGenPipeline:
        """Decode (and encode) large images tile by tile, where the autoencoder supports it
        (diffusers' ``AutoencoderKL`` and ``AutoencoderKLQwenImage`` do)."""
        if not hasattr(self.vae, "enable_tiling"):
            raise ValueError(f"{type(self.vae).__name__} has no tiled decoding")
        self.vae.enable_tiling()
        return self

    def enable_vae_slicing(self) -> ThinkGenPipeline:
        """Decode a batch one image at a time, where the autoencoder supports it."""
        if not hasattr(self.vae, "enable_slicing"):
            raise ValueError(f"{type(self.vae).__name__} has no sliced decoding")
        self.vae.enable_slicing()
        return self

    def _set_execution_device(self, device: torch.device | None) -> None:
        self.offload_device = device
        self.thinker.execution_device = device  # inputs go there, not where the weights rest

    def _remove_offload(self) -> None:
        from accelerate.hooks import remove_hook_from_module

        if self.offload_device is not None:
            for module in self.modules.values():
                remove_hook_from_module(module, recurse=True)
        self._hooks = []
        self._set_execution_device(None)

    def _release_offloaded(self) -> None:
        """After a call, send every model-offloaded component back to the CPU."""
        for hook in self._hooks:
            hook.offload()

    @property
    def multiple(self) -> int:
        """Heights and widths must be multiples of this (autoencoder factor x patch size)."""
        return spatial_factor(self.vae) * self.patch

    # ------------------------------------------------------------------ saving and loading
    def save_pretrained(self, directory: str | Path) -> None:
        """Write the folder: thinkgen's layout, or the release's for ``qwen-image`` / ``thinkgen-release``."""
        save_folder(self, Path(directory))

    @classmethod
    def from_pretrained(cls, directory: str | Path, torch_dtype: torch.dtype | None = None) -> ThinkGenPipeline:
        """Load a thinkgen folder, a diffusers ``QwenImagePipeline`` folder or a ThinkGen release
        folder (local files only, safetensors only)."""
        parts = load_folder(Path(directory), torch_dtype)
        try:
            return cls(**parts)
        except (ValueError, TypeError) as error:  # e.g. a conditioning's settings, channel widths that disagree
            raise PipelineLoadError(f"{directory}: the components do not fit together: {error}") from None

    def load_lora_weights(self, path: str | Path, adapter_name: str | None = None) -> ThinkGenPipeline:
        """Add LoRA adapters to the DiT from a diffusers-format file or folder (what thinkgen's
        training writes, and the Qwen-Image LoRAs the community publishes; safetensors only)."""
        from .lora import load_lora

        load_lora(self.transformer, path, adapter_name)
        return self

    def fuse_lora(self) -> ThinkGenPipeline:
        """Fold the DiT's LoRA adapters into its weights and remove them."""
        from .lora import merge_lora

        merge_lora(self.transformer)
        return self

    # ------------------------------------------------------------------ conditioning
    def condition(self, thinker_output: ThinkerOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Thinker states -> DiT text states and mask, through VGI-refine (``thinkgen`` only)."""
        return self.conditioning.refine(thinker_output)

    def unconditional(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The default negative branch for CFG, ``batch`` rows."""
        return self.conditioning.negative(None, batch)

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
                 num_images_per_prompt: int | list[int] = 1, output_type: str = "pil",
                 negative_prompt: str | list[str] | None = None,
                 progress: bool = False, seeds: list[int] | None = None,
                 step_callback: Callable[[int, torch.Tensor], None] | None = None,
                 generator_device: str | torch.device | None = None) -> ThinkGenOutput:
        """Generate images; noise of image ``i`` comes from ``seed + i``, so results don't depend
        on the batch they were drawn in (up to float rounding). ``negative_prompt`` (one, or one
        per prompt) replaces the conditioning's default negative branch of CFG.

        A server batching several requests passes ``num_images_per_prompt`` per prompt, each image's
        own ``seeds``, and a ``step_callback(step, latents)`` run after every denoising step (it may
        raise to stop the batch). ``generator_device`` is where the initial noise is drawn (default
        the CPU: a seed gives one picture on every machine); ``"cuda"`` draws it where the releases'
        own scripts do, which gives their pictures for their seeds on a GPU."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        height = self.defaults["height"] if height is None else height
        width = self.defaults["width"] if width is None else width
        steps = self.defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        cfg = self.defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        image_cfg = self.defaults["image_guidance_scale"] if image_guidance_scale is None else image_guidance_scale
        negative = negative_prompt if negative_prompt is not None else self.defaults.get("negative_prompt")
        negatives = [negative] * len(prompts) if isinstance(negative, str) else negative
        self.check_size(height, width)
        repeats = ([num_images_per_prompt] * len(prompts) if isinstance(num_images_per_prompt, int)
                   else list(num_images_per_prompt))
        if len(repeats) != len(prompts) or min(repeats, default=1) < 1 or steps < 1:
            raise ValueError("num_images_per_prompt (one per prompt) and num_inference_steps must be >= 1")
        if seeds is not None and len(seeds) != sum(repeats):
            raise ValueError(f"got {len(seeds)} seeds for {sum(repeats)} images")
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        if negatives is not None and len(negatives) != len(prompts):
            raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        if not prompts:
            raise ValueError("no prompts given")
        generator_device = noise_device(generator_device)
        self.limits.check_call(prompts + list(negatives or []), height, width, sum(repeats), steps, cfg)
        self.limits.check_seeds(seeds or [seed, seed + sum(repeats) - 1])  # image i uses its seed (or seed + i)
        tokenizer = self.thinker.tokenizer
        self.limits.check_tokens([len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]])

        thinker_images = images if self.thinker.processor is not None else None
        self._reset_cache()  # a step cache starts each generation empty
        condition = self.conditioning.encode(prompts, think=think, images=thinker_images, seed=seed)
        repeat = torch.tensor(repeats)
        text = condition.text.repeat_interleave(repeat.to(condition.text.device), 0).to(self.device)  # (B, L, D)
        text_mask = condition.mask.repeat_interleave(repeat.to(condition.mask.device), 0).to(self.device)  # (B, L)
        null = None
        if self._guides(cfg):
            null_text, null_mask = self.conditioning.negative(negatives, len(prompts))
            null = (null_text.repeat_interleave(repeat.to(null_text.device), 0).to(self.device),
                    null_mask.repeat_interleave(repeat.to(null_mask.device), 0).to(self.device))
        batch = text.shape[0]

        reference = None
        # the release's rule: an edit of one source image is drawn at the source's size; with
        # several, at the requested size (drawn as a picture without references is)
        at_reference_size = (images is not None and self.conditioning.edit_at_reference_size
                             and len(images[0]) == 1)
        if images is not None:
            reference = self.reference(images, height, width, seed)
            reference = reference.map(lambda t: t.repeat_interleave(repeat.to(t.device), 0))
            if at_reference_size:
                factor = spatial_factor(self.vae) * self.patch
                height, width = reference.grid[0] * factor, reference.grid[1] * factor
                self.limits.check_call(prompts + list(negatives or []), height, width, sum(repeats), steps, cfg)
        requested = (height, width)
        if not at_reference_size:
            height, width = self.conditioning.draw_size(height, width)  # a release may draw smaller, then resize
        grid = self.token_grid(height, width)
        x = self.initial_noise(seeds or [seed + i for i in range(batch)], height, width,
                               generator_device)  # (B, N, C p p)

        velocity = self.guided_velocity(text, text_mask, grid, reference, cfg, image_cfg, null=null)
        sigmas = self.sigmas(steps, grid)
        x = flow.euler_sample(velocity, x, sigmas, progress=progress, step=self.euler_step(sigmas),
                              callback=step_callback)
        resize = requested if requested != (height, width) and not at_reference_size else None
        pixels = self.decode(x, height, width, resize)  # (B, 3, H, W) in [0, 1]
        self._release_offloaded()
        self._reset_cache()
        reasoning = [r for r, n in zip(condition.reasoning, repeats, strict=True) for _ in range(n)]
        rewritten = [r for r, n in zip(condition.rewritten, repeats, strict=True) for _ in range(n)]
        out_images = to_pil(pixels) if output_type == "pil" else pixels.cpu()
        return ThinkGenOutput(out_images, reasoning, rewritten, condition.thought)

    # ------------------------------------------------------------------ step caching (thinkgen.caching)
    def enable_cache(self, cache: Any) -> ThinkGenPipeline:
        """Step caching on the DiT with diffusers' hooks: ``"first_block:threshold=0.1"``,
        ``"taylorseer:cache_interval=3"`` or a diffusers cache config (:mod:`thinkgen.caching`)."""
        from .caching import cache_config

        if not hasattr(self.transformer, "enable_cache"):
            raise ValueError(f"{type(self.transformer).__name__} takes no diffusers cache hooks")
        config = cache_config(cache)
        needs = getattr(config, "cache_identifiers", None) is None and type(config).__name__ == "TaylorSeerCacheConfig"
        if needs and not any(name.rsplit(".", 1)[-1] == "proj_out" for name, _ in self.transformer.named_modules()):
            raise ValueError(f"taylorseer extrapolates the DiT's output projection (proj_out), which "
                             f"{type(self.transformer).__name__} does not have: use first_block")
        if self.transformer.is_cache_enabled:
            self.transformer.disable_cache()
        self.transformer.enable_cache(config)
        return self

    def disable_cache(self) -> ThinkGenPipeline:
        if getattr(self.transformer, "is_cache_enabled", False):
            self.transformer.disable_cache()
        return self

    def _branch(self, name: str) -> Any:
        """The cache context of one kind of DiT call (each keeps its own cached state)."""
        if getattr(self.transformer, "is_cache_enabled", False):
            return self.transformer.cache_context(name)
        return contextlib.nullcontext()

    def _reset_cache(self) -> None:
        if getattr(self.transformer, "is_cache_enabled", False):
            self.transformer._reset_stateful_cache()

    def _guides(self, cfg: float) -> bool:
        """Whether a negative branch runs: any scale but 1 (batched CFG), above 1 (separate calls)."""
        return cfg != 1.0 if self.conditioning.guidance == "batched" else cfg > 1.0

    # ------------------------------------------------------------------ the pieces of one generation
    # (``__call__`` chains them; reinforcement learning uses them one by one)
    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The DiT's token grid for an image size."""
        factor = spatial_factor(self.vae) * self.patch
        return height // factor, width // factor

    def initial_noise(self, seeds: list[int], height: int, width: int,
                      generator_device: torch.device | None = None) -> torch.Tensor:
        """Patchified Gaussian noise, image ``i`` drawn from its own ``seeds[i]``: (B, N, C p p).

        Drawn by diffusers' ``randn_tensor`` on ``generator_device`` (default the CPU), in the
        conditioning's latent dtype (bf16 noise is not fp32 noise rounded), so a seed gives what
        ``QwenImagePipeline`` gives for ``generator=[torch.Generator(device).manual_seed(s) for s in seeds]``."""
        factor = spatial_factor(self.vae)
        shape = (1, latent_channels(self.vae), height // factor, width // factor)
        dtype = self.conditioning.latent_dtype()
        device = generator_device or torch.device("cpu")
        noise = torch.cat([randn_tensor(shape, generator=torch.Generator(device).manual_seed(seed), device=device,
                                        dtype=dtype) for seed in seeds])  # (B, C, h, w)
        return patchify(noise, self.patch).to(self.device)

    def reference(self, images: list[Image.Image] | list[list[Image.Image]], height: int, width: int,
                  seed: int = 0) -> Reference:
        """Source images as DiT tokens, for editing: one image per sample, or a list of them per
        sample (as many for every sample). Prepared as the conditioning says (by default resized to
        the output size; ``seed`` for a strategy that samples the autoencoder's posterior, which
        draws them sample by sample, image by image, as the ThinkGen release does)."""
        groups = [list(group) if isinstance(group, (list, tuple)) else [group] for group in images]
        self.check_references(groups)
        flat = [image for group in groups for image in group]
        latents = self.conditioning.reference_latents(self.vae, flat, height, width, seed)  # each (C, h, w)
        count = len(groups[0])
        per_image = []
        for k in range(count):  # the k-th source image of every sample, in one tensor
            slot = list(latents[k::count])
            if len({tuple(z.shape) for z in slot}) > 1:
                raise ValueError(f"source image {k + 1} of each prompt must have one size across the batch after "
                                 f"resizing (got latent sizes {sorted({tuple(z.shape[-2:]) for z in slot})})")
            stacked = torch.stack(slot).float()  # (B, C, h, w)
            grid = stacked.shape[-2] // self.patch, stacked.shape[-1] // self.patch
            per_image.append(Reference(patchify(stacked, self.patch), grid))
        return Reference(per_image[0].tokens, per_image[0].grid, tuple(per_image[1:]))

    def check_references(self, groups: list[list[Image.Image]]) -> None:
        """Every prompt has as many source images, at least one, and as many as the model takes."""
        counts = {len(group) for group in groups}
        if len(counts) > 1 or 0 in counts:
            raise ValueError(f"every prompt of one call needs the same number of source images (got {sorted(counts)})")
        count, most = counts.pop(), self.max_source_images
        if count > most:
            raise ValueError(f"this model takes at most {most} source image{'s' * (most > 1)} per prompt, got {count}")

    @property
    def max_source_images(self) -> int:
        """How many source images an edit may bring per prompt: the DiT's ``max_reference_images``
        where the conditioning takes several (the ThinkGen release), else one."""
        if not self.conditioning.several_references:
            return 1
        return getattr(self.transformer.config, "max_reference_images", 1)

    def sigmas(self, steps: int, grid: tuple[int, int]) -> torch.Tensor:
        """``steps + 1`` sigmas from the saved scheduler itself for this many image tokens (it is
        left ready for ``scheduler.step``), unless the conditioning reproduces a release's own
        scheduler (``schedule``)."""
        if self.conditioning.own_schedule:
            return self.conditioning.schedule(steps, grid[0] * self.patch, grid[1] * self.patch).to(self.device)
        return flow.scheduler_sigmas(self.scheduler, steps, grid[0] * grid[1], device=self.device)

    def euler_step(self, sigmas: torch.Tensor) -> flow.Step:
        """The update of one step over :meth:`sigmas`: the saved diffusers scheduler's ``step``
        (sample in fp32, result in the model's dtype), or a release scheduler's own."""
        if self.conditioning.own_schedule:
            return lambda x, v, i: self.conditioning.euler_step(x, v, sigmas[i], sigmas[i + 1])
        timesteps = self.scheduler.timesteps
        return lambda x, v, i: self.scheduler.step(v, timesteps[i], x, return_dict=False)[0]

    def decode(self, x: torch.Tensor, height: int, width: int, resize: tuple[int, int] | None = None) -> torch.Tensor:
        """Patchified latents (B, N, C p p) -> pixels (B, 3, H, W) in [0, 1] (float32); with ``resize``
        (height, width), resized bilinearly before the clamp, as the ThinkGen release resizes.

        Denormalised in the VAE's dtype before the cast, as diffusers' image processor does."""
        factor = spatial_factor(self.vae)
        latents = unpatchify(x, height // factor, width // factor, self.patch)
        pixels = decode_latents(self.vae, latents.to(self.device, self.vae.dtype), clamp=resize is None)
        if resize is not None:  # the release resizes the decoder's values, then clamps
            pixels = torch.nn.functional.interpolate(pixels, size=resize, mode="bilinear")
        return (pixels / 2 + 0.5).clamp(0, 1).float()

    def guided_velocity(self, text: torch.Tensor, text_mask: torch.Tensor, grid: tuple[int, int],
                        reference: Reference | None = None, cfg: float = 1.0, image_cfg: float = 1.0,
                        backend: Any = None, null: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> flow.Velocity:
        """One batched transformer call per step: [cond, uncond(, uncond + reference)].

        ``backend`` and ``null`` (the unconditional text states and mask, (1, L, D) and (1, L))
        swap in other modules, e.g. a frozen reference copy during reinforcement learning.
        Gradients flow when the caller enables them."""
        if self.conditioning.guidance != "batched":
            return self._separate_velocity(text, text_mask, grid, reference, cfg, image_cfg, backend, null)
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
                with_ref = reference.map(lambda t: t.repeat(2, 1, 1))
                pick = torch.cat([torch.arange(batch), torch.arange(2 * batch, 3 * batch)])
                with self._branch("with_image"):
                    v_cond, v_image = backend(x.repeat(2, 1, 1), sigma.repeat(2), all_text[pick],
                                              all_mask[pick], grid, with_ref).chunk(2)
                with self._branch("uncond"):
                    v_uncond = backend(x, sigma, all_text[batch : 2 * batch],
                                       all_mask[batch : 2 * batch], grid)
                return flow.guide(v_cond, v_uncond, cfg, v_image, image_cfg)
            ref = None if reference is None else reference.map(lambda t: t.repeat(branches, 1, 1))
            with self._branch("batched"):
                v = backend(x.repeat(branches, 1, 1), sigma.repeat(branches), all_text, all_mask,
                            grid, ref)  # (k B, N, C p p)
            if branches == 1:
                return v
            v_cond, v_uncond = v.chunk(2)
            return flow.guide(v_cond, v_uncond, cfg)

        return velocity

    def _separate_velocity(self, text: torch.Tensor, text_mask: torch.Tensor, grid: tuple[int, int],
                           reference: Reference | None, cfg: float, image_cfg: float = 1.0, backend: Any = None,
                           null: tuple[torch.Tensor, torch.Tensor] | None = None) -> flow.Velocity:
        """CFG as two transformer calls, each branch with its own text length and mask, as the
        releases run it: Qwen-Image's true CFG (per-token norm rescaling) or plain CFG (ThinkGen)."""
        combine = flow.guide_rescaled if self.conditioning.guidance == "true-cfg" else flow.guide
        backend = backend or self.backend
        if not self._guides(cfg):
            def conditional(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                with self._branch("cond"):
                    return backend(x, sigma, text, text_mask, grid, reference)

            return conditional
        batch = text.shape[0]
        null_text, null_mask = self.unconditional(batch) if null is None else (
            null[0].expand(batch, -1, -1), null[1].expand(batch, -1))

        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            with self._branch("cond"):
                v_cond = backend(x, sigma, text, text_mask, grid, reference)  # (B, N, C p p)
            # an edit's negative branch does not see the source image (OmniGen2's and ThinkGen's
            # convention); with an image scale above 1 a third call, negative text + image, is the
            # image-only branch of the three-way form (combined plainly: no released true-cfg model edits)
            with self._branch("uncond"):
                v_negative = backend(x, sigma, null_text, null_mask, grid)
            if reference is not None and image_cfg > 1.0:
                with self._branch("image"):
                    v_image = backend(x, sigma, null_text, null_mask, grid, reference)
                return flow.guide(v_cond, v_negative, cfg, v_image, image_cfg)
            return combine(v_cond, v_negative, cfg)

        return velocity


def noise_device(device: str | torch.device | None) -> torch.device | None:
    """A ``generator_device`` checked: None (the CPU), or a device of this machine."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"generator_device {device!r} is not a device") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"generator_device {device}: no such GPU here")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"generator_device {device}: draw the noise on the CPU or a GPU")
    return device
