"""What every CTR model here shares: the input, its checks, the wide part and
the embeddings.

Every model takes `x = (x_num, x_cat)` with x_num: [B, n_num] float and
x_cat: [B, n_cat] long (0-based index within each field; None or [B, 0] when a
model has no such fields) and returns logits [B]. Bad input raises a
ValueError that names the field. Shapes and dtypes are checked on every call;
category indices are checked on the CPU, and on other devices (a GPU) in
evaluation only: reading a GPU's verdict back makes the CPU wait for the GPU,
once per training step (`train.CTRKerasModel.fit` checks the first training
rows on the CPU instead).

Not here: the embedding layers (`layers.embedding`), the first-rows check before GPU
training (`train.trainer`), a config turned into a model (`train.checkpoints`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import CatEmbedding, CatLinear, NumEmbedding


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
        wide: bool = True,
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
        # wide part: one weight per numeric field and per category (wide=False:
        # none, as in FiBiNet++)
        self.wide = wide
        self.num_linear = self.cat_linear = None
        if wide and self.d_numerical:
            self.num_linear = nn.Linear(self.d_numerical, 1)
        if wide and self.categories:
            self.cat_linear = CatLinear(self.categories)
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
        if x_cat is not None and (x_cat.device.type == "cpu" or not self.training):
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
        if not self.wide:
            raise ValueError(f"{type(self).__name__} was built without a wide part")
        parts = self._both(self.num_linear, self.cat_linear, x_num, x_cat)
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def embed(self, x_num, x_cat) -> torch.Tensor:
        """All fields as vectors, numeric fields first: [B, F, d_embed]."""
        parts = self._both(self.num_embedding, self.cat_embedding, x_num, x_cat)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def count_non_embedding_parameters(net: nn.Module) -> int:
    """Trainable parameters outside the per-category tables.

    The tables (`nn.Embedding` weights: the embeddings and the wide part's
    per-category weights) grow with the data's vocabulary and are touched a
    few rows per sample; the rest (SENet, bilinear matrices, MLP, numeric
    vectors) is what a model's design decides, and what each step computes
    with in full.
    """
    tables = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    return sum(
        p.numel() for p in net.parameters() if p.requires_grad and id(p) not in tables
    )
