"""The fast layers equal the readable ones; shapes, parameter counts, errors."""

from itertools import combinations

import pytest
import torch

from fibinet_tutorial.layers import (
    BilinearInteraction,
    BilinearInteractionLoop,
    CatEmbedding,
    CatLinear,
    Dropout,
    FFMInteraction,
    FMInteraction,
    Linear,
    NumEmbedding,
    SENetAttention,
    bilinear_interaction,
    lookup,
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
    fast, _ = _pair_layers(6, 4, bilinear_type)
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
