"""The training defaults in one place, and the rules that adapt them to a file.

`default_hparams` is what the CLI and the notebooks start from; None or "auto"
there means "choose by the training-set size or the machine", which
`resolve_hparams` does. `authors_preset_table` sets FiBiNet++'s authors'
settings beside ours.

Not here: the flags (`train.cli`), FiBiNet++'s preset itself
(`models.fibinetpp.AUTHORS_PRESET`), precision applied during training
(`train.trainer.autocast_training`).
"""

from __future__ import annotations

import torch

from ..fast import has_amx

PRECISIONS = ("auto", "float32", "bf16")
# early-stopping scores: name -> (the history column it reads, better when)
MONITORS = {
    "auc": ("val_auc", "max"),
    "logloss": ("val_logloss", "min"),
    "auc-logloss": ("val_auc_minus_logloss", "max"),
}


def default_hparams() -> dict:
    """The CLI's defaults, in one place (the notebooks use them too).

    Tuned on the built-in data and kept safe for small files: the seed's Criteo
    run used lr 2e-3, dropout 0.25 and weight decay 1e-3. Weight decay matters
    most: it pulls the embeddings of rarely seen categories back to zero
    between their rare updates, which stops the model from memorising them
    (notebook 4's exercise compares training with and without it).

    Early stopping watches validation AUC minus log loss ("auc-logloss"), as
    FuxiCTR's FiBiNET configuration for the BARS benchmark does
    (`model_zoo/FiBiNET/config/model_config.yaml`: monitor {'AUC': 1,
    'logloss': -1}), not AUC alone: on 100k real Criteo rows the epoch with
    the best validation AUC was an over-confident one with a poor log loss.
    On the built-in data the three monitors keep the same epochs
    (`make bench-monitor`, benchmarks/MONITOR.md).
    """
    return {
        "d_embed": 8,
        "mlp_layers": [128, 64, 32],
        "mlp_dropout": 0.5,
        "reduction_ratio": 3,
        "bilinear_type": "field_all",
        "shared_bilinear": False,
        "lr": 3e-3,
        "weight_decay": 1e-3,
        "mlp_weight_decay": None,  # auto_mlp_weight_decay
        "batch_size": None,  # auto_batch_size
        "epochs": 10,
        "patience": 2,
        "monitor": "auc-logloss",  # MONITORS; see the docstring
        "precision": "auto",  # auto_precision
        "seeds": None,  # auto_seeds
    }


def auto_mlp_weight_decay(n_train: int) -> float:
    """Weight decay for the MLP's weights: strong on small files, ~0 on large ones.

    FiBiNET's MLP reads F(F-1)d inputs (11,856 on Criteo's 39 fields): on a few
    thousand rows it fits noise, and FiBiNET falls below logistic regression.
    0.1 * (4,500 / n_train)**2: `make bench-small` measures FiBiNET minus LR
    with and without it on small built-in files (benchmarks/SMALL_FILES.md).
    Below 6,000 rows the defaults also average several seeds (`auto_seeds`).
    At 200k training rows it is 5e-5, too small to matter; a fixed 0.1 there
    would hold a large model back, which is why it fades with the square of
    the size. FiBiNet++ (an MLP input of 50 + F*d = 362) trains with it too:
    on small built-in files it did at least as well with it as without
    (`make bench-fibinetpp`, benchmarks/FIBINETPP.md, "Small files").
    """
    return 0.1 * (4_500 / max(n_train, 1)) ** 2


def auto_seeds(n_train: int, model: str = "fibinet") -> int:
    """How many seeds to train and average (`models.SeedEnsemble`): 5 below 6,000
    training rows, else 1; always 1 for logistic regression.

    On a few thousand rows one FiBiNET's test AUC moves a lot with its seed
    alone; `make bench-small` compares one seed with five against LR
    (benchmarks/SMALL_FILES.md; for FiBiNet++, whose single runs vary as much,
    `make bench-fibinetpp`). Five runs on such a file take seconds.
    Logistic regression has no such variance and trains once.
    """
    return 1 if model == "lr" or n_train >= 6_000 else 5


def auto_precision(device: str | None = None) -> str:
    """bf16 where the hardware multiplies bf16 matrices natively, else float32.

    CUDA: compute capability 8.0 or newer (A100, RTX 30xx, H100, ...). Older
    GPUs (T4, V100: 7.x) only emulate bf16, although recent PyTorch's
    `torch.cuda.is_bf16_supported()` says yes there, and run it slower than
    float32; they train in float32 (fp16 with loss scaling was not measured
    here). CPU: Intel AMX (`fast.has_amx`). device: "cuda" or "cpu"; None
    means the device training will use (CUDA when available).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "float32"
    return "bf16" if has_amx() else "float32"


def resolve_hparams(hparams: dict, n_train: int, model: str = "fibinet") -> dict:
    """Fill in the automatic hyperparameters (None, "auto") for a training set
    (and, for the number of seeds, the model)."""
    h = dict(hparams)
    if h.get("batch_size") is None:
        h["batch_size"] = auto_batch_size(n_train)
    if h.get("mlp_weight_decay") is None:
        h["mlp_weight_decay"] = auto_mlp_weight_decay(n_train)
    if h.get("precision", "auto") == "auto":
        h["precision"] = auto_precision()
    if h.get("seeds") is None:
        h["seeds"] = auto_seeds(n_train, model)
    return h


def auto_batch_size(n_train: int, largest: int = 2048, min_steps: int = 32) -> int:
    """2048, or smaller so that a small file still gives min_steps steps an epoch."""
    return int(max(32, min(largest, n_train // min_steps)))


def authors_preset_table():
    """FiBiNet++ as its authors ran it (`models.AUTHORS_PRESET`, from their
    `run.py`) beside what this package uses: a DataFrame, one row per setting.

    "ours" comes from `default_hparams()` and `FiBiNETPlusPlus`'s own
    defaults; None there means chosen by the training set's size ("auto"),
    or for init_std the package's usual embedding initialisation.
    """
    import inspect

    import pandas as pd
    from torch import nn

    from ..layers import MLP
    from ..models import AUTHORS_PRESET, FiBiNETPlusPlus

    ours = {
        name: p.default
        for name, p in inspect.signature(FiBiNETPlusPlus).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    ours |= default_hparams()
    mlp = MLP(2, [2], 0.0)  # does our MLP carry BatchNorm?
    ours["mlp_batchnorm"] = any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())
    rows = {
        k: {"ours": ours.get(k), "authors' ++ run": v}
        for k, v in AUTHORS_PRESET.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["same"] = [
        list(a) == list(b) if isinstance(a, (list, tuple)) else a == b
        for a, b in zip(table["ours"], table["authors' ++ run"])
    ]
    table["ours"] = table["ours"].map(lambda v: "auto" if v is None else v)
    return table
