"""Every layer, model and the training loop on every device: the same results
as on the CPU (within float tolerance). The CUDA cases run where a GPU is
visible (`make gpu-check`) and are skipped elsewhere; the "meta" device (shapes
only, no data) stands in for "not a CPU" in the checks that the CPU-only tricks
stay off other devices by design."""

import copy

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from torch import nn

from fibinet_tutorial import data as D
from fibinet_tutorial import fast
from fibinet_tutorial import train as T
from fibinet_tutorial.fast import blocks, cpu
from fibinet_tutorial.layers import (
    MLP,
    BilinearInteraction,
    BilinearInteractionLoop,
    BilinearPlus,
    BilinearPlusLoop,
    CatEmbedding,
    CatLinear,
    FFMInteraction,
    FieldBatchNorm,
    FMInteraction,
    NumEmbedding,
    NumLayerNorm,
    SENetAttention,
    SENetPlus,
)
from fibinet_tutorial.models import (
    FM,
    DeepFM,
    FiBiNET,
    FiBiNETPlusPlus,
    LogisticRegression,
    SeedEnsemble,
)
from fibinet_tutorial.synthetic import SyntheticCriteo

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA GPU here"
        ),
    ),
]
TOL = {"atol": 2e-5, "rtol": 2e-4}  # float32 sums in another order
CATEGORIES = [7, 3, 11, 5]


def _run(module: nn.Module, inputs, device: str, grad_seed: int = 0):
    """Forward and backward of `module` on `device`: output, input gradients
    and parameter gradients, all back on the CPU."""
    module = copy.deepcopy(module).to(device)
    xs = [x.detach().to(device) for x in inputs]
    for x in xs:
        if x.is_floating_point():
            x.requires_grad_(True)
    out = module(*xs)
    g = torch.Generator().manual_seed(grad_seed)
    grad = torch.randn(out.shape, generator=g).to(device)
    out.backward(grad)
    grads = [x.grad.cpu() for x in xs if x.is_floating_point()]
    params = {k: p.grad.cpu() for k, p in module.named_parameters()}
    return out.detach().cpu(), grads, params


def _assert_same(got, want):
    out, grads, params = got
    torch.testing.assert_close(out, want[0], **TOL)
    for a, b in zip(grads, want[1]):
        torch.testing.assert_close(a, b, **TOL)
    assert params.keys() == want[2].keys()
    for k in params:
        torch.testing.assert_close(params[k], want[2][k], **TOL, msg=k)


def _fields(batch=16, num_fields=6, d_embed=4, stacks=None):
    torch.manual_seed(0)
    shape = (batch, num_fields, d_embed) if stacks is None else (batch, stacks, 6, 4)
    return torch.randn(shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "bilinear_type", ["field_all", "field_each", "field_interaction"]
)
def test_fast_bilinear_on_device_equals_the_loop_on_the_cpu(device, bilinear_type):
    torch.manual_seed(1)
    fast_layer = BilinearInteraction(6, 4, bilinear_type)
    loop = BilinearInteractionLoop(6, 4, bilinear_type)
    loop.weight = fast_layer.weight
    x = _fields()
    _assert_same(_run(fast_layer, [x], device), _run(loop, [x], "cpu"))
    # FiBiNET's two branches in one call, a weight each
    stacked = _fields(stacks=2)
    weight = torch.randn(2, *fast_layer.weight.shape)
    out = fast.bilinear_interaction(
        stacked.to(device), weight.to(device), bilinear_type
    ).cpu()
    want = torch.stack(
        [
            torch.stack(
                [
                    (stacked[:, s, i] @ weight[s, m]) * stacked[:, s, j]
                    for m, i, j in _pairs(6, bilinear_type)
                ],
                dim=1,
            )
            for s in range(2)
        ],
        dim=1,
    )
    torch.testing.assert_close(out, want, **TOL)


