"""DiT stages 1-3 with ThinkGen's pseudo-CoT template, on ShapeWorld scenes.

* ``dit_connector`` (stage 1): only the prepadding states and the connector train; thinker and
  DiT are frozen.
* ``dit_pretrain`` (stage 2): the bridge and the whole DiT train with the rectified-flow loss,
  logit-normal timesteps, caption dropout (to ``""``, the CFG unconditional) and EMA.
* ``dit_finetune`` (stage 3): the same on a curated subset (``data.curated``) at a lower lr.

The thinker is frozen in all three, so its states for the training captions are computed once,
up front. Every batch is a pure function of (seed, step): the scenes, the
caption dropout, the timesteps and the noise of example ``i`` of step ``s`` come from a generator
seeded with ``(seed, s, i)``, so any split of a global batch across processes sees the same data.
Composition specs held out by the test split (``position``, ``color_attr``) never appear.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
from PIL import Image
from torch import nn

from .. import flow
from ..bridge import Bridge
from ..generator import (
    PixelAutoencoder,
    Reference,
    backend_for,
    encode_images,
    latent_channels,
    patchify,
    spatial_factor,
)
from ..pipeline import PipelineLoadError, ThinkGenPipeline
from ..world import suites
from ..world.captions import canonical, describe, target_of
from ..world.corpora import drawn_edit_examples
from ..world.render import render
from ..world.rules import Requirement, Target, entails, satisfies
from ..world.scene import BASIC_SHAPES, COLORS, Scene, SceneSampler
from .config import TrainConfig
from .loop import load_ema
from .thinker_stage import as_thinker, load_thinker

SAMPLE_PROMPTS = ["a red circle", "a blue square", "three yellow triangles", "a green circle left of a purple square",
                  "an orange triangle above a blue circle", "two red squares and a green triangle"]


def held_out_specs(shapes: tuple[str, ...] = BASIC_SHAPES) -> list[Target]:
    """The composition test split's position and color_attr specs (see suites.composition_items)."""
    specs = []
    for a in shapes:
        for b in shapes:
            if a == b:
                continue
            for relation in ("left of", "right of", "above", "below"):
                specs.append(Target((Requirement(b), Requirement(a, position=(relation, 0)))))
            for ca in COLORS:
                for cb in COLORS:
                    if ca != cb:
                        specs.append(Target((Requirement(a, 1, ca), Requirement(b, 1, cb))))
    return [t for t in specs if suites.stable_fraction(canonical(t)) < 0.2]


