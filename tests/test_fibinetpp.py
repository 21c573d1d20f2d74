"""FiBiNet++: layers equal their formulas, fast forms equal readable ones
(float64, outputs and gradients), parameter counts, errors, the model."""

from itertools import combinations

import pytest
import torch

from fibinet_tutorial import train
from fibinet_tutorial.criteo import CRITEO_CARDINALITIES
from fibinet_tutorial.fast import (
    batch_norm_columns,
    layer_norm_columns,
    senet_plus_columns,
)
from fibinet_tutorial.layers import (
    BilinearPlus,
    BilinearPlusLoop,
    FieldBatchNorm,
    NumLayerNorm,
    SENetPlus,
    field_batch_norm_reference,
)
from fibinet_tutorial.models import (
    FiBiNET,
    FiBiNETPlusPlus,
    count_non_embedding_parameters,
    count_parameters,
)

TYPES = ["field_all", "field_each", "field_interaction"]
TOL = dict(atol=1e-9, rtol=1e-9)


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randomise(module):
    """Every parameter random (not the init: ones and zeros hide mistakes)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad)


def _assert_same(fn_a, fn_b, x, params_a, params_b, layout=lambda t: t):
    """fn_a(x) and fn_b(x) agree, and so do the gradients wrt x and parameters."""
    x_a = x.clone().requires_grad_()
    x_b = x.clone().requires_grad_()
    out_a, out_b = fn_a(x_a), fn_b(x_b)
    torch.testing.assert_close(out_a, layout(out_b), **TOL)
    grad = torch.randn_like(out_a)
    got = _grads(out_a, [x_a, *params_a], grad)
    want = _grads(layout(out_b), [x_b, *params_b], grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("bilinear_type", TYPES)
@pytest.mark.parametrize("projection_dim", [5, None])
@pytest.mark.parametrize("shape", [(7, 2, 3), (4, 9, 4)])
def test_fast_bilinear_plus_equals_loop(bilinear_type, projection_dim, shape):
    fast = _randomise(BilinearPlus(shape[1], shape[2], bilinear_type, projection_dim))
    loop = BilinearPlusLoop(shape[1], shape[2], bilinear_type, projection_dim)
    loop.load_state_dict(fast.state_dict())
    x = torch.randn(shape)
    _assert_same(fast, loop, x, list(fast.parameters()), list(loop.parameters()))
    assert fast(x).shape == (shape[0], projection_dim or shape[1] * (shape[1] - 1) // 2)


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_bilinear_plus_is_an_inner_product_per_pair(bilinear_type):
    F, d = 5, 3
    layer = _randomise(BilinearPlus(F, d, bilinear_type, projection_dim=None))
    x = torch.randn(2, F, d)
    out = layer(x)
    for p, (i, j) in enumerate(combinations(range(F), 2)):
        m = {"field_all": 0, "field_each": i, "field_interaction": p}[bilinear_type]
        want = torch.einsum("bc,ck,bk->b", x[:, i], layer.weight[m], x[:, j])
        torch.testing.assert_close(out[:, p], want, **TOL)  # v_i W v_j^T
    projected = _randomise(BilinearPlus(F, d, bilinear_type, projection_dim=4))
    projected.weight.data.copy_(layer.weight)
    lin = projected.projection
    torch.testing.assert_close(projected(x), out @ lin.weight.T + lin.bias, **TOL)


def test_senet_plus_equals_hand_computation():
    F, d, g = 5, 4, 2
    se = _randomise(SENetPlus(F, d, reduction_ratio=3, num_groups=g))
    r = max(1, int(2 * g * F / 3))
    assert se.excitation[0].weight.shape == (r, 2 * g * F)
    assert se.excitation[2].weight.shape == (F * d, r)
    x = torch.randn(3, F, d)
    # squeeze: the mean of each group of d/g elements, field by field, then the max
    means = [x[:, f, k * 2 : k * 2 + 2].mean(-1) for f in range(F) for k in range(g)]
    maxes = [
        x[:, f, k * 2 : k * 2 + 2].max(-1).values for f in range(F) for k in range(g)
    ]
    z = torch.stack(means + maxes, dim=1)
    torch.testing.assert_close(se.squeeze(x), z, **TOL)
    w1, w2 = se.excitation[0].weight, se.excitation[2].weight
    a = (torch.relu(z @ w1.T) @ w2.T).view(3, F, d)  # no final activation
    torch.testing.assert_close(se.bit_weights(x), a, **TOL)
    fused = x * a + x
    mean = fused.mean(-1, keepdim=True)
    var = fused.var(-1, unbiased=False, keepdim=True)
    want = (fused - mean) / torch.sqrt(var + 1e-6) * se.norm.weight + se.norm.bias
    torch.testing.assert_close(se(x), want, **TOL)


def _to_columns(t):
    return t.permute(1, 2, 0)  # [B, F, d] -> [F, d, B]


def test_senet_plus_columns_equals_the_layer():
    se = _randomise(SENetPlus(6, 4))
    x = torch.randn(5, 6, 4)
    _assert_same(
        lambda t: _to_columns(se(t)),
        lambda t: senet_plus_columns(_to_columns(t).contiguous(), se),
        x,
        list(se.parameters()),
        list(se.parameters()),
    )


@pytest.mark.parametrize(
    "norm",
    [NumLayerNorm(3, 4), torch.nn.LayerNorm(4, eps=1e-6)],  # per field; SENet+'s [d]
    ids=["per-field", "shared"],
)
def test_layer_norm_columns_equals_the_layers(norm):
    norm = _randomise(norm.double())
    params = list(norm.parameters())
    _assert_same(
        lambda t: _to_columns(norm(t)),
        lambda t: layer_norm_columns(_to_columns(t), norm.weight, norm.bias, 1e-6),
        torch.randn(6, 3, 4),
        params,
        params,
    )


def test_layer_norm_columns_gradcheck():
    x = torch.randn(3, 4, 5, requires_grad=True)
    w, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: layer_norm_columns(*t, 1e-6), (x, w, b))


def test_field_batch_norm_is_per_dimension_over_batch_and_fields():
    norm = _randomise(FieldBatchNorm(4))
    x = torch.randn(8, 3, 4) * torch.tensor([1.0, 5.0, 0.1])[:, None]  # fields differ
    params = list(norm.parameters())
    ref = lambda t: field_batch_norm_reference(t, norm.weight, norm.bias)  # noqa: E731
    _assert_same(norm, ref, x, params, params)
    plain = FieldBatchNorm(4)(x)  # scale 1, shift 0
    torch.testing.assert_close(plain.mean(dim=(0, 1)), torch.zeros(4), **TOL)
    assert plain.mean(dim=0).abs().max() > 0.1  # one field alone is not centred
    # columns: the same numbers and the same running statistics
    other = FieldBatchNorm(4)
    other.load_state_dict(norm.state_dict())
    _assert_same(
        lambda t: _to_columns(norm(t)),
        lambda t: batch_norm_columns(_to_columns(t).contiguous(), other),
        x,
        params,
        list(other.parameters()),
    )
    torch.testing.assert_close(norm.running_mean, other.running_mean, **TOL)
    torch.testing.assert_close(norm.running_var, other.running_var, **TOL)
    norm.eval(), other.eval()
    torch.testing.assert_close(
        _to_columns(norm(x)), batch_norm_columns(_to_columns(x).contiguous(), other)
    )


def test_numeric_layer_norm_keeps_only_the_sign_of_the_value():
    norm = NumLayerNorm(1, 8)
    v = torch.randn(8)
    for value in (0.5, 3.0, -2.0, 40.0):
        got = norm(torch.tensor([[value]])[..., None] * v)[0, 0]
        want = torch.sign(torch.tensor(value)) * norm(v[None, None])[0, 0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_parameter_counts_equal_the_formulas():
    F, d, g, k, n_num = 39, 8, 2, 50, 13
    P = F * (F - 1) // 2
    r = int(2 * g * F / 3)
    se = SENetPlus(F, d, 3, g)
    assert count_parameters(se) == 2 * g * F * r + r * F * d + 2 * d
    for t, n in (("field_all", 1), ("field_each", F), ("field_interaction", P)):
        assert count_parameters(BilinearPlus(F, d, t, k)) == n * d * d + P * k + k
    assert count_parameters(BilinearPlus(F, d, projection_dim=None)) == d * d
    assert count_parameters(FieldBatchNorm(d)) == 2 * d
    assert count_parameters(NumLayerNorm(n_num, d)) == 2 * n_num * d
    # the whole model: everything but the embedding table, by formula
    cats = list(CRITEO_CARDINALITIES)
    net = FiBiNETPlusPlus(n_num, cats, d, mlp_layers=(128, 64, 32))
    mlp, d_in = 0, k + F * d
    for h in (128, 64, 32):
        mlp += d_in * h + h + 2 * h  # Linear and BatchNorm
        d_in = h
    mlp += d_in + 1
    norms = 2 * d + 2 * n_num * d
    senet = 2 * g * F * r + r * F * d + 2 * d
    formula = n_num * d + norms + senet + (d * d + P * k + k) + mlp
    assert count_non_embedding_parameters(net) == formula
    assert count_parameters(net) == formula + sum(cats) * d


def test_bad_shapes_and_settings_raise_value_errors():
    with pytest.raises(ValueError, match=r"num_fields=5, d_embed=4\], got \[2, 6, 4\]"):
        SENetPlus(5, 4)(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="d_embed divisible by num_groups"):
        SENetPlus(5, 6, num_groups=4)
    with pytest.raises(ValueError, match=r"num_fields=5, d_embed=4\], got \[2, 5, 3\]"):
        BilinearPlus(5, 4)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"\[batch_size, num_fields, d_embed\]"):
        BilinearPlus(5, 4)(torch.randn(2, 2, 5, 4))
    with pytest.raises(ValueError, match="num_fields >= 2"):
        BilinearPlusLoop(1, 4)
    with pytest.raises(ValueError, match="projection_dim"):
        BilinearPlus(3, 4, projection_dim=0)
    with pytest.raises(ValueError, match=r"d_embed=4\], got \[2, 5\]"):
        FieldBatchNorm(4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"num_fields=3, d_embed=4\], got \[2, 2, 4\]"):
        NumLayerNorm(3, 4)(torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match="senet must be one of senet\\+, senet"):
        FiBiNETPlusPlus(2, [3], senet="se")
    with pytest.raises(ValueError, match="interaction must be one of"):
        FiBiNETPlusPlus(2, [3], interaction="fm")
    with pytest.raises(ValueError, match="two fields"):
        FiBiNETPlusPlus(1, None)
    with pytest.raises(ValueError, match="without a wide part"):
        FiBiNETPlusPlus(2, [3]).linear(torch.zeros(1, 2), torch.zeros(1, 1).long())


def _batch(n_num, cats, B=16):
    torch.manual_seed(3)
    x_cat = [torch.randint(0, c, (B,)) for c in cats]
    x_cat = torch.stack(x_cat, dim=1) if cats else None
    return (torch.randn(B, n_num) if n_num else None), x_cat


@pytest.mark.parametrize("n_num,cats", [(3, [4, 5, 6]), (0, [4, 5]), (3, [])])
def test_fast_model_equals_the_layers_as_they_read(n_num, cats):
    kwargs = dict(d_embed=4, mlp_layers=(6,), mlp_dropout=0.0, projection_dim=3)
    fast = _randomise(FiBiNETPlusPlus(n_num, cats, **kwargs))
    slow = FiBiNETPlusPlus(n_num, cats, fast=False, **kwargs)
    slow.load_state_dict(fast.state_dict())
    x = _batch(n_num, cats)
    for mode in ("train", "eval"):
        fast.train(mode == "train"), slow.train(mode == "train")
        out_f, out_s = fast(x), slow(x)
        torch.testing.assert_close(out_f, out_s, **TOL)
        grad = torch.randn_like(out_f)
        for g, w in zip(
            _grads(out_f, list(fast.parameters()), grad),
            _grads(out_s, list(slow.parameters()), grad),
        ):
            torch.testing.assert_close(g, w, **TOL)
    for (name, a), (_, b) in zip(fast.named_buffers(), slow.named_buffers()):
        torch.testing.assert_close(a, b, **TOL, msg=name)


def test_the_path_starts_at_fibinet():
    cats = [4, 5, 6]
    fibinet = FiBiNET(3, cats, d_embed=4, mlp_layers=(6,), mlp_dropout=0.0)
    path_start = FiBiNETPlusPlus(
        3,
        cats,
        d_embed=4,
        mlp_layers=(6,),
        mlp_dropout=0.0,
        cat_norm=False,
        num_norm=False,
        senet="senet",
        interaction="bilinear",
        wide=True,
    )
    path_start.load_state_dict(_randomise(fibinet).state_dict())  # same names
    x = _batch(3, cats)
    fibinet.eval(), path_start.eval()
    torch.testing.assert_close(path_start(x), fibinet(x), **TOL)
    torch.testing.assert_close(
        path_start.field_importance(x), fibinet.field_importance(x), **TOL
    )


def test_mlp_input_and_bit_wise_importance():
    net = FiBiNETPlusPlus(13, [10] * 26, d_embed=8, mlp_layers=(16,))
    assert net.mlp.layers[0].in_features == 50 + 39 * 8  # FiBiNET: 39 * 38 * 8
    x = _batch(13, [10] * 26)
    net.eval()
    weights = net.field_importance(x)
    assert weights.shape == (16, 39, 8)
    torch.testing.assert_close(weights, net.senet.bit_weights(net.embed(*x)))


def test_projection_is_a_low_rank_factor_of_the_first_layer():
    """Bilinear+'s projection A [k, P] and the MLP's first layer on those k
    inputs B [h, k] multiply to one h x P matrix of rank k: LoRA's W = B A."""
    net = FiBiNETPlusPlus(3, [4] * 6, d_embed=4, mlp_layers=(12,), projection_dim=2)
    net.eval()
    P = 9 * 8 // 2
    emb = net.embed(*_batch(3, [4] * 6))
    pairs = net.bilinear.pair_products(emb)  # [B, P]
    first = net.mlp.layers[0]
    B_k = first.weight[:, :2]  # the columns that read the projection
    merged = B_k @ net.bilinear.projection.weight  # [12, P]
    assert torch.linalg.matrix_rank(merged) == 2 and merged.shape == (12, P)
    rest = net.senet(emb).flatten(1) @ first.weight[:, 2:].T
    via_merged = pairs @ merged.T + B_k @ net.bilinear.projection.bias + first.bias
    torch.testing.assert_close(first(net.deep_input(emb)), via_merged + rest, **TOL)


