"""``thinkgen-release``: the prompt conventions of the ThinkGen release (``JSYuuu/ThinkGen``).

The thinker is a Qwen3-VL; its states condition :class:`thinkgen.models.ThinkGenTransformer2DModel`,
whose prepadding states and caption embedder sit *inside* the DiT (no separate bridge).

* **Features** = the last two layers (transformers' ``hidden_states[-2]`` and ``[-1]``),
  concatenated along channels: 2 x the thinker's width (8192 for Qwen3-VL-8B).
* **Direct**: the chat template of [system, user] (no generation prompt), then
  ``<|im_start|>assistant\\n<think>\\n</think>`` and the prompt; one forward pass; the positions
  strictly after the first ``</think>`` are kept (so no end-of-turn token, unlike ``thinkgen``'s
  pseudo-CoT template).
* **Think**: the same chat text ending in ``<|im_start|>assistant\\n<think>\\n``; generation
  (sampling as the thinker's ``generation_config`` says); the states of every fed token, i.e. all
  but the final end token, from just after the first generated ``</think>``.
* **Fallback** (the release's quirk, kept): when ``</think>`` is missing or is the last token —
  e.g. an empty negative prompt — the whole templated sequence is kept.
* **Negative prompt**: always the direct path (default ``""``); CFG is two separate transformer
  calls combined plainly, when the scale is above 1.
* **Schedule**: the release's own scheduler (not diffusers'), reproduced: ``t = i / N`` with a static
  shift ``m = sqrt(latent h * latent w) / 40`` per resolution, Euler steps with the sample in float32
  and the result in the model's dtype (bf16 latents between steps for a bf16 model).

* **Editing** (``images``): the user turn starts with ``<|vision_start|><|image_pad|><|vision_end|>``
  per image; in direct mode the text alone is encoded (the placeholders are plain tokens, as the
  release feeds its language model no pixels there); in think mode the processor expands them
  and the thinker sees the images (at most ``thinker_max_pixels``). Each source image is resized as
  the release's image processor does (down to ``max_pixels`` and ``max_side_length``, floored to
  twice the VAE's factor, Lanczos; diffusers' ``VaeImageProcessor``) and encoded to a *sample* of
  the VAE's posterior (drawn from the call's ``seed``, image after image). An edit of one source
  image is drawn at the source's size; with several (up to the DiT's ``max_reference_images``),
  at the requested size, as a picture without references is. The negative branch does not see the
  sources; with an image scale above 1 a third call (negative text + sources) makes the three-way
  form (the pipeline's separate-call guidance).

The release's system prompt is not shipped here: set ``system_prompt`` to the ``SYSPROMPT`` of the
release's pipeline code to reproduce it exactly (thinkgen's default is a neutral text).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from ..generator import spatial_factor
from ..hidden_states import capture_last_layers, stack_records
from ..thinker import ThinkerOutput, render_chat
from .base import Condition, Conditioning, Traces, pad_rows, seeded

VISION_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"  # one per input image, as the release writes it

DEFAULT_SYSTEM_PROMPT = ("You are a helpful assistant that draws images. Think about the request, then write "
                         "one sentence that describes the image to generate.")


class ThinkGenRelease(Conditioning):
    name = "thinkgen-release"
    guidance = "separate"
    own_schedule = True
    edit_at_reference_size = True  # the release's align_res, on by default there
    several_references = True  # its DiT takes up to max_reference_images source images per prompt

    def __init__(self, thinker, bridge=None, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 max_sequence_length: int = 1024, max_new_tokens: int = 4096, default_negative: str = "",
                 think_close: str = "</think>", max_pixels: int = 1024 * 1024, max_side_length: int = 1024,
                 thinker_max_pixels: int = 262144, release_resolution: bool = False) -> None:
        if bridge is not None:
            raise ValueError("the 'thinkgen-release' conditioning has no bridge: prepadding and caption "
                             "embedder are part of ThinkGen's DiT")
        super().__init__(thinker)
        self.system_prompt, self.max_sequence_length = system_prompt, max_sequence_length
        self.max_new_tokens, self.default_negative, self.think_close = max_new_tokens, default_negative, think_close
        self.max_pixels, self.max_side_length = max_pixels, max_side_length
        self.thinker_max_pixels = thinker_max_pixels
        if not isinstance(release_resolution, bool):
            raise ValueError(f"release_resolution must be true or false, got {release_resolution!r}")
        self.release_resolution = release_resolution
        ids = thinker.tokenizer.encode(think_close, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"the 'thinkgen-release' conditioning needs a single token for {think_close!r}")
        self.close_id = ids[0]

    def settings(self) -> dict[str, Any]:
        return {"system_prompt": self.system_prompt, "max_sequence_length": self.max_sequence_length,
                "max_new_tokens": self.max_new_tokens, "default_negative": self.default_negative,
                "think_close": self.think_close, "max_pixels": self.max_pixels,
                "max_side_length": self.max_side_length, "thinker_max_pixels": self.thinker_max_pixels,
                "release_resolution": self.release_resolution}

    def draw_size(self, height: int, width: int) -> tuple[int, int]:
        """With ``release_resolution``, the release's rule for a picture without a single reference:
        scaled down (never up) to at most ``max_pixels``, each side floored to a multiple of 16, then
        drawn; the pipeline resizes the picture back to the request (bilinear, before the clamp).
        Otherwise thinkgen draws at the requested size itself."""
        if not self.release_resolution:
            return height, width
        ratio = min((self.max_pixels / (height * width)) ** 0.5, 1.0)
        drawn = int(height * ratio) // 16 * 16, int(width * ratio) // 16 * 16
        if min(drawn) == 0:
            raise ValueError(f"{width}x{height} scaled to max_pixels {self.max_pixels} leaves a side under 16 pixels")
        return drawn

    @property
    def text_channels(self) -> int:
        return 2 * self.thinker.hidden_size

    def latent_dtype(self) -> torch.dtype:
        return self.thinker.model.dtype

    def schedule(self, steps: int, latent_height: int, latent_width: int) -> torch.Tensor:
        """The release scheduler's grid, which counts t from 0 (noise) to 1 (data): ``t = i / N``
        in float32, bent by the static shift ``m = sqrt(latent h * latent w) / 40`` (1024 x 1024:
        3.2) as ``t / (m - m t + t)`` with numpy's dtype rules, then 1. It is returned as float64
        sigmas ``1 - t``, in which ``1 - sigma`` gives back the release's t exactly."""
        t = np.linspace(0, 1, steps + 1, dtype=np.float32)[:-1]
        m = np.sqrt(latent_height * latent_width) / 40
        t = torch.from_numpy(t / (m - m * t + t)).to(torch.float32)
        return 1 - torch.cat([t, torch.ones(1)]).double()

    def euler_step(self, x, v, sigma, sigma_next):
        """The release scheduler's step in its own terms: ``x + (t_next - t) * v_data`` with the sample
        in float32 and ``t_next - t`` in float32, cast back to the model's dtype (``v_data = -v``)."""
        t, t_next = (1 - sigma).float(), (1 - sigma_next).float()
        return (x.float() + (t_next - t) * -v).to(v.dtype)

    # ------------------------------------------------------------------ templates
    def chat(self, prompt: str) -> str:
        """[system, user] through the chat template, without a generation prompt."""
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        return render_chat(self.thinker.tokenizer, messages, add_generation_prompt=False)

    def direct_text(self, prompt: str, num_images: int = 0) -> str:
        """The direct template; an edit's placeholders are part of the instruction, so they are
        repeated after ``</think>`` too (the release's text, kept)."""
        instruction = VISION_PLACEHOLDER * num_images + prompt
        return self.chat(instruction) + "<|im_start|>assistant\n<think>\n" + self.think_close + instruction

    def think_text(self, prompt: str, num_images: int = 0) -> str:
        return self.chat(VISION_PLACEHOLDER * num_images + prompt) + "<|im_start|>assistant\n<think>\n"

    def _start(self, ids: list[int]) -> int:
        """Index after the first </think>; 0 (keep everything) when it is missing or last."""
        if self.close_id not in ids or ids.index(self.close_id) == len(ids) - 1:
            return 0
        return ids.index(self.close_id) + 1

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def direct(self, prompts: list[str], images: list[list[Any]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer, model = self.thinker.tokenizer, self.thinker.model
        counts = [len(group) for group in images] if images is not None else [0] * len(prompts)
        texts = [self.direct_text(p, n) for p, n in zip(prompts, counts, strict=True)]
        batch = tokenizer(texts, padding="longest", truncation=True,
                          max_length=self.max_sequence_length, return_tensors="pt").to(self.thinker.device)
        hidden = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       output_hidden_states=True).hidden_states
        features = torch.cat([hidden[-2], hidden[-1]], dim=-1)  # (B, S, 2 D)
        rows = []
        for row in range(features.shape[0]):
            real = batch.attention_mask[row].bool()
            ids = batch.input_ids[row][real].tolist()
            rows.append(features[row][real][self._start(ids):])
        return pad_rows(rows, model.dtype)

    def encode(self, prompts, think=True, images=None, seed=None) -> Condition:
        images = images if images is not None and any(images) else None
        if not think:
            text, mask = self.direct(prompts, images)
            return Condition(text, mask, [""] * len(prompts), list(prompts))
        with seeded(seed, self.thinker.device):
            return self._think(prompts, images)

    def sample(self, prompt, copies, temperature, top_k, max_new_tokens, seed) -> Traces:
        """Sampled traces (``temperature``, ``top_k`` instead of the generation config's); the DiT
        side reads each trace's states after ``</think>``, as the release conditions."""
        options = {"do_sample": True, "temperature": temperature, "top_k": top_k or None, "top_p": 1.0}
        with seeded(seed, self.thinker.device):
            condition = self._think([prompt] * copies, None, options, max_new_tokens)
        rows = [condition.text[i][condition.mask[i].bool()] for i in range(copies)]
        return Traces(condition.thought.sequences, condition.thought.prompt_lengths, rows, condition.rewritten)

    @torch.no_grad()
    def _think(self, prompts: list[str], images: list[list[Any]] | None = None, options: dict[str, Any] | None = None,
               max_new_tokens: int | None = None) -> Condition:
        """Think-mode generation (as the generation config says, unless ``options``), and its states;
        ``thought`` holds each row's tokens (prompt + generation) for RL."""
        tokenizer, model = self.thinker.tokenizer, self.thinker.model
        if images is None:
            batch = tokenizer([self.think_text(p) for p in prompts], padding=True, padding_side="left",
                              return_tensors="pt").to(self.thinker.device)
        else:  # the processor expands each placeholder into the image's tokens and adds its pixels
            if self.thinker.processor is None:
                raise ValueError("editing in think mode needs a vision-language thinker (a processor)")
            texts = [self.think_text(p, len(group)) for p, group in zip(prompts, images, strict=True)]
            processor = self.thinker.processor
            processor.tokenizer.padding_side = "left"
            # the release passes max_pixels; transformers now spells it as the size's longest_edge
            size = {"longest_edge": self.thinker_max_pixels,
                    "shortest_edge": processor.image_processor.size["shortest_edge"]}
            batch = processor(text=texts, images=[im for group in images for im in group], padding=True,
                              return_tensors="pt", size=size).to(self.thinker.device)
        width = batch.input_ids.shape[1]
        end_ids = self.thinker.end_ids
        with capture_last_layers(model, 2) as records:
            sequences = model.generate(**batch, **(options or {}), max_new_tokens=max_new_tokens or self.max_new_tokens,
                                       eos_token_id=end_ids, pad_token_id=self.thinker.pad_id)
        states = stack_records(records)  # (B, S - 1, 2 D): every token but the last was fed
        rows, reasoning, rewritten, tokens, starts = [], [], [], [], []
        for row in range(sequences.shape[0]):
            completion = sequences[row, width:].tolist()
            end = next((i for i, t in enumerate(completion) if t in end_ids), len(completion) - 1)
            first = width - int(batch.attention_mask[row].sum())  # left padding
            full = sequences[row, first : width + end + 1].tolist()  # prompt + generation through its last token
            # the states cover every token but the last (it was never fed); the cut is found on the
            # full sequence, as the release does, falling back to 0 when </think> is missing or last
            rows.append(states[row, first + self._start(full) : first + len(full) - 1])
            tokens.append(torch.tensor(full))
            starts.append(width - first)
            close = completion.index(self.close_id) if self.close_id in completion[:end] else end
            reasoning.append(tokenizer.decode(completion[:close], skip_special_tokens=True).strip())
            rewritten.append(tokenizer.decode(completion[close + 1 : end], skip_special_tokens=True).strip())
        text, mask = pad_rows(rows, model.dtype)
        return Condition(text, mask, reasoning, rewritten, ThinkerOutput(text, mask, reasoning, rewritten, tokens, starts))

    def negative(self, prompts, batch):
        return self.direct(prompts if prompts is not None else [self.default_negative] * batch)


    # ------------------------------------------------------------------ editing
    def reference_size(self, height: int, width: int, multiple: int) -> tuple[int, int]:
        """The release image processor's size for a source image: scaled down (never up) to at most
        ``max_pixels`` and ``max_side_length``, then each side floored to ``multiple``."""
        side_ratio = self.max_side_length / max(height, width)
        ratio = min((self.max_pixels / (height * width)) ** 0.5, side_ratio, 1.0)
        return int(height * ratio) // multiple * multiple, int(width * ratio) // multiple * multiple

    @torch.no_grad()
    def reference_latents(self, vae, images: list[Image.Image], height: int, width: int, seed: int
                          ) -> list[torch.Tensor]:
        """Each source image resized as the release does, then a sample of the VAE's posterior, shifted
        and scaled: one ``(C, h, w)`` each, in the VAE's dtype, sizes as the images give. The samples
        come one image after the other from one generator seeded with ``seed`` (the release draws
        them from torch's global generator, prompt by prompt, image by image)."""
        multiple = 2 * spatial_factor(vae)  # the release rounds to twice the VAE's factor (its patch size)
        processor = VaeImageProcessor(vae_scale_factor=multiple, resample="lanczos")
        generator = torch.Generator().manual_seed(seed)
        latents = []
        for image in images:
            image = image.convert("RGB")
            h, w = self.reference_size(image.height, image.width, multiple)
            if min(h, w) == 0:
                raise ValueError(f"a source image of {image.width}x{image.height} is too small to edit "
                                 f"(each side is floored to a multiple of {multiple})")
            pixels = processor.preprocess(image, height=h, width=w)  # (1, 3, h, w) in [-1, 1]
            z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.sample(generator)
            if vae.config.shift_factor is not None:
                z = z - vae.config.shift_factor
            latents.append((z * vae.config.scaling_factor).to(vae.dtype)[0])  # (C, h, w)
        return latents
