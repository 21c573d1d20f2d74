"""Training with KerasModel, the CLI, reloading, several processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fibinet_tutorial import data as D
from fibinet_tutorial import train as T
from fibinet_tutorial.synthetic import SyntheticCriteo

SMALL = ["--rows", "12000", "--epochs", "2", "--mlp", "16", "--progress", "none"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def cli(*args, cwd=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "fibinet_tutorial.train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    proc = cli(
        *SMALL,
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--model",
        "fibinet",
        "lr",
        "--threads",
        "1",
    )
    return out, proc


@pytest.mark.slow
def test_cli_prints_one_json_object_last_and_writes_it(run_dir):
    out, proc = run_dir
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in (
        "model",
        "val_auc",
        "test_auc",
        "test_logloss",
        "epochs_run",
        "seconds_per_epoch",
        "oracle_auc",
        "oracle_logloss",
    ):
        assert key in summary, key
    assert summary["model"] == "fibinet"
    assert json.loads((out / "metrics.json").read_text()) == summary
    models = [row["model"] for row in summary["comparison"]]
    assert models == ["fibinet", "lr", "oracle"]
    assert 0.5 < summary["test_auc"] <= summary["oracle_auc"] + 0.02
    for name in (
        "learning_curves.png",
        "field_importance.png",
        "fibinet.pt",
        "fibinet.json",
        "lr.pt",
        "preprocessor.json",
        "history_fibinet.csv",
    ):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_same_seed_same_metrics_to_the_last_digit(run_dir, data_dir, tmp_path):
    out, proc = run_dir
    again = cli(
        *SMALL,
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path),
        "--model",
        "fibinet",
        "lr",
        "--threads",
        "1",
    )
    a, b = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (proc, again))
    for row_a, row_b in zip(a["comparison"], b["comparison"]):
        row_a.pop("seconds_per_epoch", None)
        row_b.pop("seconds_per_epoch", None)
        assert row_a == row_b


@pytest.mark.slow
def test_reload_in_a_fresh_process_scores_unseen_categories(run_dir, tmp_path):
    out, _ = run_dir
    rows = SyntheticCriteo(seed=7).sample(50, start=10**6)  # another world's values
    rows.loc[:3, "C1"] = "deadbeef"
    rows.loc[4:6, ["I1", "C2"]] = None
    rows.to_pickle(tmp_path / "rows.pkl")
    code = (
        "import sys, pandas as pd, numpy as np\n"
        "from fibinet_tutorial.train import load_trained, score\n"
        f"net, pre = load_trained({str(out)!r}, 'fibinet')\n"
        f"p = score(net, pre, pd.read_pickle({str(tmp_path / 'rows.pkl')!r}))\n"
        "assert p.shape == (50,) and np.isfinite(p).all() and (p > 0).all()\n"
        "print('scored', p.mean())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("scored")


@pytest.mark.slow
def test_saved_weights_load_with_weights_only(run_dir):
    out, _ = run_dir
    state = torch.load(out / "fibinet.pt", weights_only=True)
    net, config = T.load_model(out / "fibinet.pt")
    assert config["model"] == "fibinet"
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])


@pytest.mark.slow
def test_best_epoch_weights_are_kept(run_dir):
    out, _ = run_dir
    history = pd.read_csv(out / "history_fibinet.csv")
    summary = json.loads((out / "metrics.json").read_text())
    column, mode = T.MONITORS[T.default_hparams()["monitor"]]
    best = history[column].idxmax() if mode == "max" else history[column].idxmin()
    assert abs(summary["val_auc"] - history["val_auc"][best]) < 1e-9


def _bad_file(tmp_path, text):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    return path


def _good_line(label="0", i1="5", c1="68fd1e64"):
    return "\t".join([label, i1] + ["1"] * 12 + [c1] + ["a73ee510"] * 25)


@pytest.mark.parametrize(
    "case,expect",
    [
        ("columns", "line 2"),
        ("integer", "column I1"),
        ("missing", "missing.txt"),
        ("tiny", "split is empty"),
    ],
)
@pytest.mark.slow
def test_cli_errors_end_with_one_readable_line(tmp_path, case, expect):
    if case == "columns":
        path = _bad_file(tmp_path, _good_line() + "\n" + _good_line() + "\t7\n")
    elif case == "integer":
        path = _bad_file(tmp_path, _good_line() + "\n" + _good_line(i1="abc") + "\n")
    elif case == "tiny":
        path = _bad_file(tmp_path, _good_line() + "\n" + _good_line("1") + "\n")
    else:
        path = tmp_path / "missing.txt"
    proc = cli("--data", str(path), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expect in last, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_bad_flag_is_one_line_no_traceback(tmp_path):
    proc = cli("--mlp", "128,abc", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "128,abc" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("monitor", list(T.MONITORS))
def test_keras_model_early_stopping_and_history(tmp_path, monitor):
    truth = SyntheticCriteo()
    df = truth.sample(6000)
    pre = D.CriteoPreprocessor().fit(df[:4000])
    ds_train = D.CTRDataset.from_frame(df[:4000], pre)
    ds_val = D.CTRDataset.from_frame(df[4000:], pre)
    torch.manual_seed(0)
    net = T.build_model(
        {"model": "lr", "d_numerical": 13, "categories": pre.categories}
    )
    model = T.CTRKerasModel(net, lr=0.05)
    history = model.fit(
        D.make_loader(ds_train, 512, True),
        D.make_loader(ds_val, 4096, False),
        epochs=40,
        patience=1,
        ckpt_path=tmp_path / "lr.pt",
        progress="none",
        monitor=monitor,
    )
    assert {"train_loss", "val_auc", "val_logloss", "seconds"} <= set(history)
    column, mode = T.MONITORS[monitor]
    scores = history[column].to_numpy() * (1 if mode == "max" else -1)
    best = int(scores.argmax())
    assert len(history) == best + 2  # stopped one epoch after the best (patience 1)
    got = T.evaluate(model.net, D.make_loader(ds_val, 4096, False))
    assert abs(got["auc"] - history["val_auc"][best]) < 1e-9
    assert abs(got["logloss"] - history["val_logloss"][best]) < 1e-9
    auc_minus = history["val_auc"][best] - history["val_logloss"][best]
    assert abs(history["val_auc_minus_logloss"][best] - auc_minus) < 1e-9
    with pytest.raises(ValueError, match="monitor must be one of"):
        model.fit(D.make_loader(ds_train, 512, True), monitor="val_auc")


@pytest.mark.slow
def test_streamed_path_matches_in_memory(data_dir, tmp_path):
    common = [*SMALL, "--data-dir", str(data_dir), "--model", "lr", "--threads", "1"]
    a = json.loads(cli(*common, "--out", str(tmp_path / "a")).stdout.splitlines()[-1])
    b = json.loads(
        cli(*common, "--out", str(tmp_path / "b"), "--streamed").stdout.splitlines()[-1]
    )
    assert (tmp_path / "b" / "arrays" / "x_cat.npy").exists()
    assert abs(a["test_auc"] - b["test_auc"]) < 1e-4
    assert a["oracle_auc"] == b["oracle_auc"]


@pytest.mark.skipif(
    shutil.which("accelerate") is None
    and not (Path(sys.executable).parent / "accelerate").exists(),
    reason="no accelerate CLI",
)
@pytest.mark.slow
@pytest.mark.parametrize("streamed", [False, True])
def test_two_processes_with_accelerate_launch(data_dir, tmp_path, streamed):
    launcher = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run(
        [
            str(launcher if launcher.exists() else "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "fibinet_tutorial.train",
            *SMALL,
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path),
            "--model",
            "fibinet",
            "--threads",
            "1",
            *(["--streamed"] if streamed else []),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    json_lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(json_lines) == 1  # metrics reported once, by the main process
    summary = json.loads(json_lines[0])
    assert summary["processes"] == 2
    assert summary["ranks_identical"] is True
    assert np.isfinite(summary["test_auc"])
    # streamed: the main process preprocessed once, the other opened its arrays
    arrays = sorted(p.name for p in tmp_path.glob("arrays*"))
    assert arrays == (["arrays"] if streamed else [])


def test_decay_groups_spare_senet_and_biases():
    from fibinet_tutorial.models import FiBiNET

    net = FiBiNET(2, [4, 6], d_embed=4, mlp_layers=(8,))
    groups = T.decay_groups(net, weight_decay=1e-3, mlp_weight_decay=0.5)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(net.named_parameters())
    assert decay[id(net.cat_embedding.embedding.weight)] == 1e-3
    assert decay[id(named["mlp.layers.0.weight"])] == 0.5
    assert decay[id(named["mlp.layers.0.bias"])] == 0.0
    assert all(decay[id(p)] == 0.0 for p in net.senet.parameters())
    assert decay[id(net.bilinear.weight)] == 0.0
    assert len(decay) == len(named)  # every parameter in exactly one group


def test_mlp_weight_decay_fades_with_size():
    sizes = [2_000, 4_500, 20_000, 240_000]
    wd = [T.auto_mlp_weight_decay(n) for n in sizes]
    assert wd == sorted(wd, reverse=True)
    assert wd[1] == pytest.approx(0.1) and wd[-1] < 1e-4
    h = T.resolve_hparams(T.default_hparams(), 4_500)
    assert h["mlp_weight_decay"] == pytest.approx(0.1)
    assert h["batch_size"] == T.auto_batch_size(4_500)
    fixed = T.default_hparams() | {"mlp_weight_decay": 0.0, "batch_size": 64}
    assert T.resolve_hparams(fixed, 4_500)["mlp_weight_decay"] == 0.0


def test_bf16_training_steps_and_float32_evaluation(tmp_path):
    df = SyntheticCriteo().sample(3000)
    pre = D.CriteoPreprocessor().fit(df[:2000])
    ds_train = D.CTRDataset.from_frame(df[:2000], pre)
    ds_val = D.CTRDataset.from_frame(df[2000:], pre)
    torch.manual_seed(0)
    config = {"model": "fibinet", "d_numerical": 13, "categories": pre.categories}
    net = T.build_model(config | {"d_embed": 4, "mlp_layers": [8]})
    seen = []  # (training?, dtype of the MLP's first layer's output)
    net.mlp.layers[0].register_forward_hook(
        lambda module, args, out: seen.append((module.training, out.dtype))
    )
    model = T.CTRKerasModel(net, lr=1e-3)
    history = model.fit(
        D.make_loader(ds_train, 256, True),
        D.make_loader(ds_val, 4096, False),
        epochs=1,
        ckpt_path=tmp_path / "fibinet.pt",
        progress="none",
        precision="bf16",
    )
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert "forward" not in model.net.__dict__  # the autocast wrapper is gone
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    got = T.evaluate(model.net, D.make_loader(ds_val, 4096, False))
    assert abs(got["auc"] - history["val_auc"].max()) < 1e-9
    with pytest.raises(ValueError, match="precision"):
        with T.autocast_training(net, "fp8"):
            pass


def test_auto_precision_is_bf16_only_where_it_is_fast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(T.hparams, "has_amx", lambda: False)
    assert T.auto_precision() == "float32"
    assert T.resolve_hparams(T.default_hparams(), 1000)["precision"] == "float32"
    monkeypatch.setattr(T.hparams, "has_amx", lambda: True)
    assert T.auto_precision() == "bf16"
    fixed = T.default_hparams() | {"precision": "float32"}
    assert T.resolve_hparams(fixed, 1000)["precision"] == "float32"


@pytest.mark.slow
def test_seed_ensemble_on_small_files(tmp_path):
    assert [T.auto_seeds(n) for n in (2_700, 5_999, 6_000, 200_000)] == [5, 5, 1, 1]
    df = SyntheticCriteo().sample(3000)
    pre = D.CriteoPreprocessor().fit(df[:2000])
    prepared = {
        "ds_train": D.CTRDataset.from_frame(df[:2000], pre),
        "ds_val": D.CTRDataset.from_frame(df[2000:2500], pre),
        "ds_test": D.CTRDataset.from_frame(df[2500:], pre),
        "preprocessor": pre,
    }
    hp = T.default_hparams() | {"d_embed": 4, "mlp_layers": [8], "epochs": 2}
    run = T.train_one("fibinet", prepared, hp | {"seeds": 2}, tmp_path, seed=3)
    net, history = run["net"], run["history"]
    assert len(net.members) == 2 and run["result"]["seeds"] == 2
    assert list(history["member"].unique()) == [0, 1]
    assert run["result"]["epochs_run"] == len(history)
    # member k is the single model trained from seed 3 + k
    alone = T.train_one("fibinet", prepared, hp | {"seeds": 1}, tmp_path, seed=4)
    member, single = net.members[1].state_dict(), alone["net"].state_dict()
    for key in single:
        torch.testing.assert_close(member[key], single[key])
    dl = T.eval_loader(prepared["ds_test"])
    x = next(iter(dl))[0]
    with torch.no_grad():
        want = torch.stack([m(x) for m in net.members]).mean(0)
        torch.testing.assert_close(net(x), want)
    weights = T.mean_field_importance(net, dl)
    assert list(weights.index) == D.NUM_COLS + D.CAT_COLS
    # saved and reloaded as one model; LR trains once unless asked
    T.save_model(net, run["config"], tmp_path / "ens.pt")
    loaded, config = T.load_model(tmp_path / "ens.pt")
    assert config["members"] == 2
    np.testing.assert_array_equal(T.predict_proba(loaded, dl), T.predict_proba(net, dl))
    assert T.train_one("lr", prepared, hp, tmp_path)["result"]["seeds"] == 1
    with pytest.raises(ValueError, match="seeds"):
        T.train_one("lr", prepared, hp | {"seeds": 0}, tmp_path)


@pytest.mark.parametrize("model", ["fibinet", "deepfm"])
def test_a_last_training_batch_of_one_row_cannot_stop_batchnorm(model, tmp_path):
    df = SyntheticCriteo().sample(160)
    pre = D.CriteoPreprocessor(min_count=1).fit(df)
    n_train = 2 * 64 + 1  # batch 64: the last batch would hold one row
    prepared = {
        "ds_train": D.CTRDataset.from_frame(df.iloc[:n_train], pre),
        "ds_val": D.CTRDataset.from_frame(df.iloc[n_train:], pre),
        "ds_test": D.CTRDataset.from_frame(df.iloc[n_train:], pre),
        "preprocessor": pre,
    }
    hp = T.default_hparams() | {"batch_size": 64, "epochs": 1, "seeds": 1}
    run = T.train_one(model, prepared, hp, tmp_path, progress="none")
    assert np.isfinite(run["result"]["val_logloss"])