def test_save_and_load_round_trip(tmp_path):
    from fibinet_tutorial.data import CriteoPreprocessor
    from fibinet_tutorial.synthetic import SyntheticCriteo

    pre = CriteoPreprocessor(min_count=1).fit(SyntheticCriteo().sample(300))
    hp = train.default_hparams() | {"mlp_layers": [8], "projection_dim": 7}
    config = train.model_config("fibinetpp", pre, hp)
    assert config["projection_dim"] == 7 and "cat_norm" not in config
    net = train.build_model(config)
    assert isinstance(net, FiBiNETPlusPlus) and net.bilinear.out_features == 7
    train.save_model(net, config, tmp_path / "fibinetpp.pt")
    again, config_again = train.load_model(tmp_path / "fibinetpp.pt")
    assert config_again == config
    x = _batch(13, pre.categories)
    net.eval()
    torch.testing.assert_close(again(x), net(x))


@pytest.mark.slow
def test_cli_trains_saves_and_reloads_fibinetpp(tmp_path):
    import json

    from test_train import SMALL, cli

    proc = cli(
        *SMALL,
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
        "--model",
        "fibinetpp",
        "--threads",
        "1",
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["model"] == "fibinetpp"
    assert [row["model"] for row in summary["comparison"]] == ["fibinetpp", "oracle"]
    assert 0.5 < summary["test_auc"] <= summary["oracle_auc"] + 0.02
    net, pre = train.load_trained(tmp_path / "run", "fibinetpp")
    assert isinstance(net, FiBiNETPlusPlus)
    rows = __import__("fibinet_tutorial").SyntheticCriteo().sample(20, start=10**6)
    p = train.score(net, pre, rows)
    assert p.shape == (20,) and ((p > 0) & (p < 1)).all()


def test_small_file_rules_for_fibinetpp():
    """The measured decision (benchmarks/FIBINETPP.md, "Small files"): FiBiNet++
    trains with FiBiNET's two rules, the seed ensemble and the MLP decay."""
    defaults = train.default_hparams()
    for n in (2_700, 5_999, 200_000):
        h = train.resolve_hparams(defaults, n, "fibinetpp")
        assert h == train.resolve_hparams(defaults, n, "fibinet")
    h = train.resolve_hparams(defaults, 2_700, "fibinetpp")
    assert h["seeds"] == 5 and h["mlp_weight_decay"] > 0.1


def test_authors_preset_beside_ours():
    from fibinet_tutorial.models import AUTHORS_PRESET

    table = train.authors_preset_table()
    assert list(table.index) == list(AUTHORS_PRESET)
    assert table.loc["d_embed", "ours"] == train.default_hparams()["d_embed"]
    assert table.loc["projection_dim", "same"]
    assert not table.loc["mlp_batchnorm", "same"]  # our MLP has BatchNorm
