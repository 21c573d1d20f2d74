"""FiBiNET and the baselines it is compared with (DeepFM, logistic regression).

Every model takes `x = (x_num, x_cat)` with x_num: [B, n_num] float and
x_cat: [B, n_cat] long (0-based index within each field; None or [B, 0] when a
model has no such fields) and returns logits [B].
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    MLP,
    BilinearInteraction,
    BilinearInteractionLoop,
    CatEmbedding,
    CatLinear,
    FMInteraction,
    NumEmbedding,
    SENetAttention,
    bilinear_interaction,
)


def _check_matrix(t, name: str, fields: list[str], dtype_ok, dtype_name: str):
    """t must be [B, len(fields)] of the right dtype; None or [B, 0] if no fields."""
    if t is not None and t.dim() == 2 and t.shape[1] == 0:
        t = None
    if not fields:
        if t is not None:
            raise ValueError(
                f"this model has no {name[2:]} fields, got {name} {list(t.shape)}"
            )
        return None
    if t is None or t.dim() != 2 or t.shape[1] != len(fields):
        got = None if t is None else list(t.shape)
        raise ValueError(
            f"{name} must be [batch_size, {len(fields)}] (fields {fields[0]}.."
            f"{fields[-1]}), got {got}"
        )
    if not dtype_ok(t):
        raise ValueError(f"{name} must be a {dtype_name} tensor, got {t.dtype}")
    return t


class CTRModel(nn.Module):
    """Shared input handling: validation, the wide (linear) part, embeddings."""

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        d_embed: int | None = None,
        field_names: list[str] | None = None,
    ):
        super().__init__()
        self.d_numerical = int(d_numerical or 0)
        self.categories = [int(c) for c in (categories or [])]
        self.num_fields = self.d_numerical + len(self.categories)
        if self.num_fields == 0:
            raise ValueError("a model needs at least one numeric or categorical field")
        if any(c < 1 for c in self.categories):
            raise ValueError(
                f"every category count must be >= 1, got {self.categories}"
            )
        if field_names is None:
            field_names = [f"I{k + 1}" for k in range(self.d_numerical)]
            field_names += [f"C{k + 1}" for k in range(len(self.categories))]
        if len(field_names) != self.num_fields:
            raise ValueError(
                f"field_names has {len(field_names)} names for {self.num_fields} fields"
            )
        self.field_names = list(field_names)
        self.register_buffer(
            "_cat_limits",
            torch.tensor(self.categories, dtype=torch.long),
            persistent=False,
        )
        # wide part: one weight per numeric field and per category
        self.num_linear = nn.Linear(self.d_numerical, 1) if self.d_numerical else None
        self.cat_linear = CatLinear(self.categories) if self.categories else None
        # deep part's inputs (LogisticRegression has none)
        embed = d_embed is not None
        self.num_embedding = (
            NumEmbedding(self.d_numerical, d_embed)
            if embed and self.d_numerical
            else None
        )
        self.cat_embedding = (
            CatEmbedding(self.categories, d_embed)
            if embed and self.categories
            else None
        )

    def check_inputs(self, x) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validate `(x_num, x_cat)`; raise a ValueError naming the bad field."""
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError("models take x = (x_num, x_cat); got " + type(x).__name__)
        num_names = self.field_names[: self.d_numerical]
        x_num = _check_matrix(
            x[0], "x_num", num_names, torch.is_floating_point, "float"
        )
        x_cat = _check_matrix(
            x[1],
            "x_cat",
            self.field_names[self.d_numerical :],
            lambda t: t.dtype == torch.long,
            "long (int64)",
        )
        if x_num is not None and x_cat is not None and len(x_num) != len(x_cat):
            raise ValueError(f"x_num has {len(x_num)} rows but x_cat has {len(x_cat)}")
        if x_cat is not None:
            bad = (x_cat < 0) | (x_cat >= self._cat_limits)
            if bad.any():
                row, col = (int(v) for v in bad.nonzero()[0])
                raise ValueError(
                    f"categorical field {self.field_names[self.d_numerical + col]} "
                    f"(x_cat column {col}): index {int(x_cat[row, col])} in row {row} "
                    f"is outside [0, {self.categories[col]})"
                )
        return x_num, x_cat

    @staticmethod
    def _both(num_module, cat_module, x_num, x_cat) -> list[torch.Tensor]:
        """Outputs of the numeric and the categorical module (absent ones skipped)."""
        pairs = ((num_module, x_num), (cat_module, x_cat))
        return [module(x) for module, x in pairs if module is not None]

    def linear(self, x_num, x_cat) -> torch.Tensor:
        """Wide part, the first-order terms: [B, 1]."""
        parts = self._both(self.num_linear, self.cat_linear, x_num, x_cat)
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def embed(self, x_num, x_cat) -> torch.Tensor:
        """All fields as vectors, numeric fields first: [B, F, d_embed]."""
        parts = self._both(self.num_embedding, self.cat_embedding, x_num, x_cat)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


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
        stacked = torch.stack([emb, se_emb], dim=1)  # [B, 2, F, d]
        if self.shared_bilinear:
            return self.bilinear(stacked)
        if self.fast:  # one kernel call, one weight per branch
            weight = torch.stack([self.bilinear.weight, self.bilinear_se.weight])
            return bilinear_interaction(stacked, weight, self.bilinear_type)
        return torch.stack([self.bilinear(emb), self.bilinear_se(se_emb)], dim=1)

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


class SeedEnsemble(nn.Module):
    """Copies of one model trained from different seeds; their logits averaged.

    On a few thousand rows one FiBiNET's test AUC moves a lot with
    nothing but its seed; the average of a few copies is steadier and better
    (`train.auto_seeds` uses five on small files; the evidence is in
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


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
