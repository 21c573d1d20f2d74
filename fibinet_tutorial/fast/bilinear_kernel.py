"""The fast bilinear interaction: a hand-written forward and backward.

`layers.bilinear.BilinearInteractionLoop` is the formula as it reads: one small matrix
product per field pair, 741 pairs for Criteo's 39 fields. Autograd then records
a few thousand tiny operations per call, and that bookkeeping, not arithmetic,
is what makes it slow. This module computes the same numbers with one
operation per *row* of pairs and writes the backward pass by hand.

Two choices make it fast on a CPU (`make bench` measures it against the loop:
benchmarks/RESULTS.md):

1. Rows of pairs. With pairs in `itertools.combinations` order, the pairs
   (i, i+1), (i, i+2), ... (i, F-1) are consecutive, so row i of the output is
   one broadcast product `u_i * e[i+1:]` written straight into its slice.
   F-1 operations instead of F(F-1)/2, and no gather/scatter (whose backward
   passes are slow on CPU).
2. Batch innermost. Tensors live as `[S, F, d, N]` (N = batch), so every
   elementwise kernel runs over long contiguous runs of N numbers instead of
   runs of d = 8. The layer hands its output back as a *view* `[N, S, P, d]`
   of that memory; `flatten(1)` on it stays a view, which `nn.Linear` consumes
   directly and whose gradient PyTorch returns in the same layout.

Shapes: e `[S, F, d, N]`, weight `[S_w, n, d, d]` with S_w in {1, S} and
n = 1, F or P = F(F-1)/2 for field_all, field_each and field_interaction.
Pair p = (i, j) using matrix m gives `(v_i @ weight[m]) * v_j`.

Not here: the layer and its readable loop (`layers.bilinear`), FiBiNet++'s Bilinear+
(`layers.bilinear_plus`), the MLP's first layer that reads this output
(`fast.blocks`).
"""

from __future__ import annotations

import torch

from .autocast import autocast_dtype, autocast_off, without_autocast
from .cpu import advise_huge_pages


def row_offsets(num_fields: int) -> list[int]:
    """Index of pair (i, i+1) for each i, in combinations order."""
    offsets, o = [], 0
    for i in range(num_fields - 1):
        offsets.append(o)
        o += num_fields - 1 - i
    return offsets


