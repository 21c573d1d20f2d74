"""Factorization machines' pair terms: FM (one vector per feature) and FFM (one
vector per feature per other field). Notebook 2 builds up to the bilinear
layer from these two.

Shapes use B = batch, F = number of fields, d = d_embed.

Not here: the FM model (`models.baselines`), FiBiNET's bilinear layer
(`layers.bilinear`), the embeddings (`layers.embedding`).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from .embedding import field_offsets


class FMInteraction(nn.Module):
    """Second-order FM term: sum over pairs of <v_i, v_j>, in O(F d).

    x: [B, F, d] -> [B, 1]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square_of_sum = x.sum(dim=1).pow(2)
        sum_of_square = x.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)


class FFMInteraction(nn.Module):
    """Field-aware FM over categorical fields: a vector per feature per other field.

    Feature x_i of field i has f-1 vectors, one for each field it can meet; the
    pair (i, j) uses <v[x_i, j], v[x_j, i]>. Parameters: (f-1) * n * k.
    x_cat: [B, f] -> [B, 1]
    """

    def __init__(self, categories: list[int], d_embed: int):
        super().__init__()
        f = len(categories)
        self.embedding = nn.Embedding(sum(categories), (f - 1) * d_embed)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.register_buffer("offsets", field_offsets(categories), persistent=False)
        i, j = zip(*combinations(range(f), 2))
        # slot of field j among field i's f-1 vectors (its own field is skipped)
        self.register_buffer("i", torch.tensor(i), persistent=False)
        self.register_buffer("j", torch.tensor(j), persistent=False)
        self.f, self.d_embed = f, d_embed

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        v = self.embedding(x_cat + self.offsets)  # [B, f, (f-1)*k]
        v = v.view(len(x_cat), self.f, self.f - 1, self.d_embed)
        v_ij = v[:, self.i, self.j - 1]  # x_i's vector for field j (j > i)
        v_ji = v[:, self.j, self.i]  # x_j's vector for field i (i < j)
        return (v_ij * v_ji).sum(dim=(1, 2)).unsqueeze(-1)
