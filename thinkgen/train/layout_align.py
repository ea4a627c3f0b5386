"""Layout alignment: a DiT stage's second loss, teaching an early block where each object is.

REPA (Yu et al., 2024) speeds up DiT training by aligning an early block's hidden states with a
pretrained image encoder's features. ShapeWorld needs no encoder: every training scene is known
exactly, so each image token's content can be named. A small head reads block ``layer``'s image
tokens and predicts, per token, the share of its pixels covered by each *layout class*
(background, one class per colour and shape, text ink); the loss is the cross-entropy against
those shares. The head trains with the DiT and is dropped when the pipeline is saved.

Why it may help here: the embedded DiT draws single objects well and fails at scenes of several
(counts, which colour goes with which shape; docs/dit_experiments.md). The flow loss teaches a
layout only through pixel errors; this one names it at every token, at every noise level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..world.render import shape_mask, text_mask
from ..world.scene import COLORS, SHAPES, Scene
from .config import ConfigError
from .dit_stage import FlowModule

# index 0 is the background, then every (colour, shape), then text ink
LAYOUT_CLASSES: tuple[str, ...] = ("background", *(f"{c} {s}" for c in COLORS for s in SHAPES), "text")
_INDEX = {name: i for i, name in enumerate(LAYOUT_CLASSES)}


def layout_map(scene: Scene, resolution: int) -> np.ndarray:
    """``(H, W)`` int class index of every pixel, painted in the renderer's order (later objects
    cover earlier ones, text last), so it names what :func:`~thinkgen.world.render.render` draws."""
    classes = np.zeros((resolution, resolution), dtype=np.int64)
    for obj in scene.objects:
        classes[shape_mask(obj, resolution)] = _INDEX[f"{obj.color} {obj.shape}"]
    if scene.text:
        classes[text_mask(scene.text, resolution, bool(scene.objects))] = _INDEX["text"]
    return classes


def token_layouts(scenes: list[Scene | None], resolution: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token class shares ``(N, grid * grid, K)`` (fp16; each token covers a square of
    ``resolution // grid`` pixels, in patchify's row-major order) and ``(N,)`` whether the row has a
    scene (a replayed drawing does not: its row is zero and its loss masked out)."""
    if resolution % grid:
        raise ValueError(f"a {resolution} px image does not split into {grid} x {grid} tokens")
    side, k = resolution // grid, len(LAYOUT_CLASSES)
    shares = torch.zeros(len(scenes), grid * grid, k, dtype=torch.float16)
    known = torch.zeros(len(scenes), dtype=torch.bool)
    for row, scene in enumerate(scenes):
        if scene is None:
            continue
        classes = layout_map(scene, resolution).reshape(grid, side, grid, side).transpose(0, 2, 1, 3)
        onehot = np.eye(k, dtype=np.float32)[classes.reshape(grid * grid, side * side)]  # (T, side², K)
        shares[row] = torch.from_numpy(onehot.mean(axis=1))
        known[row] = True
    return shares, known


class LayoutHead(nn.Module):
    """Block hidden states ``(B, T, D)`` -> layout logits ``(B, T, K)``: a two-layer MLP, as REPA's
    projector, so the block's states need only make the layout easy to read, not be it."""

    def __init__(self, width: int, classes: int = len(LAYOUT_CLASSES)) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, classes))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden)


class LayoutAlignedFlow(FlowModule):
    """:class:`FlowModule`'s rectified-flow loss plus ``weight`` times the layout loss of block
    ``layer`` (0 = the first) of a ``QwenImageTransformer2DModel``. The block's output is caught
    by a forward hook; its first ``T`` image tokens are read (an edit's reference tokens follow)."""

    def __init__(self, bridge: nn.Module, transformer: nn.Module, grid: tuple[int, int], layer: int,
                 weight: float) -> None:
        super().__init__(bridge, transformer, grid)
        blocks = getattr(transformer, "transformer_blocks", None)
        if blocks is None:
            raise ConfigError(f"layout_align reads a QwenImageTransformer2DModel's blocks, not "
                              f"{type(transformer).__name__}'s")
        if not 0 <= layer < len(blocks):
            raise ConfigError(f"layout_align.layer {layer}: the DiT has blocks 0-{len(blocks) - 1}")
        self.layer, self.weight = layer, weight
        self.head = LayoutHead(transformer.config.num_attention_heads * transformer.config.attention_head_dim)
        self._caught: torch.Tensor | None = None  # block ``layer``'s image states of this forward
        blocks[layer].register_forward_hook(self._catch)
        self.last_layout_loss = torch.tensor(float("nan"))  # read by DiTStage.metrics, kept as a tensor (no sync)

    def _catch(self, module: nn.Module, args: tuple, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.training:
            self._caught = output[1]  # the block returns (text states, image states)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        flow_loss = super().forward(batch)
        if not self.training or "layout" not in batch:
            return flow_loss
        target = batch["layout"].float()  # (B, T, K)
        hidden = self._caught[:, : target.shape[1]]  # (B, T, D): image tokens only
        self._caught = None
        logp = F.log_softmax(self.head(hidden.float()), dim=-1)  # (B, T, K)
        per_row = -(target * logp).sum(-1).mean(-1)  # (B,)
        known = batch["layout_known"].float()
        layout_loss = (per_row * known).sum() / known.sum().clamp(min=1)
        self.last_layout_loss = layout_loss.detach()
        return flow_loss + self.weight * layout_loss
