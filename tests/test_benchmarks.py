"""The multi-seed model comparison (benchmarks/models.py, `make bench-models`)."""

import json
import math
import sys
from pathlib import Path

import pytest

from fibinet_tutorial import train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import models as bench_models  # noqa: E402

KEYS = {
    "auc_below_oracle_mean",
    "auc_below_oracle_sd",
    "test_auc_mean",
    "test_auc_sd",
    "test_logloss_mean",
    "test_logloss_sd",
    "val_auc_mean",
    "epochs_mean",
    "seconds_per_epoch",
    "non_embedding_parameters",
    "parameters",
    "precision",
}


def _run(seed, auc, logloss):
    return {
        "seed": seed,
        "test_auc": auc,
        "test_logloss": logloss,
        "val_auc": auc - 0.01,
        "epochs_run": 4 + seed,
        "seconds_per_epoch": 2.0,
        "non_embedding_parameters": 10,
        "parameters": 100,
        "precision": "float32",
        "oracle_test_auc": 0.8,
    }


def test_summarize_seeds_gives_mean_and_sample_sd():
    runs = [_run(0, 0.70, 0.50), _run(1, 0.72, 0.48), _run(2, 0.74, 0.46)]
    s = bench_models.summarize_seeds(runs)
    assert KEYS <= set(s)
    assert s["test_auc_mean"] == pytest.approx(0.72)
    assert s["test_auc_sd"] == pytest.approx(0.02)  # n - 1 in the denominator
    assert s["test_logloss_sd"] == pytest.approx(0.02)
    assert s["epochs_mean"] == 5
    assert s["auc_below_oracle_mean"] == pytest.approx(0.08)
    assert s["per_seed"] == runs


def test_page_lists_every_model_and_the_oracle():
    results = {
        "models": {"lr": bench_models.summarize_seeds([_run(0, 0.7, 0.5)])},
        "oracle": {
            "test_auc": 0.8,
            "test_auc_sd": 0.0,
            "test_logloss": 0.44,
            "test_logloss_sd": 0.0,
        },
        "seeds": [0],
        "data": "data/x.txt",
        "rows": 1000,
        "hparams": train.default_hparams(),
        "precision": "float32",
        "torch": "2.x",
        "machine": "x86_64",
        "date": "2026-01-01",
    }
    text = bench_models.page(results)
    row = "| LogisticRegression | 0.7000 ± 0.0000 | 0.5000 ± 0.0000 | 0.1000 ± 0.0000 |"
    assert row in text
    assert "| oracle (the true probabilities) | 0.8000" in text


def test_committed_results_cover_every_model_and_three_seeds():
    results = json.loads((ROOT / "benchmarks" / "models.json").read_text())
    assert set(results["models"]) == set(train.MODELS), (
        "benchmarks/models.json is stale: run `make bench-models`"
    )
    assert len(results["seeds"]) >= 3
    assert {"test_auc", "test_logloss"} <= set(results["oracle"])
    for name, m in results["models"].items():
        assert KEYS <= set(m), name
        assert len(m["per_seed"]) == len(results["seeds"])
        assert all(math.isfinite(m[k]) for k in KEYS - {"precision"})
        assert m["test_auc_mean"] < results["oracle"]["test_auc"], name
    assert (ROOT / "benchmarks" / "MODELS.md").read_text().count("±") >= 2 * len(
        results["models"]
    )
