"""The baselines FiBiNET is compared with: logistic regression and DeepFM.

x = (x_num, x_cat) -> logits [B]; see `models.base` for the input.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import MLP, FMInteraction
from .base import CTRModel


class LogisticRegression(CTRModel):
    """The wide part alone: one weight per numeric field and per category."""

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        field_names: list[str] | None = None,
    ):
        super().__init__(d_numerical, categories, None, field_names)

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        return self.linear(x_num, x_cat).squeeze(-1)


class DeepFM(CTRModel):
    """DeepFM: wide part + FM second-order term + MLP over the embeddings.

    The FM term and the MLP share one embedding table. Returns logits [B].
    """

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        d_embed: int = 8,
        mlp_layers: tuple[int, ...] = (128, 64, 32),
        mlp_dropout: float = 0.25,
        field_names: list[str] | None = None,
    ):
        super().__init__(d_numerical, categories, d_embed, field_names)
        if self.num_embedding is not None:
            # The FM term adds up every pairwise dot product with no normalisation:
            # with the seed's U(-1, 1) numeric vectors it starts in the tens and
            # DeepFM trains several times slower. Start them as small as the
            # categorical embeddings instead.
            nn.init.normal_(self.num_embedding.weight, std=0.01)
        self.fm = FMInteraction()
        self.mlp = MLP(self.num_fields * d_embed, list(mlp_layers), mlp_dropout)

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        emb = self.embed(x_num, x_cat)
        out = self.linear(x_num, x_cat) + self.fm(emb) + self.mlp(emb.flatten(1))
        return out.squeeze(-1)
