"""FiBiNet++'s embedding norms and SENet+ on a batch-innermost layout.

The layers (`layers.embedding.FieldBatchNorm`, `NumLayerNorm`,
`layers.senet.SENetPlus`) read like the formulas, on embeddings [B, F, d].
Every one of their steps reduces over d (8 numbers) or over groups of d/2:
on that layout PyTorch's CPU kernels work on runs of 8 numbers, and its
LayerNorm backward for such short rows is slow (`make bench`: the FiBiNet++
step table). Here the same numbers are computed on "columns", [F, d, B]: the
batch is innermost, so every reduction over d is an elementwise operation
over long contiguous runs of B numbers; the LayerNorm has a hand-written
backward with a few such passes; FieldBatchNorm is a plain `batch_norm` on
[N, C, L] = [F, d, B], whose fast kernel is the usual one.

Each function equals its layer's `forward` (tests/test_fibinetpp.py:
outputs and gradients in float64). Shapes: x [F, d, B], B = batch.

Not here: the readable layers (`layers.embedding`, `layers.senet`), where the model
switches to this layout (`models.fibinetpp`), the bilinear kernel's own
batch-innermost layout (`fast.bilinear_kernel`).
"""

from __future__ import annotations

import torch


class _LayerNormOverD(torch.autograd.Function):
    """LayerNorm over dim 1 of [F, d, B]; weight, bias broadcast as [F or 1, d, 1]."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        centred = x - x.mean(dim=1, keepdim=True)
        rstd = torch.rsqrt(centred.square().mean(dim=1, keepdim=True).add_(eps))
        x_hat = centred.mul_(rstd)  # [F, d, B]
        ctx.save_for_backward(x_hat, rstd, weight)
        return torch.addcmul(bias, x_hat, weight)

    @staticmethod
    def backward(ctx, grad):
        x_hat, rstd, weight = ctx.saved_tensors
        # the parameters are broadcast over the batch (dim 2) and, when shared
        # by every field, over the fields (dim 0)
        dims = [2] if weight.shape[0] == grad.shape[0] else [0, 2]
        grad_w = (grad * x_hat).sum(dims, keepdim=True)
        grad_b = grad.sum(dims, keepdim=True)
        g = grad * weight  # d loss / d x_hat
        proj = (g * x_hat).mean(dim=1, keepdim=True)
        grad_x = g.sub_(g.mean(dim=1, keepdim=True)).sub_(x_hat * proj).mul_(rstd)
        return grad_x, grad_w, grad_b, None


def layer_norm_columns(x, weight, bias, eps: float) -> torch.Tensor:
    """LayerNorm of every field's d numbers: [F, d, B] -> [F, d, B].

    weight, bias: [F, d] (one per field and element) or [d] (shared).
    """
    if weight.dim() == 1:
        weight, bias = weight[None], bias[None]
    return _LayerNormOverD.apply(x, weight[..., None], bias[..., None], eps)


def batch_norm_columns(x, norm: torch.nn.BatchNorm1d) -> torch.Tensor:
    """`FieldBatchNorm` on columns: per embedding dimension over fields and
    batch, which `batch_norm` on [N, C, L] = [F, d, B] computes natively.
    Updates the running statistics as the module's own forward does."""
    momentum = norm.momentum
    if norm.training and norm.track_running_stats:
        norm.num_batches_tracked.add_(1)
        if momentum is None:  # a cumulative average, as nn.BatchNorm1d keeps it
            momentum = 1.0 / float(norm.num_batches_tracked)
    use_batch = norm.training or not norm.track_running_stats
    return torch.nn.functional.batch_norm(
        x,
        norm.running_mean,
        norm.running_var,
        norm.weight,
        norm.bias,
        use_batch,
        momentum or 0.0,
        norm.eps,
    )


def senet_plus_columns(x, senet) -> torch.Tensor:
    """`SENetPlus` on columns: squeeze, excite, re-weight, skip, LayerNorm.

    x: [F, d, B] -> [F, d, B]; senet: the `SENetPlus` whose weights to use.
    """
    F, d, B = x.shape
    groups = x.view(F * senet.num_groups, d // senet.num_groups, B)
    z = torch.cat([groups.mean(dim=1), groups.amax(dim=1)])  # [2 g F, B]
    w1, w2 = senet.excitation[0].weight, senet.excitation[2].weight
    a = (w2 @ torch.relu(w1 @ z)).view(F, d, B)  # bit-wise weights
    fused = torch.addcmul(x, x, a)  # x * a + x
    norm = senet.norm
    return layer_norm_columns(fused, norm.weight, norm.bias, norm.eps)
