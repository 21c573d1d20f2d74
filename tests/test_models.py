"""Models: the seed's FiBiNET reproduced, baselines, input validation."""

import re
from itertools import combinations
from pathlib import Path

import pytest
import torch
from torch import nn

from fibinet_tutorial.models import (
    FM,
    DeepFM,
    FiBiNET,
    FiBiNETPlusPlus,
    LogisticRegression,
    count_parameters,
)

TYPES = ["field_all", "field_each", "field_interaction"]
SEED_MD = Path(__file__).resolve().parents[2] / "shared/seed/fibinet_seed_tutorial.md"


class SeedStyleFiBiNET(nn.Module):
    """The seed tutorial's architecture, written out independently of the package.

    Its conventions differ from ours on purpose: nn.Linear bilinear matrices
    (v @ W.T) held in a ModuleList, numeric embeddings as [n, 1, d] weights,
    offsets as non-trainable Parameters, one bilinear layer for both branches.
    """

    def __init__(self, d_numerical, categories, d_embed, mlp_layers, bilinear_type):
        super().__init__()
        F = d_numerical + len(categories)
        self.pairs = list(combinations(range(F), 2))
        self.bilinear_type = bilinear_type
        self.num_linear = nn.Linear(d_numerical, 1)
        self.cat_fc = nn.Embedding(sum(categories), 1)
        self.cat_bias = nn.Parameter(torch.randn(1))
        self.offsets = nn.Parameter(
            torch.tensor([0, *categories[:-1]]).cumsum(0), requires_grad=False
        )
        self.num_weight = nn.Parameter(torch.randn(d_numerical, 1, d_embed))
        self.cat_table = nn.Embedding(sum(categories), d_embed)
        R = max(1, int(F / 3))
        self.se1, self.se2 = nn.Linear(F, R, bias=False), nn.Linear(R, F, bias=False)
        n = {"field_all": 1, "field_each": F, "field_interaction": len(self.pairs)}
        self.bl = nn.ModuleList(
            nn.Linear(d_embed, d_embed, bias=False) for _ in range(n[bilinear_type])
        )
        layers, d_in = [], F * (F - 1) * d_embed
        for d in mlp_layers:
            layers += [
                nn.Linear(d_in, d),
                nn.BatchNorm1d(d),
                nn.ReLU(),
                nn.Dropout(0.3),
            ]
            d_in = d
        self.mlp = nn.Sequential(*layers, nn.Linear(d_in, 1))

    def bilinear(self, e):
        v = torch.split(e, 1, dim=1)
        out = []
        for p, (i, j) in enumerate(self.pairs):
            m = {"field_all": 0, "field_each": i, "field_interaction": p}
            out.append(self.bl[m[self.bilinear_type]](v[i]) * v[j])
        return torch.cat(out, dim=1)

    def forward(self, x):
        x_num, x_cat = x
        idx = x_cat + self.offsets[None]
        wide = self.num_linear(x_num) + self.cat_fc(idx).sum(1) + self.cat_bias
        e_num = torch.einsum("bfi,fij->bfj", x_num[..., None], self.num_weight)
        e = torch.cat([e_num, self.cat_table(idx)], dim=1)
        a = torch.relu(self.se2(torch.relu(self.se1(e.mean(-1)))))
        both = torch.cat([self.bilinear(e), self.bilinear(e * a[..., None])], dim=1)
        return (wide + self.mlp(torch.flatten(both, start_dim=1))).squeeze(-1)


def _copy_seed_style_weights(ours, seed):
    with torch.no_grad():
        ours.num_linear.load_state_dict(seed.num_linear.state_dict())
        ours.cat_linear.fc.weight.copy_(seed.cat_fc.weight)
        ours.cat_linear.bias.copy_(seed.cat_bias)
        ours.num_embedding.weight.copy_(seed.num_weight[:, 0, :])
        ours.cat_embedding.embedding.weight.copy_(seed.cat_table.weight)
        ours.senet.excitation[0].weight.copy_(seed.se1.weight)
        ours.senet.excitation[2].weight.copy_(seed.se2.weight)
        # nn.Linear computes v @ W.T, our layout v @ W: transpose each matrix
        ours.bilinear.weight.copy_(torch.stack([lin.weight.T for lin in seed.bl]))
        ours.mlp.layers.load_state_dict(seed.mlp.state_dict())