def _new_output(e: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An empty [S, P, d, N] output, in 2 MB pages where the OS allows it
    (its first writes are then ~10x cheaper; see `cpu.advise_huge_pages`)."""
    S, F, d, N = e.shape
    out = e.new_empty(S, F * (F - 1) // 2, d, N, dtype=dtype)
    advise_huge_pages(out)
    return out


def _sum_to(grad: torch.Tensor, s_w: int) -> torch.Tensor:
    """Sum a per-branch weight gradient [S, ...] down to a shared one [1, ...]."""
    return grad.sum(0, keepdim=True) if s_w == 1 and grad.shape[0] != 1 else grad


class _GradRows:
    """The incoming gradient, one row of pairs at a time, in e's dtype.

    Under autocast it arrives in bf16; the backward sums over up to F-1 terms
    and runs in float32. Each row is converted into one reused buffer that
    stays in cache, which is faster than converting the whole [S, P, d, N]
    gradient first.
    """

    def __init__(self, grad_out: torch.Tensor, e: torch.Tensor):
        self.g = grad_out.contiguous()  # a no-op when it arrives in our layout
        S, F, d, N = e.shape
        same = grad_out.dtype == e.dtype
        self.buf = None if same else e.new_empty(S, max(F - 1, 1), d, N)

    def row(self, o: int, n: int) -> torch.Tensor:
        """Gradient of pairs o .. o+n-1: [S, n, d, N]."""
        g_row = self.g[:, o : o + n]
        return g_row if self.buf is None else self.buf[:, :n].copy_(g_row)


class _RowsSharedMatrix(torch.autograd.Function):
    """field_all / field_each: u_i = e_i transformed once per field, then rows."""

    @staticmethod
    def forward(ctx, e, weight, out_dtype):
        S, F, d, N = e.shape
        wt = weight.transpose(-1, -2)  # u = W^T e in the column layout
        u = torch.matmul(wt, e)  # [S, F, d, N] (weight broadcast over F if n=1)
        ctx.save_for_backward(e, weight, u)
        # the products in the output's dtype: bf16 in, bf16 out is as fast as
        # float32 and halves the memory the MLP reads (a float32 -> bf16 mul,
        # or a cast of the whole output afterwards, costs more)
        u_out, e_out = u.to(out_dtype), e.to(out_dtype)
        out = _new_output(e, out_dtype)
        for i, o in enumerate(row_offsets(F)):
            n = F - 1 - i
            torch.mul(u_out[:, i : i + 1], e_out[:, i + 1 :], out=out[:, o : o + n])
        return out

    @staticmethod
    @without_autocast
    def backward(ctx, grad_out):
        e, weight, u = ctx.saved_tensors
        S, F, d, N = e.shape
        g = _GradRows(grad_out, e)
        grad_u = torch.zeros_like(u)
        grad_e = torch.zeros_like(e)
        tmp = e.new_empty(S, max(F - 1, 1), d, N)  # reused: stays in cache
        for i, o in enumerate(row_offsets(F)):
            n = F - 1 - i
            g_row = g.row(o, n)
            # d out / d u_i = sum over the row of g * e_j
            torch.mul(g_row, e[:, i + 1 :], out=tmp[:, :n])
            torch.sum(tmp[:, :n], dim=1, out=grad_u[:, i])
            # d out / d e_j = g * u_i for every j in the row
            grad_e[:, i + 1 :].addcmul_(g_row, u[:, i : i + 1])
        grad_e += torch.matmul(weight, grad_u)
        # d u / d W: u[k] = sum_c W[c, k] e[c]  ->  dW[c, k] = sum e[c] du[k]
        if weight.shape[1] == 1:  # field_all: one matrix for every field
            grad_w = torch.einsum("sfcn,sfkn->sck", e, grad_u).unsqueeze(1)
        else:  # field_each: one matrix per field
            grad_w = torch.einsum("sfcn,sfkn->sfck", e, grad_u)
        return grad_e, _sum_to(grad_w, weight.shape[0]), None


class _RowsPairMatrix(torch.autograd.Function):
    """field_interaction: a matrix per pair; row i is one (n*d x d) @ (d x N).

    Plain 2-D matrix products per stack (S is 1 or 2), written in place (into
    the output, or reused buffers that stay in cache): batched matmul with
    broadcasting costs more here than the loop over S.
    """

    @staticmethod
    def forward(ctx, e, weight, out_dtype):
        S, F, d, N = e.shape
        ctx.save_for_backward(e, weight)
        # wt[:, p] = W_p^T, so the rows of pair matrices stack into [n*d, d];
        # in bf16 the products run in bf16 (accumulating in float32), as
        # autocast would run them; the backward recomputes them in float32
        wt = weight.transpose(-1, -2).to(out_dtype).contiguous()
        e_out = e.to(out_dtype)
        out = _new_output(e, out_dtype)
        for i, o in enumerate(row_offsets(F)):
            n = F - 1 - i
            # u for the whole row straight into the output, then times e_j
            for s in range(S):
                w_row = wt[min(s, len(wt) - 1), o : o + n].view(n * d, d)
                torch.mm(w_row, e_out[s, i], out=out[s, o : o + n].view(n * d, N))
            out[:, o : o + n].mul_(e_out[:, i + 1 :])
        return out

    @staticmethod
    @without_autocast
    def backward(ctx, grad_out):
        e, weight = ctx.saved_tensors
        S, F, d, N = e.shape
        g = _GradRows(grad_out, e)
        wt = weight.transpose(-1, -2).contiguous()
        grad_e = torch.zeros_like(e)
        # grad_w[s, c, p, k]: row i's block is one (d x N) @ (N x n*d) product
        # written in place; the other orientation (n*d x d outputs) is 2x slower
        grad_w = e.new_empty(S, d, F * (F - 1) // 2, d)
        u_buf = e.new_empty(S, max(F - 1, 1) * d, N)  # reused: stay in cache
        gu_buf = torch.empty_like(u_buf)
        for i, o in enumerate(row_offsets(F)):
            n = F - 1 - i
            g_row = g.row(o, n)
            w_rows = [
                wt[min(s, len(wt) - 1), o : o + n].view(n * d, d) for s in range(S)
            ]
            # recompute u for this row instead of storing [S, P, d, N] in forward
            for s in range(S):
                torch.mm(w_rows[s], e[s, i], out=u_buf[s, : n * d])
            grad_e[:, i + 1 :].addcmul_(g_row, u_buf[:, : n * d].view(S, n, d, N))
            torch.mul(g_row, e[:, i + 1 :], out=gu_buf[:, : n * d].view(S, n, d, N))
            for s in range(S):
                grad_u = gu_buf[s, : n * d]  # [n*d, N]
                grad_e[s, i].addmm_(w_rows[s].t(), grad_u)
                w_block = grad_w[s, :, o : o + n].view(d, n * d)
                torch.mm(e[s, i], grad_u.t(), out=w_block)
        grad_w = grad_w.permute(0, 2, 1, 3)  # [S, P, d, d]: W's layout
        return grad_e, _sum_to(grad_w, len(wt)).contiguous(), None


def bilinear_pairs(e: torch.Tensor, weight: torch.Tensor, bilinear_type: str):
    """Bilinear products of every field pair, batch-innermost layout.

    e: [S, F, d, N] contiguous; weight: [S_w, n, d, d] -> [S, F*(F-1)/2, d, N].
    """
    fn = _RowsPairMatrix if bilinear_type == "field_interaction" else _RowsSharedMatrix
    device = e.device.type
    out_dtype = autocast_dtype(device)
    if out_dtype is None:
        return fn.apply(e, weight, e.dtype)
    # mixed precision: the output comes in autocast's dtype (the MLP reads it),
    # while the backward and the weight gradients stay float32
    with autocast_off(device):
        return fn.apply(e.float(), weight.float(), out_dtype)


def bilinear_interaction(x: torch.Tensor, weight: torch.Tensor, bilinear_type: str):
    """The fast bilinear interaction on the usual layout; the layer calls this.

    x: [B, F, d] or [B, S, F, d]; weight: [S_w, n, d, d] with S_w in {1, S}
    -> [B, P, d] or [B, S, P, d], a view whose batch dimension is innermost in
    memory (`flatten(1)` keeps it a view; `fast.Linear` reads it directly).
    """
    stacked = x.dim() == 4
    xs = x if stacked else x.unsqueeze(1)  # [B, S, F, d]
    e = xs.permute(1, 2, 3, 0).contiguous()  # [S, F, d, B]: batch innermost
    out = bilinear_pairs(e, weight, bilinear_type)  # [S, P, d, B]
    out = out.permute(3, 0, 1, 2)  # [B, S, P, d], a view
    return out if stacked else out.squeeze(1)
