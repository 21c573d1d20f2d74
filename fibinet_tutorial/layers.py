"""Building blocks of FiBiNET and its baselines.

Shapes use B = batch, F = number of fields, d = d_embed,
P = F*(F-1)/2 = number of field pairs.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from .bilinear_kernel import (
    BILINEAR_TYPES,
    autocast_dtype,
    bilinear_pairs,
    without_autocast,
)


def _check_fields(x: torch.Tensor, num_fields: int, d_embed: int, name: str):
    """Raise a ValueError unless x is [..., num_fields, d_embed] floating point."""
    if x.dim() < 3 or tuple(x.shape[-2:]) != (num_fields, d_embed):
        raise ValueError(
            f"{name} expects input of shape [batch_size, num_fields={num_fields}, "
            f"d_embed={d_embed}], got {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating point tensor, got {x.dtype}")


def _field_offsets(categories: list[int]) -> torch.Tensor:
    """Start row of each field's block in one shared embedding table."""
    return torch.tensor([0, *categories[:-1]], dtype=torch.long).cumsum(0)


class _RowLookup(torch.autograd.Function):
    """weight[idx], whose backward adds the gradient rows with one index_add_."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.num_rows = weight.shape[0]
        return nn.functional.embedding(idx, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        d = grad.shape[-1]
        grad_weight = grad.new_zeros(ctx.num_rows, d)
        grad_weight.index_add_(0, idx.reshape(-1), grad.reshape(-1, d))
        return grad_weight, None


def lookup(weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of an embedding table: [N, d] and [...] indices -> [..., d].

    The same as `nn.functional.embedding`, with a faster backward on the CPU:
    there PyTorch's embedding backward sorts the indices first, measured at
    ~16 ms per FiBiNET step (batch 2048, 26 fields, both tables) where one
    `index_add_` takes ~2.5 ms. Other devices use PyTorch's own.
    """
    if weight.device.type != "cpu" or not torch.is_grad_enabled():
        return nn.functional.embedding(idx, weight)
    return _RowLookup.apply(weight, idx)


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
        self.register_buffer("offsets", _field_offsets(categories), persistent=False)

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
        self.register_buffer("offsets", _field_offsets(categories), persistent=False)

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        return lookup(self.fc.weight, x_cat + self.offsets).sum(dim=1) + self.bias


