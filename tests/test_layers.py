"""The fast layers equal the readable ones; shapes, parameter counts, errors."""

from itertools import combinations

import pytest
import torch

from fibinet_tutorial.fast import bilinear_interaction
from fibinet_tutorial.layers import (
    BilinearInteraction,
    BilinearInteractionLoop,
    CatEmbedding,
    CatLinear,
    FFMInteraction,
    FMInteraction,
    NumEmbedding,
    SENetAttention,
)

TYPES = ["field_all", "field_each", "field_interaction"]


def _pair_layers(num_fields, d_embed, bilinear_type):
    torch.manual_seed(0)
    fast = BilinearInteraction(num_fields, d_embed, bilinear_type)
    loop = BilinearInteractionLoop(num_fields, d_embed, bilinear_type)
    with torch.no_grad():
        fast.weight.normal_()  # not the init: every entry of the weight matters
        loop.weight.copy_(fast.weight)
    return fast, loop


def _forward_backward(layer, x, grad):
    x = x.detach().clone().requires_grad_()
    layer.zero_grad()
    out = layer(x)
    out.backward(grad)
    return out.detach(), x.grad, layer.weight.grad.clone()


@pytest.mark.parametrize("bilinear_type", TYPES)
@pytest.mark.parametrize("shape", [(7, 2, 3), (5, 6, 4), (16, 13, 8), (3, 2, 9, 5)])
def test_fast_bilinear_equals_loop(bilinear_type, shape):
    fast, loop = _pair_layers(shape[-2], shape[-1], bilinear_type)
    x = torch.randn(shape)
    out_loop = loop(x)
    assert out_loop.shape == (*shape[:-2], shape[-2] * (shape[-2] - 1) // 2, shape[-1])
    for grad in (torch.randn(out_loop.shape), torch.randn_like(fast(x))):
        # both gradient layouts: row-major, and the fast layer's own
        got = _forward_backward(fast, x, grad)
        want = _forward_backward(loop, x, grad)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_pairs_in_combinations_order_with_stated_formula(bilinear_type):
    F, d = 5, 3
    fast, _ = _pair_layers(F, d, bilinear_type)
    x = torch.randn(2, F, d)
    out = fast(x)
    for p, (i, j) in enumerate(combinations(range(F), 2)):
        m = {"field_all": 0, "field_each": i, "field_interaction": p}[bilinear_type]
        want = (x[:, i] @ fast.weight[m]) * x[:, j]
        torch.testing.assert_close(out[:, p], want)


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_functional_with_one_weight_per_stack(bilinear_type):
    """FiBiNET's separate layers: stack s uses weight[s]."""
    F, d = 6, 4
    a, loop_a = _pair_layers(F, d, bilinear_type)
    b, loop_b = _pair_layers(F, d, bilinear_type)
    with torch.no_grad():
        b.weight.normal_()
        loop_b.weight.copy_(b.weight)
    x = torch.randn(3, 2, F, d, requires_grad=True)
    weight = torch.stack([a.weight, b.weight])
    out = bilinear_interaction(x, weight, bilinear_type)
    want = torch.stack([loop_a(x[:, 0]), loop_b(x[:, 1])], dim=1)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, a.weight, b.weight], grad)
    exp = torch.autograd.grad(want, [x, loop_a.weight, loop_b.weight], grad)
    for g, w in zip(got, exp):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_bilinear_gradcheck_double():
    for bilinear_type in TYPES:
        layer = BilinearInteraction(4, 3, bilinear_type).double()
        x = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
        assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize(
    "bilinear_type,count",
    [("field_all", 1), ("field_each", 7), ("field_interaction", 21)],
)
def test_bilinear_weight_layout(bilinear_type, count):
    layer = BilinearInteraction(7, 4, bilinear_type)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer.weight.shape == (count, 4, 4)