def _pairs(num_fields, bilinear_type):
    from itertools import combinations

    for p, (i, j) in enumerate(combinations(range(num_fields), 2)):
        m = {"field_all": 0, "field_each": i, "field_interaction": p}[bilinear_type]
        yield m, i, j


@pytest.mark.parametrize("device", DEVICES)
def test_every_layer_on_device_equals_the_cpu(device):
    torch.manual_seed(2)
    x = _fields()
    x_num = torch.randn(16, 3)
    x_cat = torch.stack([torch.randint(0, c, (16,)) for c in CATEGORIES], 1)
    cases = [
        (SENetAttention(6, 2), [x]),
        (SENetPlus(6, x.shape[-1], 2), [x]),
        (BilinearPlus(6, x.shape[-1]), [x]),
        (BilinearPlusLoop(6, x.shape[-1]), [x]),
        (FieldBatchNorm(x.shape[-1]), [x]),
        (NumLayerNorm(6, x.shape[-1]), [x]),
        (FMInteraction(), [x]),
        (FFMInteraction(CATEGORIES, 4), [x_cat]),
        (NumEmbedding(3, 4), [x_num]),
        (CatEmbedding(CATEGORIES, 4), [x_cat]),
        (CatLinear(CATEGORIES), [x_cat]),
        (MLP(24, [8, 4], dropout=0.0).eval(), [x.flatten(1)]),
    ]
    for module, inputs in cases:
        _assert_same(_run(module, inputs, device), _run(module, inputs, "cpu"))


@pytest.mark.parametrize("device", DEVICES)
def test_fast_blocks_on_device_equal_pytorch_on_the_cpu(device):
    torch.manual_seed(3)
    linear = fast.Linear(24, 5)
    plain = nn.Linear(24, 5)
    plain.load_state_dict(linear.state_dict())
    cols = torch.randn(24, 16)  # batch-innermost, as the bilinear layer hands it
    x = cols.t()
    _assert_same(_run(linear, [x], device), _run(plain, [x.contiguous()], "cpu"))
    table = nn.Embedding(9, 4)
    idx = torch.randint(0, 9, (16, 3))
    got = _run(_Lookup(table, fast_path=True), [idx], device)
    want = _run(_Lookup(table, fast_path=False), [idx], "cpu")
    _assert_same(got, want)


class _Lookup(nn.Module):
    """fast.lookup, or PyTorch's own embedding, as a module of the indices."""

    def __init__(self, table: nn.Embedding, fast_path: bool):
        super().__init__()
        self.weight, self.fast_path = table.weight, fast_path

    def forward(self, idx):
        if self.fast_path:
            return fast.lookup(self.weight, idx)
        return nn.functional.embedding(idx, self.weight)


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_on_device_keeps_its_rate_and_scale(device):
    torch.manual_seed(4)
    x = torch.ones(200_000, device=device)
    out = fast.Dropout(0.3).train()(x)
    kept = (out != 0).float().mean().item()
    assert abs(kept - 0.7) < 0.01
    torch.testing.assert_close(out[out != 0].mean().cpu(), torch.tensor(1 / 0.7))
    assert torch.equal(fast.Dropout(0.3).eval()(x), x)


def _models():
    torch.manual_seed(5)
    common = {"d_embed": 4, "mlp_layers": (8,), "mlp_dropout": 0.0}
    return {
        "fibinet": FiBiNET(3, CATEGORIES, **common),
        "fibinet_shared": FiBiNET(3, CATEGORIES, shared_bilinear=True, **common),
        "fibinet_pairs": FiBiNET(
            3, CATEGORIES, bilinear_type="field_interaction", **common
        ),
        "fibinet_loop": FiBiNET(3, CATEGORIES, fast=False, **common),
        "deepfm": DeepFM(3, CATEGORIES, **common),
        "fm": FM(3, CATEGORIES, d_embed=4),
        "fibinetpp": FiBiNETPlusPlus(3, CATEGORIES, **common),
        "fibinetpp_loop": FiBiNETPlusPlus(3, CATEGORIES, fast=False, **common),
        "lr": LogisticRegression(3, CATEGORIES),
        "ensemble": SeedEnsemble([LogisticRegression(3, CATEGORIES) for _ in range(2)]),
    }


