"""CPU settings: each is safe to call and leaves results unchanged."""

import sys

import pytest
import torch

from fibinet_tutorial.bilinear_kernel import bilinear_pairs
from fibinet_tutorial.cpu import advise_huge_pages, make_adam


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
