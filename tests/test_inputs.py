"""Input a user gets wrong, and messages they can act on: headers and commas,
labels of one class, hints that name the command line's flags or the Python
arguments, strict JSON; the streamed path for a test file and for the other
processes of a launch."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from fibinet_tutorial import data as D
from fibinet_tutorial import train as T
from fibinet_tutorial.synthetic import SyntheticCriteo
from fibinet_tutorial.train import cli, job

HEADER = ["label"] + D.NUM_COLS + D.CAT_COLS


def _lines(n=30, seed=0):
    return SyntheticCriteo(seed=seed).sample(n)


def _write_rows(path, df, sep="\t", header=False):
    df = df.astype({c: "Int64" for c in D.NUM_COLS})  # counts as integers
    text = df.to_csv(sep=sep, header=header, index=False, na_rep="")
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "sep,header,expect",
    [
        (",", False, "line 1 looks comma-separated (40 comma-separated fields)"),
        (",", True, "line 1 looks like a header and comma-separated"),
        ("\t", True, "line 1 looks like a header (label, I1, I2, ...)"),
    ],
)
def test_headers_and_commas_are_named_as_such(tmp_path, sep, header, expect):
    path = _write_rows(tmp_path / "sample.csv", _lines(), sep, header)
    with pytest.raises(D.CriteoFormatError) as e:
        D.read_criteo(path)
    message = str(e.value)
    assert message.startswith(f"{path}, line 1: {expect}")
    assert "expected Criteo's tab-separated format" in message
    assert "\n" not in message


def test_plain_criteo_lines_are_not_taken_for_a_header(tmp_path):
    df = _lines()
    df.loc[0, D.NUM_COLS] = np.nan  # line 1: every count missing
    assert len(D.read_criteo(_write_rows(tmp_path / "ok.txt", df))) == 30
    unlabelled = _write_rows(tmp_path / "test.txt", df.drop(columns="label"))
    assert "label" not in D.read_criteo(unlabelled)


def test_hints_name_flags_in_the_cli_and_arguments_in_python(tmp_path):
    # every line stripped of its empty tail fields: 30 fields each
    line = "\t".join(["1"] + ["5"] * 13 + ["68fd1e64"] * 16)
    path = tmp_path / "stripped.txt"
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(D.CriteoFormatError, match="pass labelled=True/False if"):
        D.read_criteo(path)
    with D.cli_hints():
        with pytest.raises(D.CriteoFormatError, match="pass --labelled yes/no if"):
            D.read_criteo(path)
    df = D.read_criteo(path, labelled=True)  # what the hint says works
    assert len(df) == 2 and df["label"].tolist() == [1, 1]
    assert cli.parse_args(["--labelled", "yes"]).labelled == "yes"


def _prepared(labels_train=None, labels_val=None, n=1200):
    df = _lines(n)
    parts = {"train": df[: n // 2], "val": df[n // 2 : 3 * n // 4]}
    parts["test"] = df[3 * n // 4 :]
    for part, label in (("train", labels_train), ("val", labels_val)):
        if label is not None:
            parts[part] = parts[part].assign(label=label)
    pre = D.CriteoPreprocessor(min_count=2).fit(parts["train"])
    out = {f"ds_{k}": D.CTRDataset.from_frame(v, pre) for k, v in parts.items()}
    return out | {"preprocessor": pre}


@pytest.mark.parametrize(
    "labels,part", [((0, None), "training"), ((None, 1), "validation")]
)
def test_one_class_stops_before_training(tmp_path, labels, part):
    prepared = _prepared(*labels)
    hp = T.default_hparams() | {"epochs": 1, "seeds": 1}
    label = labels[0] if labels[0] is not None else labels[1]
    with pytest.raises(ValueError, match=f"all [0-9,]+ {part} rows have label {label}"):
        T.train_one("lr", prepared, hp, tmp_path, progress="none")
    assert not (tmp_path / "lr.pt").exists()  # nothing was trained
    if part == "validation":
        with pytest.raises(ValueError, match="larger val_frac="):
            T.train_one("lr", prepared, hp, tmp_path, progress="none")
        with D.cli_hints(), pytest.raises(ValueError, match="larger --val-frac"):
            T.train_one("lr", prepared, hp, tmp_path, progress="none")


def test_an_unlabelled_file_cannot_train(tmp_path):
    path = _write_rows(tmp_path / "test.txt", _lines(200).drop(columns="label"))
    with pytest.raises(ValueError, match="no label column"):
        T.prepare_data(path)


def test_strict_json_has_no_nan_anywhere():
    summary = {
        "test_auc": float("nan"),
        "x": [1.0, float("inf"), np.float64("nan")],
        "nested": {"ok": 0.5, "bad": -math.inf},
        "n": 3,
    }
    strict = job.strict_json(summary)
    assert strict == {
        "test_auc": None,
        "x": [1.0, None, None],
        "nested": {"ok": 0.5, "bad": None},
        "n": 3,
    }
    json.dumps(strict, allow_nan=False)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fibinet_tutorial.train", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_test_file_of_one_class_gives_null_and_strict_json(tmp_path):
    data = _write_rows(tmp_path / "train.txt", _lines(4000))
    test = _write_rows(tmp_path / "test.txt", _lines(300, seed=1).assign(label=0))
    out = tmp_path / "run"
    proc = _cli(
        "--data", str(data), "--test", str(test), "--out", str(out),
        "--model", "lr", "--epochs", "1", "--progress", "none", "--threads", "1",
        "--labelled", "yes",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: all 300 test rows have label 0" in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last, parse_constant=pytest.fail)  # NaN would call it
    assert summary["test_auc"] is None and summary["test_logloss"] > 0
    saved = (out / "metrics.json").read_text()
    assert json.loads(saved, parse_constant=pytest.fail) == summary


def test_a_test_file_streams_too(tmp_path):
    data = _write_rows(tmp_path / "train.txt", _lines(3000))
    test = _write_rows(tmp_path / "test.txt", _lines(500, seed=1))
    streamed = T.prepare_data(data, test, streamed_dir=tmp_path / "arrays")
    in_memory = T.prepare_data(data, test)
    ds = streamed["ds_test"]
    assert isinstance(ds.x_cat, np.memmap) and len(ds) == 500
    assert (tmp_path / "arrays" / "test" / "x_cat.npy").exists()
    every = list(range(500))
    got, want = ds.__getitems__(every), in_memory["ds_test"].__getitems__(every)
    torch.testing.assert_close(got, want)


def test_other_processes_open_the_arrays_instead_of_preprocessing(
    tmp_path, monkeypatch
):
    data = _write_rows(tmp_path / "train.txt", _lines(3000))
    test = _write_rows(tmp_path / "test.txt", _lines(500, seed=1))
    first = T.prepare_data(data, test, streamed_dir=tmp_path / "arrays")

    def refuse(*args, **kwargs):
        raise AssertionError("preprocessed again")

    monkeypatch.setattr(D, "preprocess_to_arrays", refuse)
    other = T.prepare_data(
        data, test, streamed_dir=tmp_path / "arrays", open_streamed=True
    )
    for part in ("train", "val", "test"):
        a, b = first[f"ds_{part}"], other[f"ds_{part}"]
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.x_cat, b.x_cat)