def _batch(n_num, cats, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(batch, n_num, generator=g)
    cols = [torch.randint(0, c, (batch,), generator=g) for c in cats]
    x_cat = torch.stack(cols, 1) if cols else torch.zeros(batch, 0, dtype=torch.long)
    return x_num, x_cat


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_shared_fibinet_reproduces_the_seed_style_model(bilinear_type):
    torch.manual_seed(0)
    cats = [4, 3, 7, 2]
    seed = SeedStyleFiBiNET(3, cats, 5, [16, 8], bilinear_type)
    ours = FiBiNET(
        3, cats, 5, (16, 8), 0.3, bilinear_type=bilinear_type, shared_bilinear=True
    )
    _copy_seed_style_weights(ours, seed)
    seed.eval()
    ours.eval()
    x = _batch(3, cats)
    torch.testing.assert_close(ours(x), seed(x), atol=1e-5, rtol=1e-5)


def _seed_namespace():
    """Execute the seed tutorial's model code block (when the seed is present)."""
    if not SEED_MD.exists():
        pytest.skip(f"seed tutorial not found at {SEED_MD}")
    blocks = re.findall(r"```python\n(.*?)```", SEED_MD.read_text(), flags=re.S)
    model_code = next(b for b in blocks if "class FiBiNET" in b)
    namespace = {}
    exec(compile(model_code, str(SEED_MD), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("bilinear_type", TYPES)
def test_shared_fibinet_reproduces_the_seed_code(bilinear_type):
    ns = _seed_namespace()
    torch.manual_seed(0)
    cats = [4, 3, 7, 2]
    seed = ns["FiBiNET"](3, cats, 5, [16, 8], 0.25, 3, bilinear_type)
    ours = FiBiNET(
        3, cats, 5, (16, 8), 0.25, bilinear_type=bilinear_type, shared_bilinear=True
    )
    s = dict(seed.named_parameters())
    with torch.no_grad():
        ours.num_linear.weight.copy_(s["num_linear.weight"])
        ours.num_linear.bias.copy_(s["num_linear.bias"])
        ours.cat_linear.fc.weight.copy_(s["cat_linear.fc.weight"])
        ours.cat_linear.bias.copy_(s["cat_linear.bias"])
        ours.num_embedding.weight.copy_(s["num_embedding.weight"][:, 0, :])
        ours.cat_embedding.embedding.weight.copy_(s["cat_embedding.embedding.weight"])
        ours.senet.excitation.load_state_dict(seed.se_attention.excitation.state_dict())
        layers = seed.bilinear.bilinear_layer
        layers = [layers] if isinstance(layers, nn.Linear) else list(layers)
        ours.bilinear.weight.copy_(torch.stack([lin.weight.T for lin in layers]))
        ours.mlp.layers.load_state_dict(seed.mlp.mlp.state_dict())
    seed.eval()
    ours.eval()
    x = _batch(3, cats)
    torch.testing.assert_close(ours(x), seed(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bilinear_type", TYPES)
@pytest.mark.parametrize("shared", [True, False])
def test_fast_and_loop_fibinet_agree_including_gradients(bilinear_type, shared):
    cats = [5, 2, 9]
    kw = dict(bilinear_type=bilinear_type, shared_bilinear=shared)
    torch.manual_seed(0)
    fast = FiBiNET(2, cats, 4, (8,), 0.0, fast=True, **kw)
    loop = FiBiNET(2, cats, 4, (8,), 0.0, fast=False, **kw)
    loop.load_state_dict(fast.state_dict())
    # eval: in training mode batch norm makes the first bias's gradient ~0 + noise
    fast.eval()
    loop.eval()
    x = _batch(2, cats)
    out_fast, out_loop = fast(x), loop(x)
    torch.testing.assert_close(out_fast, out_loop, atol=1e-5, rtol=1e-5)
    out_fast.sum().backward()
    out_loop.sum().backward()
    for (name, a), b in zip(fast.named_parameters(), loop.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_shared_and_separate_bilinear_parameters():
    shared = FiBiNET(2, [5, 4], 4, (8,), 0.0, shared_bilinear=True)
    separate = FiBiNET(2, [5, 4], 4, (8,), 0.0, shared_bilinear=False)
    assert separate.bilinear_se is not None and shared.bilinear_se is None
    assert count_parameters(separate) - count_parameters(shared) == 4 * 4


@pytest.mark.parametrize(
    "d_numerical,cats", [(4, None), (0, [3, 5, 2]), (None, [3, 5]), (3, [6])]
)
def test_models_with_only_one_kind_of_field(d_numerical, cats):
    n_num = d_numerical or 0
    x_num, x_cat = _batch(n_num, cats or [])
    x = (x_num if n_num else None, x_cat if cats else None)
    for net in (
        FiBiNET(d_numerical, cats, 4, (8,), 0.1),
        DeepFM(d_numerical, cats, 4, (8,), 0.1),
        FM(d_numerical, cats, 4),
        LogisticRegression(d_numerical, cats),
    ):
        out = net(x)
        assert out.shape == (16,) and torch.isfinite(out).all()
        out.sum().backward()


def test_fibinet_mlp_input_is_f_times_f_minus_one_times_d():
    net = FiBiNET(13, [10] * 26, 8, (128, 64, 32), 0.25)
    assert net.mlp.layers[0].in_features == 39 * 38 * 8 == 11856


def test_field_importance_shape_and_names():
    net = FiBiNET(2, [3, 4], 4, (8,), 0.0)
    assert net.field_importance(_batch(2, [3, 4])).shape == (16, 4)
    assert net.field_names == ["I1", "I2", "C1", "C2"]


def test_deepfm_equals_its_three_parts():
    torch.manual_seed(0)
    net = DeepFM(2, [3, 4], 4, (8,), 0.0).eval()
    x_num, x_cat = _batch(2, [3, 4])
    emb = net.embed(x_num, x_cat)
    fm = sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in combinations(range(4), 2))
    want = net.linear(x_num, x_cat)[:, 0] + fm + net.mlp(emb.flatten(1))[:, 0]
    torch.testing.assert_close(net((x_num, x_cat)), want)


def test_fm_equals_its_parts():
    torch.manual_seed(0)
    net = FM(2, [3, 4], 4)
    x_num, x_cat = _batch(2, [3, 4])
    emb = net.embed(x_num, x_cat)  # [B, F, d]
    pairs = sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in combinations(range(4), 2))
    want = net.linear(x_num, x_cat)[:, 0] + pairs
    torch.testing.assert_close(net((x_num, x_cat)), want)
    # DeepFM is FM plus an MLP over the same embeddings
    deepfm = DeepFM(2, [3, 4], 4, (8,), 0.0).eval()
    fm_part = {k: v for k, v in deepfm.state_dict().items() if k in net.state_dict()}
    net.load_state_dict(fm_part)
    mlp = deepfm.mlp(deepfm.embed(x_num, x_cat).flatten(1))[:, 0]
    torch.testing.assert_close(deepfm((x_num, x_cat)), net((x_num, x_cat)) + mlp)


@pytest.mark.parametrize("d_num,cats,d_embed", [(2, [3, 4], 4), (13, [10] * 26, 8)])
def test_fm_parameter_count_is_n_times_d_plus_one_plus_two(d_num, cats, d_embed):
    # a weight and a vector per feature, and the wide part's two biases
    n_features = d_num + sum(cats)
    net = FM(d_num, cats, d_embed)
    assert count_parameters(net) == n_features * (d_embed + 1) + 2
    lr = LogisticRegression(d_num, cats)
    assert count_parameters(net) - count_parameters(lr) == n_features * d_embed


def test_fm_saves_and_loads_through_the_registry(tmp_path):
    from fibinet_tutorial import train as T

    assert T.MODELS["fm"] is FM and T.MODEL_TITLES["fm"] == "FM"
    config = {"model": "fm", "d_numerical": 2, "categories": [3, 4], "d_embed": 4}
    torch.manual_seed(0)
    net = T.build_model(config)
    assert isinstance(net, FM) and net.cat_embedding.embedding.weight.shape[1] == 4
    T.save_model(net, config, tmp_path / "fm.pt")
    loaded, loaded_config = T.load_model(tmp_path / "fm.pt")
    assert loaded_config == config
    x = _batch(2, [3, 4])
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize("model", ["fibinet", "fibinetpp", "deepfm", "fm", "lr"])
def test_bad_inputs_raise_value_errors_naming_the_field(model):
    cats = [3, 5]
    net = {
        "fibinet": lambda: FiBiNET(2, cats, 4, (8,), 0.0),
        "fibinetpp": lambda: FiBiNETPlusPlus(2, cats, 4, (8,), 0.0),
        "deepfm": lambda: DeepFM(2, cats, 4, (8,), 0.0),
        "fm": lambda: FM(2, cats, 4),
        "lr": lambda: LogisticRegression(2, cats),
    }[model]()
    x_num, x_cat = _batch(2, cats)
    with pytest.raises(ValueError, match=r"x_num must be \[batch_size, 2\]"):
        net((x_num[:, :1], x_cat))
    with pytest.raises(ValueError, match=r"x_cat must be \[batch_size, 2\]"):
        net((x_num, x_cat[:, :1]))
    with pytest.raises(ValueError, match="long"):
        net((x_num, x_cat.float()))
    with pytest.raises(ValueError, match="float"):
        net((x_num.long(), x_cat))
    bad = x_cat.clone()
    bad[4, 1] = 5
    with pytest.raises(ValueError, match=r"field C2 \(x_cat column 1\).*5.*\[0, 5\)"):
        net((x_num, bad))
    bad[4, 1] = -1
    with pytest.raises(ValueError, match="field C2"):
        net((x_num, bad))
    with pytest.raises(ValueError, match="x = \\(x_num, x_cat\\)"):
        net(x_num)
    with pytest.raises(ValueError, match="rows"):
        net((x_num[:3], x_cat))


def test_named_fields_appear_in_errors():
    net = LogisticRegression(1, [2], field_names=["age", "city"])
    with pytest.raises(ValueError, match="field city"):
        net((torch.zeros(1, 1), torch.tensor([[7]])))
    with pytest.raises(ValueError, match="2 names for 3 fields"):
        LogisticRegression(1, [2, 2], field_names=["a", "b"])


def test_non_embedding_parameters_leave_out_the_per_category_tables():
    from fibinet_tutorial.models import count_non_embedding_parameters

    cats, d = [5, 7], 4
    lr = LogisticRegression(3, cats)
    assert count_non_embedding_parameters(lr) == 3 + 1 + 1  # num weights, 2 biases
    net = FiBiNET(3, cats, d_embed=d, mlp_layers=(8,))
    tables = sum(cats) * d + sum(cats)  # embeddings + the wide part's weights
    assert count_non_embedding_parameters(net) == count_parameters(net) - tables


@pytest.mark.slow
def test_fm_trains_through_train_one_and_the_cli_takes_it(tmp_path):
    from fibinet_tutorial import train as T
    from fibinet_tutorial.train.cli import parse_args

    assert parse_args(["--model", "fm", "lr"]).model == ["fm", "lr"]
    prepared = T.prepare_data(rows=6000, data_dir=tmp_path)  # the built-in data
    hp = T.default_hparams() | {"epochs": 2, "seeds": 1}
    run = T.train_one("fm", prepared, hp, tmp_path, progress="none")
    assert isinstance(run["net"], FM) and run["config"]["d_embed"] == 8
    assert run["result"]["test_auc"] > 0.65  # chance is 0.5, the oracle ~0.8
