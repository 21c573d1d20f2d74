"""Evaluation: probabilities, exact AUC and log loss, SENet's weights, tables.

Everything here runs the model in eval mode and float32, one large unshuffled
batch at a time (`eval_loader`), on whatever device the model is on: each
batch is copied there, the probabilities come back to the CPU.

Not here: the metric formulas (`metrics`), training (`train.trainer`), the figures
(`plots`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import CTRDataset, make_loader
from ..metrics import log_loss, roc_auc
from ..models import count_parameters


def eval_loader(dataset) -> torch.utils.data.DataLoader:
    """Large, unshuffled batches: for evaluation and scoring."""
    return make_loader(dataset, 8192, shuffle=False)


def score(net: nn.Module, preprocessor, df: pd.DataFrame) -> np.ndarray:
    """Click probabilities [N] for raw Criteo rows (unseen categories welcome)."""
    return predict_proba(net, eval_loader(CTRDataset.from_frame(df, preprocessor)))


def _features(batch):
    """A loader's batch -> (features, labels or None)."""
    if len(batch) == 2 and isinstance(batch[0], (tuple, list)):
        return batch[0], batch[1]
    return tuple(batch), None


@torch.no_grad()
def predict_proba(net: nn.Module, loader) -> np.ndarray:
    """Click probabilities [N] for every row of a loader, in order."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for batch in loader:
        features, _ = _features(batch)
        features = tuple(t.to(device, non_blocking=True) for t in features)
        out.append(torch.sigmoid(net(features)).double().cpu())
    return torch.cat(out).numpy()


def loader_labels(loader) -> np.ndarray:
    """The labels [N] of a (non-shuffled) loader, in order."""
    return torch.cat([_features(b)[1] for b in loader]).numpy()


def evaluate(net: nn.Module, loader) -> dict:
    """Exact AUC and log loss of a model on a labelled loader."""
    p = predict_proba(net, loader)
    y = loader_labels(loader)
    return {"auc": roc_auc(y, p), "logloss": log_loss(y, p)}


@torch.no_grad()
def mean_field_importance(net: nn.Module, loader) -> pd.Series:
    """SENet's average weight per field over a loader, indexed by field name."""
    net.eval()
    device = next(net.parameters()).device
    total, n = 0.0, 0
    for batch in loader:
        features, _ = _features(batch)
        w = net.field_importance(
            tuple(t.to(device, non_blocking=True) for t in features)
        )
        total = total + w.sum(0).double().cpu()
        n += len(w)
    return pd.Series((total / n).numpy(), index=net.field_names, name="senet_weight")


def summarize(name: str, net: nn.Module, history: pd.DataFrame, dl_val, dl_test):
    """One model's row of the comparison: exact val/test metrics, time, size."""
    result = {"model": name, "epochs_run": int(len(history))}
    result.update({f"val_{k}": v for k, v in evaluate(net, dl_val).items()})
    if dl_test.dataset.y is not None:
        result.update({f"test_{k}": v for k, v in evaluate(net, dl_test).items()})
    if "seconds" in history:
        result["seconds_per_epoch"] = float(history["seconds"].mean())
    result["parameters"] = count_parameters(net)
    return result


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """One row per model (and the oracle): AUC, log loss, time, parameters."""
    table = pd.DataFrame(results).set_index("model")
    keep = [
        "test_auc",
        "test_logloss",
        "val_auc",
        "epochs_run",
        "seconds_per_epoch",
        "parameters",
    ]
    return table[[c for c in keep if c in table]]
