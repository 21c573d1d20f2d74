"""Bilinear feature interaction (weight sharing, 权值共享): every field pair
through a shared d x d matrix.

Pair (i, j) with matrix m gives the Hadamard product (v_i @ W[m]) * v_j; the
three types differ in how many matrices there are (`bilinear_weight_shape`).
`BilinearInteractionLoop` is the formula as it reads; `BilinearInteraction`
computes the same numbers with the hand-written kernel in
`fibinet_tutorial/fast/bilinear_kernel.py` (tests prove them equal).

Shapes use B = batch, F = number of fields, d = d_embed,
P = F*(F-1)/2 = number of field pairs.

Not here: the hand-written kernel behind `BilinearInteraction`
(`fast.bilinear_kernel`), FiBiNet++'s Bilinear+ (`layers.bilinear_plus`), the FM/FFM
pair terms (`layers.factorization`).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from ..fast import bilinear_interaction

BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


def _check_fields(x: torch.Tensor, num_fields: int, d_embed: int, name: str):
    """Raise a ValueError unless x is [..., num_fields, d_embed] floating point."""
    if x.dim() < 3 or tuple(x.shape[-2:]) != (num_fields, d_embed):
        raise ValueError(
            f"{name} expects input of shape [batch_size, num_fields={num_fields}, "
            f"d_embed={d_embed}], got {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating point tensor, got {x.dtype}")


def bilinear_weight_shape(num_fields: int, d_embed: int, bilinear_type: str):
    """[n, d, d]: one matrix, one per field, or one per field pair."""
    if bilinear_type not in BILINEAR_TYPES:
        raise ValueError(
            f"bilinear_type must be one of {', '.join(BILINEAR_TYPES)}; "
            f"got {bilinear_type!r}"
        )
    n = {
        "field_all": 1,
        "field_each": num_fields,
        "field_interaction": num_fields * (num_fields - 1) // 2,
    }[bilinear_type]
    return (n, d_embed, d_embed)


class _BilinearBase(nn.Module):
    """Holds the weight [n, d, d]; pair (i, j) with matrix m: (v_i @ W[m]) * v_j."""

    def __init__(self, num_fields: int, d_embed: int, bilinear_type: str = "field_all"):
        super().__init__()
        if num_fields < 2:
            raise ValueError(
                f"a bilinear layer needs num_fields >= 2, got {num_fields}"
            )
        shape = bilinear_weight_shape(num_fields, d_embed, bilinear_type)
        self.num_fields, self.d_embed = num_fields, d_embed
        self.bilinear_type = bilinear_type
        # each matrix initialised like the seed's nn.Linear(d, d, bias=False)
        bound = 1 / d_embed**0.5
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))

    def extra_repr(self) -> str:
        return (
            f"num_fields={self.num_fields}, d_embed={self.d_embed}, "
            f"bilinear_type={self.bilinear_type!r}"
        )


class BilinearInteractionLoop(_BilinearBase):
    """Bilinear interaction as the formula reads: a loop over field pairs.

    Slow (one small product per pair); kept for teaching and as the reference
    the fast `BilinearInteraction` is tested against.
    x: [B, F, d] -> [B, F*(F-1)/2, d]  (also [B, S, F, d] -> [B, S, P, d])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_fields(x, self.num_fields, self.d_embed, type(self).__name__)
        v = x.unbind(dim=-2)  # F tensors of shape [..., d]
        out = []
        for p, (i, j) in enumerate(combinations(range(self.num_fields), 2)):
            m = {"field_all": 0, "field_each": i, "field_interaction": p}
            out.append((v[i] @ self.weight[m[self.bilinear_type]]) * v[j])
        return torch.stack(out, dim=-2)


class BilinearInteraction(_BilinearBase):
    """Bilinear interaction of every field pair (fast; see `fast.bilinear_kernel`).

    x: [B, F, d] -> [B, F*(F-1)/2, d], pairs in itertools.combinations order.
    x: [B, S, F, d] -> [B, S, P, d] applies the same weights to S stacks
    (FiBiNET's raw and SENet-weighted embeddings) in one call.
    The output is a view whose batch dimension is innermost in memory;
    `flatten(1)` keeps it a view (a `view` that merges the batch dimension
    with others cannot, use `reshape` there).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_fields(x, self.num_fields, self.d_embed, type(self).__name__)
        return bilinear_interaction(x, self.weight.unsqueeze(0), self.bilinear_type)


def bilinear_both_branches(emb, se_emb, layer, layer_se=None) -> torch.Tensor:
    """FiBiNET's interactions: the pairs of E through `layer` and of V through
    `layer_se` (through `layer` too when None, the seed's shared layer).

    emb, se_emb: [B, F, d] -> [B, 2, P, d] (branch 0 from E, 1 from V). Two
    fast layers run both branches in one kernel call, one weight each.
    """
    stacked = torch.stack([emb, se_emb], dim=1)  # [B, 2, F, d]
    if layer_se is None:
        return layer(stacked)
    if isinstance(layer, BilinearInteraction):
        _check_fields(stacked, layer.num_fields, layer.d_embed, type(layer).__name__)
        weight = torch.stack([layer.weight, layer_se.weight])
        return bilinear_interaction(stacked, weight, layer.bilinear_type)
    return torch.stack([layer(emb), layer_se(se_emb)], dim=1)
