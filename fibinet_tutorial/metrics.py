"""Exact, vectorised AUC and log loss, a rank correlation (`spearman`), and
torchkeras-style metric objects.

torchkeras's own AUC bins the scores and loops in Python; these compute the
exact values (ties count one half, as in scikit-learn) with one sort.

Not here: a model scored on a loader (`train.evaluation`), the early-stopping
monitors (`train.hparams.MONITORS`), the reliability figure
(`plots.plot_reliability`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve, exact, ties counted as one half.

    y_true: [N] of 0/1; y_score: [N], any monotone score (logits or probabilities).
    Returns nan when only one class is present.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # average rank of each run of tied scores (Mann-Whitney U)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg_rank = (starts + ends + 1) / 2.0  # 1-based ranks starts+1 .. ends
    ranks = np.repeat(avg_rank, ends - starts)
    rank_sum_pos = ranks[y[order] == 1].sum()
    return float((rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a, b) -> float:
    """Rank correlation of two equal-length sequences (ties get mean ranks)."""
    ra = pd.Series(np.asarray(a, dtype=float)).rank().to_numpy()
    rb = pd.Series(np.asarray(b, dtype=float)).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def log_loss(y_true, p, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities p for labels y_true."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


class _EpochMetric:
    """Collects a whole epoch of (logits, labels); torchkeras's metric interface.

    `metric(preds, labels)` stores the batch and returns the batch's value;
    `compute()` returns the epoch's value; `reset()` starts a new epoch. Not an
    nn.Module on purpose: accelerate would wrap a module in DDP when training
    on several CPU processes, and DDP refuses modules without parameters.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def __call__(self, preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        preds = preds.detach().float().reshape(-1).cpu()
        labels = labels.detach().float().reshape(-1).cpu()
        self.preds.append(preds)
        self.labels.append(labels)
        return torch.tensor(
            self.value(labels.numpy(), preds.numpy()), dtype=torch.float64
        )

    def compute(self) -> torch.Tensor:
        if not self.preds:
            return torch.tensor(float("nan"))
        y = torch.cat(self.labels).numpy()
        return torch.tensor(
            self.value(y, torch.cat(self.preds).numpy()), dtype=torch.float64
        )


class AUC(_EpochMetric):
    """Exact AUC over an epoch, from logits."""

    @staticmethod
    def value(y, logits) -> float:
        return roc_auc(y, logits)


class LogLoss(_EpochMetric):
    """Exact mean log loss over an epoch, from logits."""

    @staticmethod
    def value(y, logits) -> float:
        z = np.asarray(logits, dtype=np.float64)
        # -log sigmoid(z) for y=1, -log(1 - sigmoid(z)) for y=0, without overflow
        return float(np.mean(np.logaddexp(0.0, z) - y * z))


class AUCMinusLogLoss(_EpochMetric):
    """AUC minus log loss over an epoch, from logits: one number that rewards
    ranking and calibration together (FuxiCTR's BARS configurations stop early
    on it: monitor {"AUC": 1, "logloss": -1})."""

    @staticmethod
    def value(y, logits) -> float:
        return AUC.value(y, logits) - LogLoss.value(y, logits)


class BCEWithLogits:
    """Binary cross-entropy on logits, as a plain callable (see _EpochMetric)."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.to(logits.dtype)
        )
