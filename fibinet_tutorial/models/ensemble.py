"""Several copies of one model trained from different seeds, averaged.

Not here: how many seeds a run trains (`train.hparams.auto_seeds`), training them
(`train.job`).
"""

from __future__ import annotations

import torch
from torch import nn


class SeedEnsemble(nn.Module):
    """Copies of one model trained from different seeds; their logits averaged.

    On a few thousand rows one FiBiNET's test AUC moves a lot with
    nothing but its seed; the average of a few copies is steadier and better
    (`train.auto_seeds` uses several on small files; the evidence is in
    benchmarks/SMALL_FILES.md). Returns logits [B].
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def field_names(self) -> list[str]:
        return self.members[0].field_names

    def forward(self, x) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)

    def field_importance(self, x) -> torch.Tensor:
        """The members' SENet weights, averaged: [B, F]."""
        return torch.stack([m.field_importance(x) for m in self.members]).mean(0)
