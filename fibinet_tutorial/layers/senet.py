"""SENet attention over fields (dynamic adaptation, 动态适应), and FiBiNet++'s SENet+.

- `SENetAttention` (FiBiNET): one weight per field per sample.
- `SENetPlus` (FiBiNet++): one weight per embedding *element* per sample, from a
  richer squeeze, then a skip connection and a LayerNorm.

x: [B, F, d] -> [B, F, d], B = batch, F = number of fields, d = d_embed.

Not here: SENet+ on the batch-innermost layout (`fast.columns`), SENet's weights
averaged over a data set (`train.evaluation.mean_field_importance`), their figures
(`plots`).
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


class SENetPlus(nn.Module):
    """SENet+ of FiBiNet++ (Zhang, Zheng & Zhang 2023): bit-wise re-weighting.

    As the authors' code runs it (`fibinet/run.py`, preset "++";
    `SENETLayer` in `fibinet/model/components/layers.py`):

    1. squeeze: each field's d numbers split into `num_groups` groups of
       d/num_groups; the mean of every group, then the max of every group
       -> z [B, 2 * num_groups * F] (all means first, field by field);
    2. excitation: Linear -> ReLU -> Linear, no biases, no final activation,
       to F*d outputs: a weight per embedding element, a [B, F, d] (which
       can be negative);
    3. re-weight and fuse: x * a + x, the skip connection (so an element's
       gain is 1 + a);
    4. LayerNorm over each field's d numbers (one scale and shift of size d
       shared by all fields, eps 1e-6).

    The hidden size is max(1, int(2 * num_groups * F / reduction_ratio)):
    the reduction applies to the squeezed size, as in the authors' code.
    Weights start Glorot-normal, as there.
    x: [B, F, d] -> [B, F, d]; `bit_weights(x)` gives a: [B, F, d].
    """

    def __init__(
        self,
        num_fields: int,
        d_embed: int,
        reduction_ratio: float = 3,
        num_groups: int = 2,
    ):
        super().__init__()
        if num_groups < 1 or d_embed % num_groups:
            raise ValueError(
                f"SENetPlus needs d_embed divisible by num_groups; got "
                f"d_embed={d_embed}, num_groups={num_groups}"
            )
        self.num_fields, self.d_embed, self.num_groups = num_fields, d_embed, num_groups
        squeezed = 2 * num_groups * num_fields  # a mean and a max per group
        reduced_size = max(1, int(squeezed / reduction_ratio))
        self.excitation = nn.Sequential(
            nn.Linear(squeezed, reduced_size, bias=False),
            nn.ReLU(),
            nn.Linear(reduced_size, num_fields * d_embed, bias=False),
        )
        for layer in self.excitation[::2]:
            nn.init.xavier_normal_(layer.weight)
        self.norm = nn.LayerNorm(d_embed, eps=1e-6)

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and max of every group: [B, F, d] -> [B, 2 * num_groups * F]."""
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.num_fields, self.d_embed):
            raise ValueError(
                f"SENetPlus expects [batch_size, num_fields={self.num_fields}, "
                f"d_embed={self.d_embed}], got {list(x.shape)}"
            )
        groups = x.reshape(len(x), self.num_fields * self.num_groups, -1)
        return torch.cat([groups.mean(dim=-1), groups.amax(dim=-1)], dim=1)

    def bit_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze then excite: [B, F, d] -> a weight per element [B, F, d]."""
        return self.excitation(self.squeeze(x)).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x * self.bit_weights(x) + x)  # re-weight, skip, normalise

    def extra_repr(self) -> str:
        return (
            f"num_fields={self.num_fields}, d_embed={self.d_embed}, "
            f"num_groups={self.num_groups}"
        )
