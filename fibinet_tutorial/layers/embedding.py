"""Fields as vectors: numeric and categorical embeddings, and the wide part's
per-category weights.

Shapes use B = batch, F = number of fields, d = d_embed.
"""

from __future__ import annotations

import torch
from torch import nn

from ..fast import lookup  # = nn.functional.embedding, faster backward on a CPU


def field_offsets(categories: list[int]) -> torch.Tensor:
    """Start row of each field's block in one shared embedding table."""
    return torch.tensor([0, *categories[:-1]], dtype=torch.long).cumsum(0)


class NumEmbedding(nn.Module):
    """One learned vector per numeric field, scaled by the field's value.

    x_num: [B, n_num] -> [B, n_num, d_embed]
    """

    def __init__(self, num_fields: int, d_embed: int):
        super().__init__()
        # U(-1, 1): what nn.Linear(1, d_embed) gives each field's vector
        self.weight = nn.Parameter(torch.empty(num_fields, d_embed).uniform_(-1, 1))

    def forward(self, x_num: torch.Tensor) -> torch.Tensor:
        return x_num.unsqueeze(-1) * self.weight

    def extra_repr(self) -> str:
        return f"num_fields={self.weight.shape[0]}, d_embed={self.weight.shape[1]}"


class CatEmbedding(nn.Module):
    """Embeddings of categorical fields from one table with per-field offsets.

    x_cat: [B, n_cat] (index within each field) -> [B, n_cat, d_embed]
    """

    def __init__(self, categories: list[int], d_embed: int):
        super().__init__()
        self.embedding = nn.Embedding(sum(categories), d_embed)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.register_buffer("offsets", field_offsets(categories), persistent=False)

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        return lookup(self.embedding.weight, x_cat + self.offsets)


class CatLinear(nn.Module):
    """First-order (wide) term of categorical fields: one weight per category.

    Equivalent to one-hot encoding followed by nn.Linear, without the one-hot.
    x_cat: [B, n_cat] -> [B, d_out]
    """

    def __init__(self, categories: list[int], d_out: int = 1):
        super().__init__()
        self.fc = nn.Embedding(sum(categories), d_out)
        nn.init.xavier_uniform_(self.fc.weight)
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.register_buffer("offsets", field_offsets(categories), persistent=False)

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        return lookup(self.fc.weight, x_cat + self.offsets).sum(dim=1) + self.bias
