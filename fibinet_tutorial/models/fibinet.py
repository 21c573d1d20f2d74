"""FiBiNET (Huang, Zhang & Zhang, RecSys 2019): the model of notebooks 3 and 4.

x = (x_num, x_cat) -> logits [B]; see `models.base` for the input.

Not here: its layers (`layers.senet`, `layers.bilinear`), the input and the wide
part (`models.base`), FiBiNet++ (`models.fibinetpp`).
"""

from __future__ import annotations

import torch

from ..layers import (
    MLP,
    BilinearInteraction,
    BilinearInteractionLoop,
    SENetAttention,
    bilinear_both_branches,
)
from .base import CTRModel


class FiBiNET(CTRModel):
    """FiBiNET: wide part + (embeddings -> SENet -> bilinear -> MLP).

    Embeddings E [B, F, d] are re-weighted by SENet into V [B, F, d]; bilinear
    interactions of E and of V ([B, P, d] each, P = F(F-1)/2) are concatenated
    into [B, 2*P*d] (that is F(F-1)*d) and fed to the MLP; its output is added
    to the wide part (high/low fusion). Returns logits [B].

    shared_bilinear=False (default) gives E and V a bilinear layer each, as the
    paper's code and FuxiCTR v2 do: the raw and re-weighted embeddings are
    different inputs, and a second field_all matrix costs d*d parameters.
    shared_bilinear=True is the seed tutorial's model: one layer for both.
    fast=False swaps in the readable loop layer (same parameters, slower).
    """

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        d_embed: int = 8,
        mlp_layers: tuple[int, ...] = (128, 64, 32),
        mlp_dropout: float = 0.25,
        reduction_ratio: float = 3,
        bilinear_type: str = "field_all",
        shared_bilinear: bool = False,
        fast: bool = True,
        field_names: list[str] | None = None,
    ):
        super().__init__(d_numerical, categories, d_embed, field_names)
        F = self.num_fields
        if F < 2:
            raise ValueError("FiBiNET needs at least two fields to form a pair")
        self.bilinear_type = bilinear_type
        self.shared_bilinear = shared_bilinear
        self.fast = fast
        self.senet = SENetAttention(F, reduction_ratio)
        layer = BilinearInteraction if fast else BilinearInteractionLoop
        self.bilinear = layer(F, d_embed, bilinear_type)
        self.bilinear_se = None if shared_bilinear else layer(F, d_embed, bilinear_type)
        self.mlp = MLP(F * (F - 1) * d_embed, list(mlp_layers), mlp_dropout)

    def interactions(self, emb: torch.Tensor, se_emb: torch.Tensor) -> torch.Tensor:
        """Bilinear pairs of both embeddings: [B, F, d] x 2 -> [B, 2, P, d]."""
        return bilinear_both_branches(emb, se_emb, self.bilinear, self.bilinear_se)

    def field_importance(self, x) -> torch.Tensor:
        """SENet's weight of every field for every sample: [B, F]."""
        x_num, x_cat = self.check_inputs(x)
        return self.senet.field_weights(self.embed(x_num, x_cat))

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        emb = self.embed(x_num, x_cat)  # [B, F, d]
        pairs = self.interactions(emb, self.senet(emb))  # [B, 2, P, d]
        deep = self.mlp(pairs.flatten(1))  # [B, 1]
        return (self.linear(x_num, x_cat) + deep).squeeze(-1)
