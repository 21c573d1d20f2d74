"""The baselines FiBiNET is compared with: logistic regression, FM and DeepFM.

Each adds one thing to the one before: LR is the wide part alone; FM adds a
second-order term over all fields' embeddings; DeepFM adds an MLP that reads
the same embeddings. Notebook 0 trains the three side by side.

x = (x_num, x_cat) -> logits [B]; see `models.base` for the input.

Not here: the FM pair term (`layers.factorization`), the wide part (`models.base`),
FiBiNET (`models.fibinet`).
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


class FM(CTRModel):
    """Factorization machine (Rendle 2010): wide part + FM second-order term.

    logit = wide(x) + sum over field pairs i < j of <e_i, e_j>, where e_f is
    field f's embedding (a categorical field's vector for its value, a numeric
    field's vector times its value). Parameters: n (d_embed + 1) + 2 for
    n = d_numerical + sum(categories) features (a weight and a vector each)
    and the two biases of the wide part. Returns logits [B].
    """

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        d_embed: int = 8,
        field_names: list[str] | None = None,
    ):
        super().__init__(d_numerical, categories, d_embed, field_names)
        if self.num_embedding is not None:
            # The FM term adds up every pairwise dot product with no normalisation:
            # with the seed's U(-1, 1) numeric vectors it starts in the tens and
            # trains several times slower. Start them as small as the
            # categorical embeddings instead.
            nn.init.normal_(self.num_embedding.weight, std=0.01)
        self.fm = FMInteraction()

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        emb = self.embed(x_num, x_cat)  # [B, F, d]
        return (self.linear(x_num, x_cat) + self.fm(emb)).squeeze(-1)


class DeepFM(FM):
    """DeepFM (Guo et al. 2017): FM plus an MLP over the same embeddings.

    wide part + FM second-order term + MLP(flattened embeddings [B, F * d]);
    the FM term and the MLP share one embedding table. Returns logits [B].
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
        self.mlp = MLP(self.num_fields * d_embed, list(mlp_layers), mlp_dropout)

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        emb = self.embed(x_num, x_cat)  # [B, F, d]
        out = self.linear(x_num, x_cat) + self.fm(emb) + self.mlp(emb.flatten(1))
        return out.squeeze(-1)
