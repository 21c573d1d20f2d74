"""Building blocks of FiBiNET and its baselines, one module per idea.

- `embedding`: fields as vectors (`NumEmbedding`, `CatEmbedding`) and the wide
  part's per-category weights (`CatLinear`)
- `senet`: `SENetAttention`, a weight per field per sample (notebook 1)
- `bilinear`: `BilinearInteraction` and its readable loop (notebook 2)
- `factorization`: the FM and FFM pair terms (notebook 2)
- `mlp`: the deep part

Shapes use B = batch, F = number of fields, d = d_embed,
P = F*(F-1)/2 = number of field pairs. The speed-ups these call into live in
`fibinet_tutorial.fast`.
"""

from .bilinear import (
    BILINEAR_TYPES,
    BilinearInteraction,
    BilinearInteractionLoop,
    bilinear_weight_shape,
)
from .embedding import CatEmbedding, CatLinear, NumEmbedding, field_offsets
from .factorization import FFMInteraction, FMInteraction
from .mlp import MLP
from .senet import SENetAttention

__all__ = [
    "BILINEAR_TYPES",
    "MLP",
    "BilinearInteraction",
    "BilinearInteractionLoop",
    "CatEmbedding",
    "CatLinear",
    "FFMInteraction",
    "FMInteraction",
    "NumEmbedding",
    "SENetAttention",
    "bilinear_weight_shape",
    "field_offsets",
]
