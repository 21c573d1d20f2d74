"""Fields as vectors: numeric and categorical embeddings, the wide part's
per-category weights, and FiBiNet++'s normalisation of the embeddings.

Shapes use B = batch, F = number of fields, d = d_embed.

Not here: category values mapped to indices (`data.preprocessing`), the fast lookup
(`fast.blocks`), the norms on the batch-innermost layout (`fast.columns`), the wide
part assembled (`models.base`).
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


def _check_embeddings(x: torch.Tensor, num_fields: int | None, d_embed: int, name: str):
    """Raise a ValueError unless x is [batch_size, num_fields, d_embed]."""
    fields_ok = num_fields is None or x.shape[1] == num_fields
    if x.dim() != 3 or not fields_ok or x.shape[2] != d_embed:
        fields = "num_fields" if num_fields is None else f"num_fields={num_fields}"
        raise ValueError(
            f"{name} expects [batch_size, {fields}, d_embed={d_embed}], "
            f"got {list(x.shape)}"
        )


class FieldBatchNorm(nn.BatchNorm1d):
    """BatchNorm of each embedding *dimension* over batch x fields (FiBiNet++).

    What the authors' code does to the categorical embeddings: Keras
    `BatchNormalization(axis=-1)` on [B, F, d] keeps one mean and variance per
    embedding dimension k, computed over all B*F vectors of the batch, not one
    per field. A scale and shift of size d; eps 1e-3 as Keras's.
    momentum 0.1 (PyTorch's default; the MLP's BatchNorm uses it too): the
    authors' Keras layer averages with 0.99 (momentum 0.01 here) over
    Criteo's tens of thousands of steps an epoch; on a few hundred steps its
    running statistics, which evaluation uses, would still lag behind.
    x: [B, F, d] -> [B, F, d]
    """

    def __init__(self, d_embed: int, eps: float = 1e-3, momentum: float = 0.1):
        super().__init__(d_embed, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_embeddings(x, None, self.num_features, type(self).__name__)
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)


def field_batch_norm_reference(x, weight, bias, eps: float = 1e-3) -> torch.Tensor:
    """`FieldBatchNorm` in training mode, as the formula reads.

    For each dimension k: mean and (biased) variance of x[:, :, k] over
    batch and fields together, then (x - mean) / sqrt(var + eps) * weight + bias.
    x: [B, F, d] -> [B, F, d]
    """
    mean = x.mean(dim=(0, 1))  # [d]: one per embedding dimension
    var = ((x - mean) ** 2).mean(dim=(0, 1))  # [d]
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


class NumLayerNorm(nn.Module):
    """LayerNorm of each numeric field's vector over its d numbers (FiBiNet++).

    A numeric field's embedding is x * v (`NumEmbedding`); normalised over d it
    becomes LN(x v) = sign(x) LN(v) whenever |x| std(v) is well above
    sqrt(eps): the size of the value is erased, only its sign is left
    (notebook 5 shows it). A scale and shift per field and element
    ([F, d], the authors' `SimpleLayerNormalization(False)`), eps 1e-6.
    x: [B, F, d] -> [B, F, d]
    """

    def __init__(self, num_fields: int, d_embed: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_fields, d_embed))
        self.bias = nn.Parameter(torch.zeros(num_fields, d_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F, d = self.weight.shape
        _check_embeddings(x, F, d, type(self).__name__)
        normed = nn.functional.layer_norm(x, (d,), eps=self.eps)
        return normed * self.weight + self.bias

    def extra_repr(self) -> str:
        F, d = self.weight.shape
        return f"num_fields={F}, d_embed={d}, eps={self.eps:g}"
