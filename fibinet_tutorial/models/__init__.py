"""FiBiNET and the models it is compared with, one module each.

- `base`: `CTRModel`, what every model shares (input checks, wide part,
  embeddings), `count_parameters` and `count_non_embedding_parameters`
- `fibinet`: `FiBiNET`
- `baselines`: `LogisticRegression`, `FM`, `DeepFM`
- `ensemble`: `SeedEnsemble`, copies from several seeds averaged

Every model takes x = (x_num [B, n_num] float, x_cat [B, n_cat] long) and
returns logits [B].
"""

from .base import CTRModel, count_non_embedding_parameters, count_parameters
from .baselines import FM, DeepFM, LogisticRegression
from .ensemble import SeedEnsemble
from .fibinet import FiBiNET

__all__ = [
    "CTRModel",
    "DeepFM",
    "FM",
    "FiBiNET",
    "LogisticRegression",
    "SeedEnsemble",
    "count_non_embedding_parameters",
    "count_parameters",
]
