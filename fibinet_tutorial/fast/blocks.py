"""Drop-in replacements for three PyTorch building blocks, faster on a CPU.

- `lookup`: an embedding lookup whose backward adds gradient rows with one
  `index_add_` (PyTorch's CPU embedding backward sorts the indices first).
- `Linear`: `nn.Linear` that multiplies the bilinear layer's batch-innermost
  output without a transposed operand (oneDNN runs that at about half speed in
  bf16).
- `Dropout`: `nn.Dropout` with a cheaper random mask on the CPU (one 64-bit
  draw for four elements instead of one `bernoulli_` number per element).

Each computes the same numbers as the module it replaces (tests/test_fast.py)
and falls back to it on other devices. `make bench` times each against
PyTorch's own (benchmarks/RESULTS.md, "Building blocks").

Not here: the MLP that uses `Linear` and `Dropout` (`layers.mlp`), the embeddings
that use `lookup` (`layers.embedding`), the bilinear kernel
(`fast.bilinear_kernel`).
"""

from __future__ import annotations

import torch
from torch import nn

from .autocast import autocast_dtype, autocast_off, without_autocast


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

    The same as `nn.functional.embedding`, with a faster backward on the CPU;
    other devices use PyTorch's own.
    """
    if weight.device.type != "cpu" or not torch.is_grad_enabled():
        return nn.functional.embedding(idx, weight)
    return _RowLookup.apply(weight, idx)


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
    runs at about half speed in bf16; here each product runs in the
    orientation where both operands are contiguous. Same parameters, same
    numbers; any other input goes to nn.Linear.
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
        with autocast_off(device):
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
    Same expectation and scaling; other devices use PyTorch's own.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1:
            return super().forward(x)
        return x * _keep_mask(x, self.p)
