"""Bilinear+ of FiBiNet++: a scalar per field pair, projected to a few numbers.

FiBiNET's bilinear layer (`layers.bilinear`) gives each pair (i, j) a
*vector*, the Hadamard product (v_i W) * v_j: P*d numbers per branch. Bilinear+
keeps the shared matrix W but takes the *inner product* (v_i W) . v_j, one
number per pair, and then a linear layer projects the P numbers down to
`projection_dim` (50 in the authors' code). That projection, with nothing
non-linear between it and the MLP's first layer, is the "Low Rank Layer" of
the CIKM 2023 paper: the two together are a rank-50 factorisation of what
would otherwise be one wide layer reading all P numbers (notebook 5, section 5.2.3).

`BilinearPlusLoop` is the formula as it reads (a loop over pairs);
`BilinearPlus` computes the same numbers with one batched matrix product and
one gather (tests prove them equal, outputs and gradients).

Shapes use B = batch, F = number of fields, d = d_embed,
P = F*(F-1)/2 = number of field pairs, k = projection_dim.

Not here: FiBiNET's bilinear layer and the weight shapes shared with it
(`layers.bilinear`), SENet+ (`layers.senet`), the model and the authors'
`projection_dim` (`models.fibinetpp`).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from .bilinear import _check_fields, bilinear_weight_shape


class _BilinearPlusBase(nn.Module):
    """The weight [n, d, d] and the projection P -> k (None: no projection)."""

    def __init__(
        self,
        num_fields: int,
        d_embed: int,
        bilinear_type: str = "field_all",
        projection_dim: int | None = 50,
    ):
        super().__init__()
        if num_fields < 2:
            raise ValueError(f"Bilinear+ needs num_fields >= 2, got {num_fields}")
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(
                f"projection_dim must be >= 1 or None, got {projection_dim}"
            )
        shape = bilinear_weight_shape(num_fields, d_embed, bilinear_type)
        self.num_fields, self.d_embed = num_fields, d_embed
        self.bilinear_type = bilinear_type
        self.num_pairs = num_fields * (num_fields - 1) // 2
        self.weight = nn.Parameter(torch.empty(shape))
        for w in self.weight.data:  # Glorot normal per d x d matrix, as the authors
            nn.init.xavier_normal_(w)
        self.projection = None
        if projection_dim is not None:
            # the authors' one-layer DNN with linear activation: Glorot-normal
            # weights, zero bias
            self.projection = nn.Linear(self.num_pairs, projection_dim)
            nn.init.xavier_normal_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)
        self.out_features = projection_dim or self.num_pairs
        i, j = zip(*combinations(range(num_fields), 2))
        self.register_buffer("pair_i", torch.tensor(i), persistent=False)
        self.register_buffer("pair_j", torch.tensor(j), persistent=False)
        flat = self.pair_i * num_fields + self.pair_j  # (i, j) in an F x F matrix
        self.register_buffer("pair_flat", flat, persistent=False)

    def pair_products(self, x: torch.Tensor) -> torch.Tensor:
        """The inner products (v_i W_m) . v_j of every pair: [B, F, d] -> [B, P]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F, d] -> [B, k] (or [B, P] without a projection)."""
        _check_fields(x, self.num_fields, self.d_embed, type(self).__name__)
        if x.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} expects [batch_size, num_fields, d_embed], "
                f"got {list(x.shape)}"
            )
        p = self.pair_products(x)
        return p if self.projection is None else self.projection(p)

    def extra_repr(self) -> str:
        return (
            f"num_fields={self.num_fields}, d_embed={self.d_embed}, "
            f"bilinear_type={self.bilinear_type!r}"
        )


class BilinearPlusLoop(_BilinearPlusBase):
    """Bilinear+ as the formula reads: one inner product per field pair.

    Slow (a few small operations per pair); kept for teaching and as the
    reference `BilinearPlus` is tested against. x: [B, F, d] -> [B, k]
    """

    def pair_products(self, x: torch.Tensor) -> torch.Tensor:
        v = x.unbind(dim=1)  # F tensors [B, d]
        out = []
        for p, (i, j) in enumerate(combinations(range(self.num_fields), 2)):
            m = {"field_all": 0, "field_each": i, "field_interaction": p}
            w = self.weight[m[self.bilinear_type]]
            out.append(((v[i] @ w) * v[j]).sum(dim=-1))  # a scalar per sample
        return torch.stack(out, dim=1)


class BilinearPlus(_BilinearPlusBase):
    """Bilinear+ with batched products (the layer FiBiNETPlusPlus uses).

    field_all / field_each: u = v W for every field at once, then all F x F
    inner products u_i . v_j in one batched matrix product, of which the P
    pairs i < j are gathered (the authors' code does the same). field_interaction:
    each pair's own matrix, applied to the gathered v_i. x: [B, F, d] -> [B, k]
    """

    def pair_products(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear_type == "field_interaction":
            u = torch.einsum("bpc,pck->bpk", x[:, self.pair_i], self.weight)
            return (u * x[:, self.pair_j]).sum(dim=-1)
        if self.bilinear_type == "field_all":
            u = x @ self.weight[0]  # [B, F, d]
        else:  # field_each: field i's own matrix
            u = torch.einsum("bfc,fck->bfk", x, self.weight)
        gram = u @ x.transpose(1, 2)  # [B, F, F]: gram[b, i, j] = u_i . v_j
        # the pairs i < j in combinations order; index_select, whose backward
        # is an index_add, costs half of what x[:, idx]'s index_put does
        return gram.flatten(1).index_select(1, self.pair_flat)  # [B, P]
