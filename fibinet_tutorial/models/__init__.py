"""FiBiNET, FiBiNet++ and the models they are compared with, one module each.

- `base`: `CTRModel`, what every model shares (input checks, wide part,
  embeddings), `count_parameters` and `count_non_embedding_parameters`
- `fibinet`: `FiBiNET`
- `fibinetpp`: `FiBiNETPlusPlus` (FiBiNet++) and the authors' `AUTHORS_PRESET`
- `baselines`: `LogisticRegression`, `FM`, `DeepFM`
- `ensemble`: `SeedEnsemble`, copies from several seeds averaged

Every model takes x = (x_num [B, n_num] float, x_cat [B, n_cat] long) and
returns logits [B].

Not here: the layers they are built from (`layers`), a model built from a config,
saved or loaded (`train.checkpoints`), training (`train`).
"""

from .base import CTRModel, count_non_embedding_parameters, count_parameters
from .baselines import FM, DeepFM, LogisticRegression
from .ensemble import SeedEnsemble
from .fibinet import FiBiNET
from .fibinetpp import AUTHORS_PRESET, FiBiNETPlusPlus

__all__ = [
    "AUTHORS_PRESET",
    "CTRModel",
    "DeepFM",
    "FM",
    "FiBiNET",
    "FiBiNETPlusPlus",
    "LogisticRegression",
    "SeedEnsemble",
    "count_non_embedding_parameters",
    "count_parameters",
]
