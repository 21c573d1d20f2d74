"""Building blocks of FiBiNET, FiBiNet++ and their baselines, one module per idea.

- `embedding`: fields as vectors (`NumEmbedding`, `CatEmbedding`), the wide
  part's per-category weights (`CatLinear`), and FiBiNet++'s embedding norms
  (`FieldBatchNorm`, `NumLayerNorm`)
- `senet`: `SENetAttention`, a weight per field per sample (notebook 1), and
  FiBiNet++'s `SENetPlus`, a weight per embedding element (notebook 5)
- `bilinear`: `BilinearInteraction` and its readable loop (notebook 2)
- `bilinear_plus`: FiBiNet++'s `BilinearPlus` and its readable loop (notebook 5)
- `factorization`: the FM and FFM pair terms (notebook 2)
- `mlp`: the deep part

Shapes use B = batch, F = number of fields, d = d_embed,
P = F*(F-1)/2 = number of field pairs.

Not here: the models built from these (`models`), the hand-written kernels they call
into (`fast`).
"""

from .bilinear import (
    BILINEAR_TYPES,
    BilinearInteraction,
    BilinearInteractionLoop,
    bilinear_both_branches,
    bilinear_weight_shape,
)
from .bilinear_plus import BilinearPlus, BilinearPlusLoop
from .embedding import (
    CatEmbedding,
    CatLinear,
    FieldBatchNorm,
    NumEmbedding,
    NumLayerNorm,
    field_batch_norm_reference,
    field_offsets,
)
from .factorization import FFMInteraction, FMInteraction
from .mlp import MLP
from .senet import SENetAttention, SENetPlus

__all__ = [
    "BILINEAR_TYPES",
    "MLP",
    "BilinearInteraction",
    "BilinearInteractionLoop",
    "BilinearPlus",
    "BilinearPlusLoop",
    "CatEmbedding",
    "CatLinear",
    "FFMInteraction",
    "FMInteraction",
    "FieldBatchNorm",
    "NumEmbedding",
    "NumLayerNorm",
    "SENetAttention",
    "SENetPlus",
    "bilinear_both_branches",
    "bilinear_weight_shape",
    "field_batch_norm_reference",
    "field_offsets",
]
