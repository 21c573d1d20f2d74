"""fibinet-tutorial: learn FiBiNET by running it.

The front door: what a user reaches for, importable from here.

    from fibinet_tutorial import FiBiNET, CriteoPreprocessor, read_criteo, train_one

Where things live (one job per module; README "Layout" has the map):

- `layers`: SENet and SENet+, the bilinear interaction and Bilinear+,
  embeddings and their norms, FM/FFM terms, MLP
- `models`: FiBiNET, FiBiNETPlusPlus (FiBiNet++), DeepFM, FM,
  LogisticRegression, SeedEnsemble
- `data`: the Criteo reader, leak-free preprocessing, streaming, datasets
- `synthetic`: Criteo-format data with a known click model (the built-in data)
- `train`: the torchkeras trainer, evaluation, defaults, saving, the CLI
- `metrics`, `plots`: exact AUC / log loss; the notebooks' figures
- `fast`: the speed path (hand-written kernels, CPU settings), apart from the
  model code

`import fibinet_tutorial` stays light: the trainer's names, which pull in
torchkeras and accelerate, load on first use.

Not here: the code behind these names: the models (`models`), the trainer loaded
on first use (`train.trainer`), the command line (`train.cli`).
"""

from __future__ import annotations

import importlib

from .data import CriteoFormatError, CriteoPreprocessor, CTRDataset, read_criteo
from .layers import (
    BilinearInteraction,
    BilinearInteractionLoop,
    BilinearPlus,
    FMInteraction,
    SENetAttention,
    SENetPlus,
)
from .metrics import log_loss, roc_auc
from .models import (
    FM,
    DeepFM,
    FiBiNET,
    FiBiNETPlusPlus,
    LogisticRegression,
    SeedEnsemble,
    count_parameters,
)
from .synthetic import SyntheticCriteo

__version__ = "0.1.0"

# names of `train`, imported on first use (torchkeras and accelerate are heavy)
_TRAINER_NAMES = (
    "CTRKerasModel",
    "default_hparams",
    "evaluate",
    "load_model",
    "load_trained",
    "predict_proba",
    "prepare_data",
    "save_model",
    "score",
    "train_one",
)

__all__ = [
    "BilinearInteraction",
    "BilinearInteractionLoop",
    "BilinearPlus",
    "CTRDataset",
    "CriteoFormatError",
    "CriteoPreprocessor",
    "DeepFM",
    "FM",
    "FMInteraction",
    "FiBiNET",
    "FiBiNETPlusPlus",
    "LogisticRegression",
    "SENetAttention",
    "SENetPlus",
    "SeedEnsemble",
    "SyntheticCriteo",
    "count_parameters",
    "log_loss",
    "read_criteo",
    "roc_auc",
    *_TRAINER_NAMES,
]


def __getattr__(name: str):
    if name in _TRAINER_NAMES:
        return getattr(importlib.import_module(".train", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