class _Model(nn.Module):
    """A CTR model as a module of two tensors (x_num, x_cat), for `_run`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_num, x_cat):
        return self.net((x_num, x_cat))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(_models()))
def test_every_model_on_device_equals_the_cpu(device, name):
    net = _models()[name]
    torch.manual_seed(6)
    x_num = torch.randn(32, 3)
    x_cat = torch.stack([torch.randint(0, c, (32,)) for c in CATEGORIES], 1)
    for mode in ("train", "eval"):
        model = _Model(net).train(mode == "train")
        want = _run(model, [x_num, x_cat], "cpu")
        _assert_same(_run(model, [x_num, x_cat], device), want)


def test_training_forward_never_waits_for_the_device():
    # "meta" tensors have shapes but no data: anything that reads a value
    # back (as a check of index ranges would, once per step) raises
    for net in _models().values():
        meta = copy.deepcopy(net).to("meta").train()
        x = (
            torch.empty(32, 3, device="meta"),
            torch.empty(32, len(CATEGORIES), dtype=torch.long, device="meta"),
        )
        meta(x).sum().backward()  # no value read back
        with pytest.raises(RuntimeError, match="meta"):
            meta.eval()(x)  # evaluation does check the indices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_training_forward_on_cuda_does_not_synchronize():
    x_num = torch.randn(64, 3, device="cuda")
    x_cat = torch.stack(
        [torch.randint(0, c, (64,), device="cuda") for c in CATEGORIES], 1
    )
    for net in _models().values():
        net = net.cuda().train()
        torch.cuda.set_sync_debug_mode("error")
        try:
            net((x_num, x_cat))
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_index_errors_keep_their_message_on_any_device():
    net = LogisticRegression(3, CATEGORIES)
    x_cat = torch.zeros(4, len(CATEGORIES), dtype=torch.long)
    x_cat[2, 1] = 3  # field 2 has 3 categories: 0..2
    for mode in (True, False):  # CPU: checked in training and in evaluation
        with pytest.raises(
            ValueError, match=r"C2 \(x_cat column 1\): index 3 in row 2"
        ):
            net.train(mode)((torch.zeros(4, 3), x_cat))


def test_cpu_only_tricks_stay_off_other_devices(monkeypatch):
    calls = []

    def record(name):
        def fake(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran on a non-CPU device")

        return fake

    monkeypatch.setattr(blocks, "_keep_mask", record("_keep_mask"))
    monkeypatch.setattr(blocks._RowLookup, "apply", record("_RowLookup"))
    monkeypatch.setattr(cpu, "_madvise", lambda: record("madvise"))
    x = torch.empty(1 << 20, device="meta")
    fast.Dropout(0.5).train()(x)
    weight = torch.empty(10, 4, device="meta", requires_grad=True)
    fast.lookup(weight, torch.zeros(3, dtype=torch.long, device="meta"))
    assert fast.advise_huge_pages(torch.empty(4 << 20, device="meta")) is False
    assert calls == []
    with pytest.raises(AssertionError, match="_keep_mask ran"):
        fast.Dropout(0.5).train()(torch.ones(8))  # on the CPU the trick runs
    # process-wide settings: only threads on a GPU; denormals and the
    # allocator on the CPU alone
    applied = []
    monkeypatch.setattr(cpu, "keep_freed_memory", lambda: applied.append("malloc"))
    monkeypatch.setattr(cpu, "flush_denormals", lambda: applied.append("denormals"))
    with cpu.training_settings("cuda", threads=1):
        assert torch.get_num_threads() == 1
    assert applied == []
    with cpu.training_settings("cpu", threads=1):
        pass
    assert applied == ["malloc", "denormals"]


def test_bilinear_kernel_runs_on_any_device():
    for bilinear_type in ("field_all", "field_each", "field_interaction"):
        layer = BilinearInteraction(6, 4, bilinear_type).to("meta")
        x = torch.empty(16, 6, 4, device="meta", requires_grad=True)
        out = layer(x)
        assert out.shape == (16, 15, 4) and out.device.type == "meta"
        out.sum().backward()
        assert x.grad.shape == x.shape


def test_loaders_pin_memory_where_a_gpu_is(monkeypatch):
    ds = D.CTRDataset(np.zeros((10, 3), np.float32), np.zeros((10, 4), np.int64))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert D.make_loader(ds, 4, shuffle=True).pin_memory
    assert T.eval_loader(ds).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not D.make_loader(ds, 4, shuffle=True).pin_memory


def test_the_trainer_asks_accelerate_for_non_blocking_copies():
    from accelerate.utils import DataLoaderConfiguration

    class FakeAccelerator:
        dataloader_config = DataLoaderConfiguration()

    model = T.CTRKerasModel(LogisticRegression(3, CATEGORIES))
    model.accelerator = FakeAccelerator()
    assert model.accelerator.dataloader_config.non_blocking is True


@pytest.mark.parametrize(
    "capability,amx,want",
    [
        ((7, 5), False, "float32"),  # T4: bf16 emulated
        ((7, 0), True, "float32"),  # V100 (the host CPU's AMX does not matter)
        ((8, 0), False, "bf16"),  # A100
        ((9, 0), False, "bf16"),  # H100 / H200
        (None, False, "float32"),  # a CPU without AMX
        (None, True, "bf16"),  # a CPU with AMX
    ],
)
def test_auto_precision_by_machine(monkeypatch, capability, amx, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: capability
    )
    monkeypatch.setattr(T.hparams, "has_amx", lambda: amx)
    assert T.auto_precision() == want
    assert T.resolve_hparams(T.default_hparams(), 1000)["precision"] == want
    assert T.auto_precision("cpu") == ("bf16" if amx else "float32")


def _prepared(n=1200, seed=0):
    df = SyntheticCriteo().sample(n)
    pre = D.CriteoPreprocessor(min_count=2).fit(df[: n // 2])
    parts = {
        "train": df[: n // 2],
        "val": df[n // 2 : 3 * n // 4],
        "test": df[3 * n // 4 :],
    }
    out = {f"ds_{k}": D.CTRDataset.from_frame(v, pre) for k, v in parts.items()}
    return out | {"preprocessor": pre, "frames": parts}


@pytest.mark.parametrize("device", DEVICES)
def test_training_loop_on_device_matches_the_cpu(device, tmp_path):
    prepared = _prepared()
    config = T.model_config("fibinet", prepared["preprocessor"], T.default_hparams())
    config |= {"d_embed": 4, "mlp_layers": [8], "mlp_dropout": 0.0}
    probs = {}
    for where in ("cpu", device):
        # accelerate keeps the device of the first Accelerator for the whole
        # process; start afresh for each (accelerate's own tests do the same)
        AcceleratorState._reset_state(reset_partial_state=True)
        torch.manual_seed(0)
        model = T.CTRKerasModel(T.build_model(config), lr=1e-3)
        model.fit(
            D.make_loader(prepared["ds_train"], 64, True),
            T.eval_loader(prepared["ds_val"]),
            epochs=2,
            ckpt_path=tmp_path / f"{where}.pt",
            progress="none",
            precision="float32",
            cpu=where == "cpu",
        )
        assert next(model.net.parameters()).device.type == where
        probs[where] = T.predict_proba(model.net, T.eval_loader(prepared["ds_test"]))
        # saved, reloaded on the same device, scored from raw rows
        T.save_model(model.net, config, tmp_path / f"{where}_saved.pt")
        clone, _ = T.load_model(tmp_path / f"{where}_saved.pt", device=where)
        scored = T.score(clone, prepared["preprocessor"], prepared["frames"]["test"])
        np.testing.assert_array_equal(scored, probs[where])
    np.testing.assert_allclose(probs[device], probs["cpu"], atol=1e-4)
