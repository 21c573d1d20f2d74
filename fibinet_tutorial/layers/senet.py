"""SENet attention over fields (dynamic adaptation, 动态适应).

x: [B, F, d] -> [B, F, d], B = batch, F = number of fields, d = d_embed.
"""

from __future__ import annotations

import torch
from torch import nn


class SENetAttention(nn.Module):
    """Squeeze-and-Excitation over fields: learn a weight per field per sample.

    x: [B, F, d] -> [B, F, d]; `field_weights(x)` gives the weights [B, F].
    """

    def __init__(self, num_fields: int, reduction_ratio: float = 3):
        super().__init__()
        self.num_fields = num_fields
        reduced_size = max(1, int(num_fields / reduction_ratio))
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, reduced_size, bias=False),
            nn.ReLU(),
            nn.Linear(reduced_size, num_fields, bias=False),
            nn.ReLU(),
        )

    def field_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze (mean over d) then excite: [B, F, d] -> [B, F]."""
        if x.dim() != 3 or x.shape[1] != self.num_fields:
            raise ValueError(
                f"SENetAttention expects [batch_size, num_fields={self.num_fields}, "
                f"d_embed], got {list(x.shape)}"
            )
        return self.excitation(x.mean(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.field_weights(x).unsqueeze(-1)  # re-weight