class TrainingScenes:
    """Scenes and captions for the DiT: GenEval-like targets and random scenes of 1-4 objects, and
    (``text_fraction``) the text suite's train split: words never in its test split, ``text_lengths``
    "distinct" (each word once before any twice) or "balanced" (see :func:`_by_length`).

    The composition test split's position and colour-binding statements (:func:`held_out_specs`)
    are held out by one of two rules, ``held_out``:

    * "scenes": no scene of two or more objects that satisfies one is drawn at all, so the DiT never
      sees, say, a square left of a triangle, under any caption (the rule every shipped model used);
    * "captions": no caption says one (:func:`~thinkgen.world.rules.entails`), but its picture may
      appear under a caption that does not ("a square and a triangle"), as a web-trained model has
      seen pictures of a dog left of a cat without that sentence."""

    def __init__(self, count: int, seed: int, max_objects: int, canonical_fraction: float, curated: str,
                 text_fraction: float = 0.0, text_lengths: str = "distinct", held_out: str = "scenes") -> None:
        rng = random.Random(f"dit-scenes-{seed}")
        sampler = SceneSampler(max_objects=max_objects, shapes=BASIC_SHAPES, rng=random.Random(f"dit-{seed}"))
        forbidden = held_out_specs()
        words: list[list[suites.Item]] = []  # groups drawn in turn
        if text_fraction:
            items = suites.text_items(max(1, int(count * text_fraction)), "train", seed=seed)
            words = _by_length(items) if text_lengths == "balanced" else [items]
        self.scenes, self.captions = [], []
        self.targets: list[Target | None] = []  # what each caption says (None for words)
        drawn_words = 0
        while len(self.scenes) < count:
            if words and rng.random() < text_fraction:
                group = words[drawn_words % len(words)]  # balanced: lengths in turn
                item = group[(drawn_words // len(words)) % len(group)]  # each word once before any twice
                drawn_words += 1
                self.scenes.append(item.scene)
                self.captions.append(item.canonical if rng.random() < canonical_fraction else item.prompt)
                self.targets.append(None)
                continue
            spec = None
            if rng.random() < 0.4:  # a GenEval-like target, sometimes with its colours left open
                tag = rng.choice(suites.TAGS)
                spec = suites.composition_target(tag, rng, BASIC_SHAPES)
                scene = suites.scene_for(spec, rng)
            else:
                scene = sampler()
            if scene is None or not _curated(scene, curated, len(self.scenes)):
                continue
            if held_out == "scenes" and len(scene.objects) >= 2 and any(satisfies(scene, t) for t in forbidden):
                continue
            target = spec if (spec is not None and rng.random() < 0.5) else target_of(scene)
            if held_out == "captions" and any(entails(target, t) for t in forbidden):
                continue
            self.targets.append(target)
            caption = canonical(target) if rng.random() < canonical_fraction else describe(target, rng)
            self.scenes.append(scene)
            self.captions.append(caption)


def _by_length(items: list[suites.Item]) -> list[list[suites.Item]]:
    """Text-suite train words grouped by length (1-4 characters), for "balanced". The suite draws lengths
    uniformly, but there are 30 train words of one character and ~1,000 of two against tens of
    thousands of three and four, so a cache of distinct words is 95 % long words. Each length is
    drawn at its own place in the 64 px line; "balanced" gives each length a quarter of the words
    (the short ones repeat), as the suite's prompts draw lengths. Measured (docs/dit_experiments.md):
    it draws one-character words, but scores lower overall than "distinct" at 4,000 steps."""
    groups: dict[int, list[suites.Item]] = {}
    for item in items:
        groups.setdefault(len(item.target.text), []).append(item)
    return [groups[length] for length in sorted(groups)]


def _is_relation(scene) -> bool:
    return len(scene.objects) == 2 and target_of(scene).include[-1].position is not None


def _curated(scene, curated: str, index: int) -> bool:
    """Whether ``scene`` may be training scene number ``index`` of the ``curated`` subset: "all";
    "multi" (two or more objects, a third of them relation scenes); "relations" (two objects, one
    placed relative to the other); "multi_relations" (every other scene a relation scene, the rest
    any multi-object scene: two thirds relations in all, keeping the three- and four-object scenes
    that counting needs); "relations_counting" (every other scene a relation scene, the rest
    counting scenes: two to four objects of one shape)."""
    if curated == "multi":
        return len(scene.objects) >= 2
    if curated == "relations":
        return _is_relation(scene)
    if curated == "multi_relations":
        return _is_relation(scene) if index % 2 == 0 else len(scene.objects) >= 2
    if curated == "relations_counting":
        if index % 2 == 0:
            return _is_relation(scene)
        return len(scene.objects) >= 2 and len({o.shape for o in scene.objects}) == 1
    return True


class EditExamples:
    """The editing suite's train split, ready for the DiT: instructions (half in the canonical
    grammar a thinker writes, half in the suite's varied wording), and source and target images
    as x0 tensors ``(E, C, h, w)``; then ``drawn`` edits (world.corpora.drawn_edit_examples: a
    model's own drawing, its fix, the fixed scene), which a reflection round asks of the DiT."""

    def __init__(self, count: int, seed: int, resolution: int, encode,
                 drawn: Sequence[tuple[Path, str, Scene]] = ()) -> None:
        rng = random.Random(f"dit-edits-{seed}")
        items = suites.editing_items(count, "train", seed=seed)
        self.instructions = [item.canonical if rng.random() < 0.5 else item.prompt for item in items]
        sources = [render(i.source, resolution) for i in items]
        targets = [render(i.scene, resolution) for i in items]
        self.target_scenes: list[Scene] = [i.scene for i in items]
        self.layouts: tuple[torch.Tensor, torch.Tensor] | None = None  # set by DiTStage for layout_align
        for path, fix, scene in drawn:  # a model's own drawings and their fixes (data.drawn_edits)
            image = np.asarray(Image.open(path).convert("RGB"))
            if image.shape[:2] != (resolution, resolution):
                raise ValueError(f"{path}: {image.shape[1]} x {image.shape[0]} px, the DiT draws {resolution} px")
            self.instructions.append(fix)
            self.target_scenes.append(scene)
            sources.append(image)
            targets.append(render(scene, resolution))
        self.source_images = np.stack(sources)  # (E, H, W, 3) uint8
        self.sources = encode(torch.from_numpy(self.source_images))
        self.targets = encode(torch.from_numpy(np.stack(targets)))


def replay_examples(folder: str | Path, resolution: int, select: str = "all") -> list[tuple[np.ndarray, str]]:
    """A model's own direct-mode drawings, as ``thinkgen eval --no-think --out FOLDER`` wrote them:
    ``(image (H, W, 3) uint8, its prompt)`` for each row of ``items.jsonl``; with ``select="right"``
    only the rows its scorer gave full marks (the drawings that answer the prompt)."""
    if select not in ("all", "right"):
        raise ValueError(f"replay selects all or right drawings, got {select!r}")
    path = Path(folder) / "items.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no items.jsonl (write it with thinkgen eval --no-think --out)")
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("reasoning") or row.get("rewritten", row.get("prompt")) != row.get("prompt"):
            raise ValueError(f"{path}: row {number} was drawn in think mode; replay reads prompts in direct mode")
        if select == "right" and row["score"] < 1.0:
            continue
        image = np.asarray(Image.open(Path(folder) / row["image"]).convert("RGB"))
        if image.shape[:2] != (resolution, resolution):
            raise ValueError(f"{folder}/{row['image']}: {image.shape[1]} x {image.shape[0]} px, "
                             f"the DiT draws {resolution} px")
        examples.append((image, row["prompt"]))
    return examples


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1


class FlowModule(nn.Module):
    """Bridge + DiT; ``forward(batch)`` is the rectified-flow loss.

    ``bridge`` None: the batch's states are the DiT's text states already (the releases' strategies,
    whose prepadding lives in the DiT). A batch may carry its own token ``grid`` (aspect-ratio
    buckets); references are drawn at the image's grid."""

    def __init__(self, bridge: Bridge | None, transformer: nn.Module, grid: tuple[int, int]) -> None:
        super().__init__()
        self.bridge, self.transformer, self.grid = bridge, transformer, grid
        self.backend = backend_for(transformer)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        text, text_mask = batch["states"], batch["mask"]
        if self.bridge is not None:
            text, text_mask = self.bridge(text, text_mask)  # (B, K + L, D), (B, K + L)
        grid = batch.get("grid", self.grid)
        sigma = batch["sigma"]  # (B,)
        x = flow.add_noise(batch["x0"], batch["noise"], sigma)  # (B, N, C p p)
        reference = None
        if "reference" in batch:  # editing: (B, N, C p p), or (B, K, N, C p p) for K source images
            sources = batch["reference"]
            sources = sources.unsqueeze(1) if sources.dim() == 3 else sources
            reference = Reference(sources[:, 0], grid, tuple(Reference(sources[:, k], grid)
                                                             for k in range(1, sources.shape[1])))
        velocity = self.backend(x, sigma, text, text_mask, grid, reference)  # (B, N, C p p)
        return F.mse_loss(velocity.float(), (batch["noise"] - batch["x0"]).float())


class DiTStage:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        d = config.dit
        if config.init:
            # fp32 even from a half-precision export (the embedded model): the optimiser needs it
            self.pipe = ThinkGenPipeline.from_pretrained(config.init, torch_dtype=torch.float32)
        else:
            if not config.thinker_dir:
                raise ValueError("a DiT stage needs `init` (a pipeline) or `thinker_dir` (a trained thinker)")
            try:
                model, text, thinker_config = load_thinker(config.thinker_dir)
            except Exception as error:  # any library's own error: one line naming the folder
                raise PipelineLoadError(f"cannot load the thinker from {config.thinker_dir}: "
                                        f"{' '.join(str(error).split())[:300]}") from None
            thinker_config.extract = d.extract
            thinker = as_thinker(model.eval(), text, thinker_config)
            torch.manual_seed(config.run.seed)
            heads = d.num_heads
            head_dim = d.width // heads
            rope = (head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))
            vae = AutoencoderKL.from_pretrained(d.autoencoder) if d.autoencoder else PixelAutoencoder()
            channels = latent_channels(vae) * d.patch**2  # one token = a p x p patch of latent pixels
            transformer = QwenImageTransformer2DModel(
                patch_size=1, in_channels=channels, out_channels=channels, num_layers=d.num_layers,
                attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=d.text_width,
                axes_dims_rope=rope)
            bridge = Bridge(thinker.state_dim, d.text_width, num_prepadding=d.num_prepadding, connector=d.connector)
            self.pipe = ThinkGenPipeline(thinker, bridge, transformer, vae,
                                         FlowMatchEulerDiscreteScheduler(shift=1.0),
                                         defaults={"height": d.resolution, "width": d.resolution,
                                                   "guidance_scale": 3.0, "num_inference_steps": 20})
        pipe = self.pipe
        pipe.thinker.model.requires_grad_(False)
        pipe.transformer.requires_grad_(config.stage != "dit_connector")
        pipe.bridge.requires_grad_(True)
        pipe.vae.requires_grad_(False)
        self.resolution = pipe.defaults["height"]
        side = self.resolution // (spatial_factor(pipe.vae) * pipe.patch)
        align = config.layout_align
        if align.weight:
            from .layout_align import LayoutAlignedFlow  # it builds on FlowModule, defined here

            self.model = LayoutAlignedFlow(pipe.bridge, pipe.transformer, (side, side), align.layer, align.weight)
        else:
            self.model = FlowModule(pipe.bridge, pipe.transformer, (side, side))
        self._prepare_data()

    def _prepare_data(self) -> None:
        cfg = self.config
        data = TrainingScenes(cfg.data.cache_size, cfg.run.seed, cfg.data.max_objects, cfg.data.canonical_fraction,
                              cfg.data.curated, cfg.data.text_fraction, cfg.data.text_lengths, cfg.data.held_out)
        images = [render(s, self.resolution) for s in data.scenes]
        self.captions = list(data.captions)
        self.scene_count = len(self.captions)  # rows after these are replayed drawings (data.replay)
        for folder in cfg.data.replay or []:
            for image, prompt in replay_examples(folder, self.resolution, cfg.data.replay_select):
                images.append(image)
                self.captions.append(prompt)
        self.images = torch.from_numpy(np.stack(images))  # (N, H, W, 3)
        self.layouts = None  # layout_align: per-token class shares (N, T, K) and which rows have a scene
        if cfg.layout_align.weight:
            scenes = list(data.scenes) + [None] * (len(self.captions) - self.scene_count)  # replays: unknown
            self.layouts = self._token_layouts(scenes)
        # pixels are their own latents (kept as uint8); a learned autoencoder's are encoded once
        self.latents = None if isinstance(self.pipe.vae, PixelAutoencoder) else self._encode_images(self.images)
        self.edits = None
        if cfg.data.edit_fraction > 0:
            drawn = [example for folder in cfg.data.drawn_edits or [] for example in drawn_edit_examples(folder)]
            self.edits = EditExamples(max(1, int(cfg.data.cache_size * cfg.data.edit_fraction)), cfg.run.seed,
                                      self.resolution, self._encode_images, drawn)
            if cfg.layout_align.weight:
                self.edits.layouts = self._token_layouts(self.edits.target_scenes)
        states, masks = self._encode_texts(self.captions)
        if cfg.data.think_states > 0:
            states, masks = self._with_think_states(states, masks)
        if self.edits is not None:
            # a thinker that sees reads each instruction with its source image, as `thinkgen edit` does
            sources = ([[Image.fromarray(image)] for image in self.edits.source_images]
                       if self.pipe.thinker.processor is not None else None)
            edit_states, edit_masks = self._encode_texts(self.edits.instructions, sources)
            states, masks = states + edit_states, masks + edit_masks
        length = max(s.shape[1] for s in states)
        self.states = torch.cat([F.pad(s, (0, 0, 0, length - s.shape[1])) for s in states])  # (N + E, L, D) fp16
        self.masks = torch.cat([F.pad(m, (0, length - m.shape[1])) for m in masks])  # (N + E, L)
        null = self.pipe.thinker.encode([""], think=False)
        self.null_states = F.pad(null.states.half(), (0, 0, 0, length - null.states.shape[1]))[0]
        self.null_mask = F.pad(null.mask, (0, length - null.mask.shape[1]))[0]

    def _token_layouts(self, scenes: list[Scene | None]) -> tuple[torch.Tensor, torch.Tensor]:
        from .layout_align import token_layouts

        return token_layouts(scenes, self.resolution, self.model.grid[0])

    @property
    def metrics(self) -> dict[str, float]:
        loss = getattr(self.model, "last_layout_loss", None)
        return {} if loss is None else {"train/layout_loss": float(loss)}

    def _encode_texts(self, texts: list[str], images: list[list[Image.Image]] | None = None,
                      think: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The frozen thinker's states (fp16) and masks, in chunks of 128 texts; direct mode unless
        ``think`` (then the thinker generates its reasoning and rewrite, greedily)."""
        states, masks = [], []
        with torch.no_grad():
            for start in range(0, len(texts), 128):
                out = self.pipe.thinker.encode(texts[start : start + 128], think=think,
                                               images=images[start : start + 128] if images else None, seed=start)
                states.append(out.states.half())
                masks.append(out.mask)
        return states, masks

    def _with_think_states(self, states: list[torch.Tensor], masks: list[torch.Tensor]
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Replace a ``data.think_states`` share of the captions' direct-mode states by think-mode
        states, so the DiT learns the states it reads when the thinker has thought first. Replayed
        drawings keep their direct-mode states: they were drawn from those."""
        rows = [(s[i : i + 1], m[i : i + 1]) for s, m in zip(states, masks, strict=True) for i in range(s.shape[0])]
        rng = random.Random(f"think-states-{self.config.run.seed}")
        chosen = [i for i in range(self.scene_count) if rng.random() < self.config.data.think_states]
        think_states, think_masks = self._encode_texts([self.captions[i] for i in chosen], think=True)
        thought = [(s[i : i + 1], m[i : i + 1]) for s, m in zip(think_states, think_masks, strict=True)
                   for i in range(s.shape[0])]
        for index, row in zip(chosen, thought, strict=True):
            rows[index] = row
        return [s for s, _ in rows], [m for _, m in rows]

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` -> the DiT's x0 ``(N, C, h, w)``: pixels, or the autoencoder's latents."""
        if isinstance(self.pipe.vae, PixelAutoencoder):
            return _pixels(images)
        with torch.no_grad():
            return torch.cat([encode_images(self.pipe.vae, _pixels(images[i : i + 256]))
                              for i in range(0, len(images), 256)])

    def batch(self, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = random.Random(f"{cfg.run.seed}-{step}")
        if self.edits is not None and random.Random(f"{cfg.run.seed}-{step}-edit").random() < cfg.data.edit_fraction:
            return self._edit_batch(rng, step, start, size)
        picks = [rng.randrange(len(self.captions)) for _ in range(cfg.run.batch_size)][start : start + size]
        states, masks, noises, sigmas = [], [], [], []
        for offset, index in enumerate(picks):
            g = torch.Generator().manual_seed(hash((cfg.run.seed, step, start + offset)) & 0x7FFFFFFF)
            drop = torch.rand((), generator=g).item() < cfg.data.caption_dropout
            states.append(self.null_states if drop else self.states[index])
            masks.append(self.null_mask if drop else self.masks[index])
            sigmas.append(flow.sample_timesteps(1, cfg.data.timesteps, cfg.data.timestep_shift, generator=g))
            noises.append(torch.randn(*self.latent_shape, generator=g))
        x0 = _pixels(self.images[picks]) if self.latents is None else self.latents[picks]  # (B, C, h, w)
        patch = self.pipe.patch
        batch = {"states": torch.stack(states).float(), "mask": torch.stack(masks), "sigma": torch.cat(sigmas),
                 "x0": patchify(x0, patch), "noise": patchify(torch.stack(noises), patch)}
        return self._with_layouts(batch, self.layouts, picks)

    @staticmethod
    def _with_layouts(batch: dict[str, torch.Tensor], layouts: tuple[torch.Tensor, torch.Tensor] | None,
                      picks: list[int]) -> dict[str, torch.Tensor]:
        if layouts is not None:
            batch["layout"], batch["layout_known"] = layouts[0][picks], layouts[1][picks]  # (B, T, K), (B,)
        return batch

    def _edit_batch(self, rng: random.Random, step: int, start: int, size: int) -> dict[str, torch.Tensor]:
        """A step of edits: every example has a reference image. Caption dropout keeps the reference,
        so the model learns the "uncond + reference" branch of three-way CFG; the plain "uncond"
        branch (no reference) is what the generation steps' dropout teaches."""
        cfg, edits = self.config, self.edits
        picks = [rng.randrange(len(edits.instructions)) for _ in range(cfg.run.batch_size)][start : start + size]
        states, masks, noises, sigmas = [], [], [], []
        for offset, index in enumerate(picks):
            g = torch.Generator().manual_seed(hash((cfg.run.seed, step, start + offset, "edit")) & 0x7FFFFFFF)
            drop = torch.rand((), generator=g).item() < cfg.data.caption_dropout
            row = len(self.captions) + index  # edit instructions follow the captions in the state cache
            states.append(self.null_states if drop else self.states[row])
            masks.append(self.null_mask if drop else self.masks[row])
            sigmas.append(flow.sample_timesteps(1, cfg.data.timesteps, cfg.data.timestep_shift, generator=g))
            noises.append(torch.randn(*self.latent_shape, generator=g))
        patch = self.pipe.patch
        batch = {"states": torch.stack(states).float(), "mask": torch.stack(masks), "sigma": torch.cat(sigmas),
                 "x0": patchify(edits.targets[picks], patch), "noise": patchify(torch.stack(noises), patch),
                 "reference": patchify(edits.sources[picks], patch)}
        return self._with_layouts(batch, edits.layouts, picks)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // spatial_factor(self.pipe.vae)
        return (latent_channels(self.pipe.vae), side, side)

    def samples(self, step: int, directory: Path) -> Image.Image:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        out = self.pipe(SAMPLE_PROMPTS, think=False, num_inference_steps=20, guidance_scale=3.0, seed=0)
        width = 64
        grid = Image.new("RGB", (len(out.images) * (width + 2), width), "white")
        for i, image in enumerate(out.images):
            grid.paste(image.resize((width, width), Image.NEAREST), (i * (width + 2), 0))
        grid.save(directory / f"step-{step:06d}.png")
        return grid

    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None:
        load_ema(self.model, ema)  # the saved pipeline carries the EMA weights
        self.pipe.bridge.eval()
        self.pipe.transformer.eval()
        self.pipe.save_pretrained(directory)