class _LinearOnColumns(torch.autograd.Function):
    """y = x W^T + b for x handed over as its transpose xt [K, N], contiguous.

    The same three matrix products autograd does for nn.Linear, each in the
    orientation where both operands are contiguous (see `Linear`).
    """

    @staticmethod
    def forward(ctx, xt, weight, bias):
        ctx.save_for_backward(xt, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.mm(weight, xt).t()  # [M, N] -> a view [N, M]
        return torch.addmm(bias.unsqueeze(1), weight, xt).t()

    @staticmethod
    @without_autocast
    def backward(ctx, grad):
        xt, weight = ctx.saved_tensors
        grad_t = grad.t().contiguous()  # [M, N]: small
        grad_xt = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_xt = torch.mm(weight.t().contiguous(), grad_t)  # [K, N]
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(xt, grad_t.t()).t()  # [K, M] -> a view [M, K]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_t.sum(1)
        return grad_xt, grad_w, grad_b


def _is_batch_innermost(x: torch.Tensor) -> bool:
    """x [N, K] laid out as [K, N] in memory (the bilinear layer's output)."""
    return x.dim() == 2 and x.shape[0] > 1 and x.stride() == (1, x.shape[0])


class Linear(nn.Linear):
    """nn.Linear that also takes batch-innermost inputs without a detour.

    The bilinear layer's output, flattened, is [N, K] with the batch innermost
    in memory. nn.Linear multiplies it as a transposed operand, which oneDNN
    runs at about half speed in bf16. FiBiNET's first layer (11,856 -> 128,
    batch 2048, 2 cores), forward + backward, `make bench`: 59.7 -> 35.1 ms
    under bf16 autocast, 134.5 -> 124.1 ms in float32. Same parameters, same
    numbers (tested).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_batch_innermost(x):
            return super().forward(x)
        weight, bias = self.weight, self.bias
        device = x.device.type
        dtype = autocast_dtype(device)
        if dtype is not None:  # cast as autocast casts nn.Linear
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        with torch.autocast(device, enabled=False):
            return _LinearOnColumns.apply(x.t(), weight, bias)


def _keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's scaled keep-mask for x: 1/(1-p) with probability 1-p, else 0.

    Random bits from 64-bit draws, 16 per element (p in steps of 1/65,536).
    """
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    bits = words.random_(-(2**63), None).view(torch.int16)[:n].view(x.shape)
    keep = bits >= round(p * 65_536) - 32_768  # P = (65,536 - round(p 2^16)) / 2^16
    return keep.to(x.dtype) * (1 / (1 - p))


class Dropout(nn.Dropout):
    """nn.Dropout whose random mask is several times cheaper on the CPU.

    PyTorch's CPU dropout draws its mask with `bernoulli_`, one random number
    per element; here one 64-bit draw gives four elements 16 random bits each.
    FiBiNET's first hidden layer (2048 x 128), forward + backward, `make
    bench`: 7.7 -> 2.1 ms (a bf16 training step is ~135 ms). Same expectation
    and scaling; other devices use PyTorch's own.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1:
            return super().forward(x)
        return x * _keep_mask(x, self.p)


class MLP(nn.Module):
    """(Linear -> BatchNorm -> ReLU -> Dropout) per hidden layer, then Linear.

    x: [B, d_in] -> [B, d_out]
    """

    def __init__(self, d_in: int, d_layers: list[int], dropout: float, d_out: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for d in d_layers:
            layers += [
                Linear(d_in, d),
                nn.BatchNorm1d(d),
                nn.ReLU(),
                Dropout(dropout),
            ]
            d_in = d
        layers.append(Linear(d_in, d_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SENetAttention(nn.Module):
    """Squeeze-and-Excitation over fields: learn a weight per field per sample.

    x: [B, F, d] -> [B, F, d]; `field_weights(x)` gives the weights [B, F].
    """

    def __init__(self, num_fields: int, reduction_ratio: float = 3):
        super().__init__()
        self.num_fields = num_fields
        reduced_size = max(1, int(num_fields / reduction_ratio))
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, reduced_size, bias=False),
            nn.ReLU(),
            nn.Linear(reduced_size, num_fields, bias=False),
            nn.ReLU(),
        )

    def field_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze (mean over d) then excite: [B, F, d] -> [B, F]."""
        if x.dim() != 3 or x.shape[1] != self.num_fields:
            raise ValueError(
                f"SENetAttention expects [batch_size, num_fields={self.num_fields}, "
                f"d_embed], got {list(x.shape)}"
            )
        return self.excitation(x.mean(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.field_weights(x).unsqueeze(-1)  # re-weight


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
    """Bilinear interaction of every field pair (fast; see `bilinear_kernel`).

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


def bilinear_interaction(x: torch.Tensor, weight: torch.Tensor, bilinear_type: str):
    """Functional fast bilinear interaction.

    x: [B, F, d] or [B, S, F, d]; weight: [S_w, n, d, d] with S_w in {1, S}
    -> [B, P, d] or [B, S, P, d]
    """
    stacked = x.dim() == 4
    xs = x if stacked else x.unsqueeze(1)  # [B, S, F, d]
    e = xs.permute(1, 2, 3, 0).contiguous()  # [S, F, d, B]: batch innermost
    out = bilinear_pairs(e, weight, bilinear_type)  # [S, P, d, B]
    out = out.permute(3, 0, 1, 2)  # [B, S, P, d], a view
    return out if stacked else out.squeeze(1)


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
        self.register_buffer("offsets", _field_offsets(categories), persistent=False)
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


class FMInteraction(nn.Module):
    """Second-order FM term: sum over pairs of <v_i, v_j>, in O(F d).

    x: [B, F, d] -> [B, 1]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square_of_sum = x.sum(dim=1).pow(2)
        sum_of_square = x.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)
