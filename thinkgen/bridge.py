"""VGI-refine: the bridge from the thinker's states to the diffusion transformer's text stream.

ThinkGen keeps the thinker's states after ``</think>`` (the cut is done by the thinker), prepends
``K`` learnable *prepadding* states, and maps everything to the DiT's text width with a connector.
The paper's ablation found a plain ``RMSNorm + Linear`` connector best; ``mlp`` and
``transformer`` connectors are here for the same ablation.

Shapes: ``B`` batch, ``T`` thinker positions, ``K`` prepadding states, ``C_in`` thinker channels
(``num_layers * hidden_size``), ``C_out`` the DiT's ``joint_attention_dim``.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

CONNECTORS = ("linear", "mlp", "transformer")


class Bridge(ModelMixin, ConfigMixin):
    """Prepadding states + connector; saved and loaded like any diffusers model."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_prepadding: int = 23,
        connector: str = "linear",
        num_heads: int = 4,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {connector!r}")
        if num_prepadding < 0:
            raise ValueError(f"num_prepadding must be >= 0, got {num_prepadding}")
        # Random-normal like ThinkGen: the connector's RMSNorm rescales them anyway, so unit
        # variance puts them on the same footing as the normalised thinker states.
        self.prepadding_states = nn.Parameter(torch.randn(1, num_prepadding, in_channels))
        self.norm = nn.RMSNorm(in_channels, eps=eps)
        self.proj = nn.Linear(in_channels, out_channels)
        if connector == "mlp":
            self.refine = nn.Sequential(nn.GELU(approximate="tanh"), nn.Linear(out_channels, out_channels))
        elif connector == "transformer":
            self.refine = nn.TransformerEncoderLayer(
                out_channels, num_heads, dim_feedforward=4 * out_channels, batch_first=True,
                norm_first=True, activation="gelu",
            )
        else:
            self.refine = None

    @property
    def num_prepadding(self) -> int:
        return self.prepadding_states.shape[1]

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map thinker states ``(B, T, C_in)`` with mask ``(B, T)`` to DiT text states.

        Returns ``(B, K + T, C_out)`` and its mask ``(B, K + T)``: the K prepadding positions are
        always valid, the thinker's padding stays masked.
        """
        batch = states.shape[0]
        prepadding = self.prepadding_states.to(states.dtype).expand(batch, -1, -1)  # (B, K, C_in)
        x = torch.cat([prepadding, states], dim=1)  # (B, K + T, C_in)
        full_mask = torch.cat(
            [mask.new_ones(batch, self.num_prepadding), mask], dim=1
        )  # (B, K + T)
        x = self.proj(self.norm(x))  # (B, K + T, C_out)
        if isinstance(self.refine, nn.TransformerEncoderLayer):
            x = self.refine(x, src_key_padding_mask=~full_mask.bool())  # (B, K + T, C_out)
        elif self.refine is not None:
            x = x + self.refine(x)  # (B, K + T, C_out)
        x = x * full_mask[..., None].to(x.dtype)  # padding carries exact zeros
        return x, full_mask
