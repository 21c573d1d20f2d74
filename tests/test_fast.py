"""The speed path (`fibinet_tutorial.fast`): each piece computes what the plain
PyTorch op it replaces computes, and the CPU settings are safe to call."""

import sys

import pytest
import torch

from fibinet_tutorial.fast import (
    Dropout,
    Linear,
    advise_huge_pages,
    bilinear_pairs,
    lookup,
    make_adam,
)
from fibinet_tutorial.layers import BilinearInteraction

TYPES = ["field_all", "field_each", "field_interaction"]


def _forward_backward(layer, x, grad):
    x = x.clone().requires_grad_()
    out = layer(x)
    x_grad, w_grad = torch.autograd.grad(out, (x, layer.weight), grad)
    return out, x_grad, w_grad


def test_huge_page_advice_only_for_large_cpu_tensors():
    assert advise_huge_pages(torch.empty(1000)) is False  # under two 2 MB pages
    big = torch.empty(3 << 20)  # 12 MB
    advised = advise_huge_pages(big)
    assert advised is sys.platform.startswith("linux")
    big.fill_(2.5)  # the memory behaves as before
    assert big.sum().item() == pytest.approx(2.5 * big.numel())


@pytest.mark.parametrize("bilinear_type", ["field_all", "field_interaction"])
def test_large_output_in_huge_pages_is_correct(bilinear_type):
    # big enough for the output to be advised: [1, 45, 8, 1024] floats = 8 MB
    torch.manual_seed(0)
    e = torch.randn(1, 10, 8, 1024)
    n = 1 if bilinear_type == "field_all" else 45
    w = torch.randn(1, n, 8, 8)
    out = bilinear_pairs(e, w, bilinear_type)
    i, j = 2, 7
    p = i * 10 - i * (i + 1) // 2 + (j - i - 1)  # pair (2, 7) in combinations order
    m = 0 if bilinear_type == "field_all" else p
    expected = (w[0, m].T @ e[0, i]) * e[0, j]
    torch.testing.assert_close(out[0, p], expected)


def test_make_adam_keeps_parameter_groups():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = make_adam([{"params": [a], "weight_decay": 0.1}, {"params": [b]}], lr=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


@pytest.mark.parametrize("bilinear_type", ["field_all", "field_interaction"])
def test_fast_layer_gradients_in_float32_under_autocast(bilinear_type):
    from fibinet_tutorial.models import FiBiNET

    torch.manual_seed(0)
    net = FiBiNET(3, [5, 7], d_embed=4, mlp_layers=(8,), bilinear_type=bilinear_type)
    x = (torch.randn(16, 3), torch.randint(0, 5, (16, 2)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    logits.float().sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.bilinear.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("d", [1, 4])
def test_lookup_equals_embedding_forward_and_backward(d):
    torch.manual_seed(0)
    weight = torch.randn(7, d, dtype=torch.double, requires_grad=True)
    idx = torch.tensor([[0, 6, 6], [3, 0, 6]])  # repeated rows add up
    grad = torch.randn(2, 3, d, dtype=torch.double)
    fast = lookup(weight, idx)
    (g_fast,) = torch.autograd.grad(fast, weight, grad)
    plain = torch.nn.functional.embedding(idx, weight)
    (g_plain,) = torch.autograd.grad(plain, weight, grad)
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(g_fast, g_plain)
    assert torch.autograd.gradcheck(lambda w: lookup(w, idx), (weight,))


def _linear_pair(bias):
    torch.manual_seed(0)
    fast = Linear(12, 5, bias=bias).double()
    plain = torch.nn.Linear(12, 5, bias=bias).double()
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.parametrize("bias", [True, False])
def test_linear_on_batch_innermost_input_equals_nn_linear(bias):
    fast, plain = _linear_pair(bias)
    xt = torch.randn(12, 7, dtype=torch.double, requires_grad=True)
    grad = torch.randn(7, 5, dtype=torch.double)
    results = []
    for layer in (fast, plain):
        out = layer(xt.t())  # [7, 12] with the batch innermost, as FiBiNET's
        grads = torch.autograd.grad(out, (xt, *layer.parameters()), grad)
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda x: fast(x.t()), (xt,))
    # a row-major input takes nn.Linear's own path
    x = torch.randn(7, 12, dtype=torch.double)
    torch.testing.assert_close(fast(x), plain(x))


def test_linear_on_batch_innermost_input_under_autocast():
    fast, plain = _linear_pair(True)
    fast, plain = fast.float(), plain.float()
    xt = torch.randn(12, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = fast(xt.t()), plain(xt.t())
    assert out.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(out, want)
    out.float().sum().backward()
    assert fast.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_fast_bilinear_under_autocast(bilinear_type):
    """bf16 output for the MLP; the backward runs in float32 and gives the
    float32 layer's gradients for the same incoming gradient."""
    torch.manual_seed(0)
    fast = BilinearInteraction(6, 4, bilinear_type)
    x = torch.randn(9, 2, 6, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, x_grad, w_grad = _forward_backward(fast, x, torch.ones(9, 2, 15, 4))
    assert out.dtype == torch.bfloat16
    want, want_x_grad, want_w_grad = _forward_backward(fast, x, torch.ones(9, 2, 15, 4))
    torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(x_grad, want_x_grad)
    torch.testing.assert_close(w_grad, want_w_grad)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_keeps_each_element_with_probability_1_minus_p(p):
    layer = Dropout(p)
    x = torch.randn(1000, 400, requires_grad=True)
    torch.manual_seed(0)
    out = layer(x)
    kept = out != 0
    # each of the 16-bit lanes of a 64-bit draw, and all together: 1 - p
    lanes = kept.view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), 1 - p), atol=0.005)
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x.grad, kept / (1 - p))
    torch.manual_seed(0)
    torch.testing.assert_close(layer(x), out)  # seeded: the same mask
    layer.eval()
    assert layer(x) is x
    assert (Dropout(1.0)(x) == 0).all() and Dropout(0.0)(x).equal(x)
