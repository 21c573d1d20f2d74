"""Exact AUC and log loss, checked against scikit-learn."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from fibinet_tutorial.metrics import AUC, LogLoss, log_loss, roc_auc, spearman


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1, 2])  # 1-2 decimals: many ties
def test_auc_equals_sklearn_including_ties(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5000))
    y = rng.random(n) < rng.uniform(0.05, 0.6)
    y[0], y[1] = True, False
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if decimals is not None:
        s = np.round(s, decimals)
    assert abs(roc_auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_edge_cases():
    assert np.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 1], [0.1, 0.9]) == 1.0
    assert roc_auc([1, 0], [0.1, 0.9]) == 0.0


def test_log_loss_equals_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(1000) < 0.3
    p = rng.uniform(0.01, 0.99, 1000)
    assert abs(log_loss(y, p) - sk_log_loss(y, p)) < 1e-9


def test_metric_objects_follow_torchkeras_interface():
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.random(3000) < 0.25, dtype=torch.float32)
    z = torch.tensor(rng.normal(size=3000), dtype=torch.float32) + y
    auc, ll = AUC(), LogLoss()
    for lo in range(0, 3000, 1024):
        batch = auc(z[lo : lo + 1024], y[lo : lo + 1024])
        assert (
            abs(batch.item() - roc_auc_score(y[lo : lo + 1024], z[lo : lo + 1024]))
            < 1e-9
        )
        ll(z[lo : lo + 1024], y[lo : lo + 1024])
    assert abs(auc.compute().item() - roc_auc_score(y, z)) < 1e-9
    p = torch.sigmoid(z.double()).numpy()
    assert abs(ll.compute().item() - sk_log_loss(y.numpy(), p)) < 1e-9
    auc.reset()
    assert np.isnan(auc.compute().item())
    assert not isinstance(auc, torch.nn.Module)  # see metrics._EpochMetric


def test_log_loss_from_extreme_logits_is_finite():
    ll = LogLoss()
    ll(torch.tensor([80.0, -80.0]), torch.tensor([0.0, 1.0]))
    assert abs(ll.compute().item() - 80.0) < 1e-6


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 50)  # many ties
    b = a + rng.normal(size=50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
