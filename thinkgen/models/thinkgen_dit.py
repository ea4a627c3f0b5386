"""ThinkGen's DiT: the OmniGen2 / Lumina2-style transformer of the ThinkGen release.

Written from the architecture description (see the README's "Real checkpoints"); the parameter
names and shapes are the release's, so its safetensors load with strict key and shape checks.
The blocks are diffusers' own ``Lumina2TransformerBlock`` (same names: ``attn.to_q``,
``attn.norm_q``, ``feed_forward.linear_1``, ``norm1.linear`` ...), as is the time + caption
embedder; what is ThinkGen's is put together here:

* **prepadding**: ``prepad_embed`` (1, K, 2·text_feat_dim) learned states (K = 23 in the release)
  are put before the thinker's states *before* the caption embedder (RMSNorm eps 1e-5 + Linear
  of twice the LLM width: the last two layers, concatenated);
* **refiners**: 2 unmodulated blocks over the text alone, 2 modulated blocks over the noisy image
  alone, 2 over each reference image apart from the rest (plus a learned index embedding per
  reference; all references of a batch in one call, padded and masked, as the release runs them);
* **Omni-RoPE**: three axes; text token k sits at (k, k, k); an image at (s, row, col), where s is
  the number of text tokens (then each reference image advances s by its longer side). The
  rotation tables are complex128, as in the release, so the rotation runs in float64;
* **joint layers** over [text | references | noisy image], then a scale-only adaptive LayerNorm
  head; the last H/p · W/p tokens are the output.

Conventions (the pipeline's ``ThinkGenBackend`` adapts them): the model takes ``t`` with 0 = noise
and 1 = data and returns the velocity *data - noise*; latents are patchified in (p1, p2, c) order.

Sizes: D hidden, d head width, T = min(D, 1024) time width, P = p·p·C patch width, K prepadding.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import LuminaLayerNormContinuous
from diffusers.models.transformers.transformer_lumina2 import (
    Lumina2CombinedTimestepCaptionEmbedding,
    Lumina2TransformerBlock,
)
from torch import nn


def patchify(latent: torch.Tensor, p: int) -> torch.Tensor:
    """One latent (C, H, W) -> tokens (H/p · W/p, p·p·C), rows first, features in (p1, p2, c) order."""
    c, h, w = latent.shape
    x = latent.view(c, h // p, p, w // p, p).permute(1, 3, 2, 4, 0)  # (H/p, W/p, p1, p2, C)
    return x.reshape((h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, h: int, w: int, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (H/p · W/p, p·p·C) -> (C, H, W)."""
    c = tokens.shape[-1] // (p * p)
    x = tokens.view(h // p, w // p, p, p, c).permute(4, 0, 2, 1, 3)  # (C, H/p, p1, W/p, p2)
    return x.reshape(c, h, w)


def grid_ids(axis0: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Omni-RoPE positions of an image: (axis0, row, col) for each token, rows first: (N, 3)."""
    r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack([torch.full_like(r, axis0), r, c], dim=-1).view(-1, 3)


def _release_norms(block: Lumina2TransformerBlock) -> Lumina2TransformerBlock:
    """Use torch's ``nn.RMSNorm`` for a block's own norms, as the release does (its fused Triton
    kernel on GPUs): in bf16, diffusers' ``RMSNorm`` rounds the normalised values before the gain
    and drifts by a level or two. The query/key norms are diffusers' in the release too."""
    modulated = block.modulation
    for name in ("ffn_norm1", "norm2", "ffn_norm2") + (() if modulated else ("norm1",)):
        old = getattr(block, name)
        setattr(block, name, nn.RMSNorm(old.weight.shape[0], eps=old.eps))
    if modulated:
        block.norm1.norm = nn.RMSNorm(block.norm1.norm.weight.shape[0], eps=block.norm1.norm.eps)
    return block


# diffusers' step-cache hooks find a model's blocks by their class: the joint layers are Lumina2
# blocks, which take and return the hidden states alone (the text is part of that sequence)
TransformerBlockRegistry.register(
    model_class=Lumina2TransformerBlock,
    metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None))


class ThinkGenTransformer2DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, CacheMixin):
    """ThinkGen's OmniGen2-style DiT. Release size: ``hidden_size=2520, num_layers=32,
    num_attention_heads=21, num_kv_heads=7, text_feat_dim=4096`` (3.983B parameters).

    Training: ``enable_gradient_checkpointing()`` recomputes every block's activations in backward
    (diffusers' own switch), and peft LoRA adapters load and save as on diffusers' DiTs. Inference:
    diffusers' step caches (``enable_cache``) act on the joint ``layers``."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["Lumina2TransformerBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: int | None = None,
        hidden_size: int = 2520,
        num_layers: int = 32,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 21,
        num_kv_heads: int = 7,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        axes_dim_rope: tuple[int, int, int] = (40, 40, 40),
        axes_lens: tuple[int, int, int] = (10000, 10000, 10000),
        text_feat_dim: int = 4096,
        timestep_scale: float = 1000.0,
        num_prepadding: int = 23,  # the release hard-codes 23 states ...
        prepad_dim: int = 8192,  # ... of width 8192 (= 2 x Qwen3-VL-8B's 4096)
        max_reference_images: int = 5,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        if sum(axes_dim_rope) != hidden_size // num_attention_heads:
            raise ValueError(f"axes_dim_rope {tuple(axes_dim_rope)} must sum to the head width "
                             f"{hidden_size // num_attention_heads}")
        if prepad_dim != 2 * text_feat_dim:
            raise ValueError(f"prepad_dim ({prepad_dim}) must be twice text_feat_dim ({text_feat_dim})")
        patch_width = patch_size * patch_size * in_channels
        self.x_embedder = nn.Linear(patch_width, hidden_size)  # (P -> D), noisy latent patches
        self.ref_image_patch_embedder = nn.Linear(patch_width, hidden_size)  # reference patches
        # timestep -> (B, T); caption: RMSNorm(2K, eps) + Linear(2K -> D)
        self.time_caption_embed = Lumina2CombinedTimestepCaptionEmbedding(
            hidden_size=hidden_size, cap_feat_dim=2 * text_feat_dim, norm_eps=norm_eps)
        # the release scales t inside the sinusoid (t * freq * 1000, in fp32), not t before it
        self.time_caption_embed.time_proj.scale = timestep_scale
        self.time_caption_embed.caption_embedder[0] = nn.RMSNorm(2 * text_feat_dim, eps=norm_eps)
        # Prepadding states live in the thinker's feature space, before the caption embedder.
        # Initialised like ThinkGen's bridge: unit normal (the RMSNorm rescales them anyway).
        self.prepad_embed = nn.Parameter(torch.randn(1, num_prepadding, prepad_dim))
        self.register_buffer("prepad_mask", torch.ones(1, num_prepadding, dtype=torch.long), persistent=True)
        self.image_index_embedding = nn.Parameter(torch.randn(max_reference_images, hidden_size) * 0.02)

        def blocks(n: int, modulation: bool = True) -> nn.ModuleList:
            return nn.ModuleList(
                _release_norms(Lumina2TransformerBlock(hidden_size, num_attention_heads, num_kv_heads, multiple_of,
                                                       ffn_dim_multiplier, norm_eps, modulation=modulation))
                for _ in range(n))

        self.noise_refiner = blocks(num_refiner_layers)
        self.ref_image_refiner = blocks(num_refiner_layers)
        self.context_refiner = blocks(num_refiner_layers, modulation=False)
        self.layers = blocks(num_layers)
        # scale-only adaptive LayerNorm (no affine, eps 1e-6), then D -> P
        self.norm_out = LuminaLayerNormContinuous(
            embedding_dim=hidden_size, conditioning_embedding_dim=min(hidden_size, 1024), elementwise_affine=False,
            eps=1e-6, bias=True, out_dim=patch_size * patch_size * out_channels)
        self._rope_tables: list[torch.Tensor] | None = None
        self.gradient_checkpointing = False  # set by diffusers' enable_gradient_checkpointing()
        self._zero_init()

    def _zero_init(self) -> None:
        """adaLN and output projections start at zero, so every block starts as the identity and the
        model as 'predict zero' (irrelevant when loading weights)."""
        for block in [*self.noise_refiner, *self.ref_image_refiner, *self.layers]:
            nn.init.zeros_(block.norm1.linear.weight)
            nn.init.zeros_(block.norm1.linear.bias)
        for linear in (self.norm_out.linear_1, self.norm_out.linear_2):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    # ------------------------------------------------------------------ Omni-RoPE
    def rotations(self, ids: torch.Tensor) -> torch.Tensor:
        """Positions (..., 3) -> complex128 rotations (..., d/2): per axis a, angle = pos · 10000^(-2i/d_a)."""
        if self._rope_tables is None or self._rope_tables[0].device != ids.device:
            tables = []
            for dim, length in zip(self.config.axes_dim_rope, self.config.axes_lens, strict=True):
                freqs = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
                angles = torch.outer(torch.arange(length, dtype=torch.float64, device=ids.device), freqs)
                tables.append(torch.polar(torch.ones_like(angles), angles))  # (len_a, d_a / 2) complex128
            self._rope_tables = tables
        for axis, table in enumerate(self._rope_tables):
            if int(ids[..., axis].max()) >= table.shape[0]:
                raise ValueError(f"RoPE position {int(ids[..., axis].max())} on axis {axis} is beyond axes_lens "
                                 f"({table.shape[0]}): the text or image is too long for this model")
        return torch.cat([table[ids[..., a]] for a, table in enumerate(self._rope_tables)], dim=-1)

    def _run(self, block: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
        """One block, its activations recomputed in backward when gradient checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)

    # ------------------------------------------------------------------ forward
    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, text_hidden_states: torch.Tensor,
                text_attention_mask: torch.Tensor,
                ref_image_hidden_states: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Velocity (data - noise) for noisy latents.

        hidden_states (B, C, H, W); timestep (B,) with 0 = noise, 1 = data; text_hidden_states
        (B, L, 2K) right-padded, text_attention_mask (B, L); ref_image_hidden_states: per sample a
        list of reference latents (C, h, w). Returns (B, C, H, W).
        """
        p, device = self.config.patch_size, hidden_states.device
        batch, _, height, width = hidden_states.shape
        refs = ref_image_hidden_states or [[] for _ in range(batch)]

        # 1-2. prepadding before the caption embedder; time and caption embeddings
        prepad = self.prepad_embed.to(text_hidden_states.dtype).expand(batch, -1, -1)
        text = torch.cat([prepad, text_hidden_states], dim=1)  # (B, K + L, 2K)
        text_mask = torch.cat([self.prepad_mask.expand(batch, -1).to(text_attention_mask),
                               text_attention_mask], dim=1).bool()  # (B, K + L)
        temb, text = self.time_caption_embed(hidden_states, timestep, text)  # (B, T), (B, S, D)
        caps = text_mask.sum(dim=1).tolist()  # valid text tokens per sample (left-aligned)

        # 7. context refiner: text alone, text token k at (k, k, k)
        text_ids = torch.arange(text.shape[1], device=device)[:, None].expand(-1, 3)
        text_rot = self.rotations(text_ids)[None].expand(batch, -1, -1)
        for block in self.context_refiner:
            text = self._run(block, text, text_mask, text_rot)

        # 3, 4, 8. image tokens: noisy image and references, each refined apart from the others
        rows, cols = height // p, width // p
        noise = self.x_embedder(torch.stack([patchify(x, p) for x in hidden_states]))  # (B, N, D)
        starts, ref_tokens, ref_ids = [], [[] for _ in range(batch)], [[] for _ in range(batch)]
        flat, rotations, owners = [], [], []  # every reference of the batch: tokens (n_k, D), RoPE, sample
        for i in range(batch):
            start = caps[i]
            for j, ref in enumerate(refs[i]):
                r, c = ref.shape[-2] // p, ref.shape[-1] // p
                flat.append(self.ref_image_patch_embedder(patchify(ref.to(noise.dtype), p)) + self.image_index_embedding[j])
                owners.append(i)
                ref_ids[i].append(grid_ids(start, r, c, device))
                rotations.append(self.rotations(ref_ids[i][-1]))
                start += max(r, c)
            starts.append(start)
        if flat:
            # all references refined in one batch, right-padded with a mask, as the release does
            # (each alone is the same in exact arithmetic, but rounds differently in bf16)
            longest = max(x.shape[0] for x in flat)
            batch_refs = noise.new_zeros(len(flat), longest, noise.shape[-1])  # (R, n_max, D)
            batch_mask = torch.zeros(len(flat), longest, dtype=torch.bool, device=device)
            batch_rot = rotations[0].new_zeros(len(flat), longest, rotations[0].shape[-1])
            for k, (x, rot) in enumerate(zip(flat, rotations, strict=True)):
                batch_refs[k, : len(x)], batch_mask[k, : len(x)], batch_rot[k, : len(x)] = x, True, rot
            for block in self.ref_image_refiner:
                batch_refs = self._run(block, batch_refs, batch_mask, batch_rot, temb[owners])
            for k, (x, i) in enumerate(zip(flat, owners, strict=True)):
                ref_tokens[i].append(batch_refs[k, : len(x)])
        noise_ids = torch.stack([grid_ids(s, rows, cols, device) for s in starts])  # (B, N, 3)
        noise_rot = self.rotations(noise_ids)
        for block in self.noise_refiner:
            noise = self._run(block, noise, None, noise_rot, temb)

        # 9. joint sequence per sample [text | refs | noise], right-padded
        sequences, positions = [], []
        for i in range(batch):
            sequences.append(torch.cat([text[i, : caps[i]], *ref_tokens[i], noise[i]]))
            positions.append(torch.cat([text_ids[: caps[i]], *ref_ids[i], noise_ids[i]]))
        length = max(s.shape[0] for s in sequences)
        joint = noise.new_zeros(batch, length, noise.shape[-1])  # (B, S_joint, D)
        joint_ids = torch.zeros(batch, length, 3, dtype=torch.long, device=device)
        joint_mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        for i, (sequence, position) in enumerate(zip(sequences, positions, strict=True)):
            joint[i, : len(sequence)], joint_ids[i, : len(sequence)], joint_mask[i, : len(sequence)] = sequence, position, True
        joint_rot = self.rotations(joint_ids)
        for block in self.layers:
            joint = self._run(block, joint, joint_mask, joint_rot, temb)

        # 10. head; the last N valid tokens are the noisy image
        out = self.norm_out(joint, temb)  # (B, S_joint, P)
        n = rows * cols
        return torch.stack([unpatchify(out[i, len(s) - n : len(s)], height, width, p)
                            for i, s in enumerate(sequences)])  # (B, C, H, W)