def test_bilinear_bad_type_and_shapes():
    with pytest.raises(ValueError, match="field_all, field_each, field_interaction"):
        BilinearInteraction(3, 4, "field_everything")
    layer = BilinearInteraction(3, 4)
    with pytest.raises(ValueError, match=r"num_fields=3, d_embed=4\], got \[2, 5, 4\]"):
        layer(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="got \\[3, 4\\]"):
        layer(torch.randn(3, 4))
    with pytest.raises(ValueError, match="floating point"):
        layer(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_fields >= 2"):
        BilinearInteractionLoop(1, 4)


def test_senet_equals_hand_computation():
    torch.manual_seed(1)
    F, d = 7, 5
    se = SENetAttention(F, reduction_ratio=3)
    R = max(1, int(F / 3))
    assert se.excitation[0].weight.shape == (R, F)
    assert se.excitation[2].weight.shape == (F, R)
    x = torch.randn(4, F, d)
    w1, w2 = se.excitation[0].weight, se.excitation[2].weight
    z = x.mean(dim=-1)  # squeeze
    a = torch.relu(torch.relu(z @ w1.T) @ w2.T)  # excitation
    torch.testing.assert_close(se.field_weights(x), a)
    torch.testing.assert_close(se(x), x * a[:, :, None])  # re-weight
    with pytest.raises(ValueError, match="num_fields=7"):
        se(torch.randn(4, 6, d))


def test_senet_reduced_size_never_zero():
    assert SENetAttention(2, reduction_ratio=3).excitation[0].out_features == 1


def test_embeddings_and_linear():
    cats = [3, 5, 2]
    emb = CatEmbedding(cats, 4)
    x_cat = torch.tensor([[0, 4, 1], [2, 0, 0]])
    out = emb(x_cat)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[0, 1], emb.embedding.weight[3 + 4])
    lin = CatLinear(cats)
    want = lin.fc.weight[[0, 3 + 4, 8 + 1]].sum() + lin.bias
    torch.testing.assert_close(lin(x_cat)[0], want)
    num = NumEmbedding(2, 4)
    x_num = torch.tensor([[2.0, -1.0]])
    torch.testing.assert_close(num(x_num)[0, 0], 2.0 * num.weight[0])
    torch.testing.assert_close(num(x_num)[0, 1], -num.weight[1])


def test_fm_equals_pairwise_dot_products():
    x = torch.randn(3, 5, 4)
    want = sum((x[:, i] * x[:, j]).sum(-1) for i, j in combinations(range(5), 2))
    torch.testing.assert_close(FMInteraction()(x).squeeze(-1), want)


def test_ffm_uses_field_aware_vectors():
    cats = [3, 4, 5]
    ffm = FFMInteraction(cats, 2)
    x_cat = torch.tensor([[0, 1, 2], [2, 3, 4]])
    table = ffm.embedding.weight.view(-1, 2, 2)  # [n, f-1, k]
    offsets = [0, 3, 7]
    for b in range(2):
        want = 0.0
        for i, j in combinations(range(3), 2):
            v_i = table[x_cat[b, i] + offsets[i], j - 1]  # slot of field j
            v_j = table[x_cat[b, j] + offsets[j], i]
            want = want + (v_i * v_j).sum()
        torch.testing.assert_close(ffm(x_cat)[b, 0], want)


def _n_params(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("cats,k", [([10, 20, 30, 5], 4), ([7, 3, 9, 2, 2, 6], 8)])
def test_parameter_counts_equal_the_formulas(cats, k):
    n, f = sum(cats), len(cats)
    emb = CatEmbedding(cats, k)
    assert _n_params(emb) == n * k  # FM: one vector per feature
    assert _n_params(FFMInteraction(cats, k)) == (f - 1) * n * k
    bilinear = {t: BilinearInteraction(f, k, t) for t in TYPES}
    assert _n_params(emb, bilinear["field_all"]) == n * k + k * k
    assert _n_params(emb, bilinear["field_each"]) == n * k + f * k * k
    assert _n_params(emb, bilinear["field_interaction"]) == (
        n * k + k * k * f * (f - 1) // 2
    )
