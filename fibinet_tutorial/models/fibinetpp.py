"""FiBiNet++ (Zhang, Zheng & Zhang, CIKM 2023): FiBiNET's ideas at a fraction of
its size; the model of notebook 5.

x = (x_num, x_cat) -> logits [B]; see `models.base` for the input.

Built from the authors' TensorFlow code, `recommendation-algorithm/FiBiNet`:
`fibinet/run.py` (preset "++" in `_update_parameters`, and the argument
defaults), `fibinet/model/fibinet_model.py` (`get_model`, `get_embeddings`) and
`fibinet/model/components/layers.py` (`SENETLayer`, `BilinearInteraction`).
A reimplementation from what that code does; no line of it is copied.

Not here: its layers (`layers.embedding`, `layers.senet`, `layers.bilinear_plus`),
their batch-innermost kernels (`fast.columns`), the authors' settings beside ours
(`train.hparams.authors_preset_table`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fast import batch_norm_columns, layer_norm_columns, senet_plus_columns
from ..layers import (
    MLP,
    BilinearInteraction,
    BilinearInteractionLoop,
    BilinearPlus,
    BilinearPlusLoop,
    FieldBatchNorm,
    NumLayerNorm,
    SENetAttention,
    SENetPlus,
    bilinear_both_branches,
)
from .base import CTRModel

# The authors' "++" run, as `fibinet/run.py` sets it (preset lines and argument
# defaults). `train.authors_preset_table()` prints it beside our defaults.
AUTHORS_PRESET = {
    "d_embed": 10,  # --embedding_size
    "mlp_layers": [400, 400, 400],  # --dnn_hidden_units
    "mlp_dropout": 0.0,  # --dnn_dropout
    "mlp_batchnorm": False,  # --dnn_use_bn
    "reduction_ratio": 3,  # --senet_reduction_ratio
    "num_groups": 2,  # senet_squeeze_group_num (preset)
    "projection_dim": 50,  # origin_bilinear_dnn_units (preset), linear activation
    "bilinear_type": "field_all",  # origin_bilinear_type "all_ip" (preset)
    "cat_norm": True,  # sparse_embedding_norm_type "bn" (preset)
    "num_norm": True,  # dense_embedding_norm_type "layer_norm" (preset)
    "wide": False,  # enable_linear (preset)
    "init_std": 0.01,  # --init_std: N(0, 0.01) embeddings
    "lr": 1e-4,  # --learning_rate, Adam
    "batch_size": 1024,  # --batch_size
    "weight_decay": 0.0,  # --embedding_l2_reg
    "mlp_weight_decay": 0.0,  # --dnn_l2_reg
    "epochs": 5,  # --epochs
    "patience": 5,  # create_earlystopping_callback(patience=5)
    "monitor": "logloss",  # early stopping on val_loss, the best weights restored
}
SENETS = ("senet+", "senet")
INTERACTIONS = ("bilinear+", "bilinear")


class FiBiNETPlusPlus(CTRModel):
    """FiBiNet++: normalised embeddings -> SENet+ and Bilinear+ -> MLP.

    1. Embeddings, normalised (`embed`): the categorical ones by
       `FieldBatchNorm` (per embedding dimension over batch x fields), the
       numeric ones x*v by `NumLayerNorm` (over each field's d numbers).
    2. Two branches read the normalised E [B, F, d]:
       - Bilinear+ (`BilinearPlus`): one shared d x d matrix, the inner
         product of every pair, a linear projection to `projection_dim` = k;
       - SENet+ (`SENetPlus`): bit-wise re-weighting, skip, LayerNorm; its
         output goes to the MLP as it is, flattened: F*d numbers.
    3. The MLP reads [Bilinear+, SENet+] = k + F*d numbers (FiBiNET's reads
       F(F-1)*d) and gives the logit. No wide part.

    The switches walk the path from FiBiNET to FiBiNet++ one change at a time
    (the ablation in `make bench-fibinetpp`): cat_norm / num_norm turn the two
    embedding norms off; senet="senet" puts FiBiNET's SENet back;
    interaction="bilinear" puts back FiBiNET's two Hadamard bilinear layers
    (on E and on the SENet output, MLP input F(F-1)*d); wide=True adds the
    wide part. With cat_norm=num_norm=False, senet="senet",
    interaction="bilinear" and wide=True it is FiBiNET.

    projection_dim=None leaves out the projection (the "Low Rank Layer"): the
    P inner products go to the MLP as they are. init_std: None keeps the
    package's embedding initialisation (as FiBiNET's); 0.01 is the authors'
    N(0, 0.01). fast=True computes the norms and SENet+ on a batch-innermost
    layout (`fast.columns`; same numbers, `make bench` shows the gain) and
    Bilinear+ with batched products; fast=False runs the layers as they read,
    with the readable loop `BilinearPlusLoop`. Returns logits [B].
    """

    def __init__(
        self,
        d_numerical: int | None,
        categories: list[int] | None,
        d_embed: int = 8,
        mlp_layers: tuple[int, ...] = (128, 64, 32),
        mlp_dropout: float = 0.25,
        reduction_ratio: float = 3,
        num_groups: int = 2,
        projection_dim: int | None = 50,
        bilinear_type: str = "field_all",
        cat_norm: bool = True,
        num_norm: bool = True,
        senet: str = "senet+",
        interaction: str = "bilinear+",
        wide: bool = False,
        init_std: float | None = None,
        fast: bool = True,
        field_names: list[str] | None = None,
    ):
        super().__init__(d_numerical, categories, d_embed, field_names, wide=wide)
        F = self.num_fields
        if F < 2:
            raise ValueError("FiBiNETPlusPlus needs at least two fields to form a pair")
        for name, value, allowed in (
            ("senet", senet, SENETS),
            ("interaction", interaction, INTERACTIONS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}; got {value!r}"
                )
        self.senet_type, self.interaction, self.fast = senet, interaction, fast
        self.cat_norm = (
            FieldBatchNorm(d_embed) if cat_norm and self.categories else None
        )
        self.num_norm = (
            NumLayerNorm(self.d_numerical, d_embed)
            if num_norm and self.d_numerical
            else None
        )
        if senet == "senet+":
            self.senet = SENetPlus(F, d_embed, reduction_ratio, num_groups)
        else:
            self.senet = SENetAttention(F, reduction_ratio)
        if interaction == "bilinear+":
            layer = BilinearPlus if fast else BilinearPlusLoop
            self.bilinear = layer(F, d_embed, bilinear_type, projection_dim)
            self.bilinear_se = None  # the SENet+ branch is flattened, not crossed
            d_mlp = self.bilinear.out_features + F * d_embed
        else:
            layer = BilinearInteraction if fast else BilinearInteractionLoop
            self.bilinear = layer(F, d_embed, bilinear_type)
            self.bilinear_se = layer(F, d_embed, bilinear_type)
            d_mlp = F * (F - 1) * d_embed
        self.mlp = MLP(d_mlp, list(mlp_layers), mlp_dropout)
        if init_std is not None:  # the authors' N(0, init_std) embeddings
            for module in (self.num_embedding, self.cat_embedding):
                if module is not None:
                    table = getattr(module, "embedding", module)
                    nn.init.normal_(table.weight, std=init_std)

    def embed(self, x_num, x_cat) -> torch.Tensor:
        """All fields as vectors, normalised, numeric fields first: [B, F, d]."""
        parts = []
        for embedding, norm, x in (
            (self.num_embedding, self.num_norm, x_num),
            (self.cat_embedding, self.cat_norm, x_cat),
        ):
            if embedding is not None:
                e = embedding(x)
                parts.append(e if norm is None else norm(e))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def embed_columns(self, x_num, x_cat) -> torch.Tensor:
        """`embed` on the batch-innermost layout of `fast.columns`: [F, d, B]."""
        parts = []
        if self.num_embedding is not None:  # x * v, laid out [n_num, d, B]
            e = x_num.t()[:, None, :] * self.num_embedding.weight[:, :, None]
            if self.num_norm is not None:
                norm = self.num_norm
                e = layer_norm_columns(e, norm.weight, norm.bias, norm.eps)
            parts.append(e)
        if self.cat_embedding is not None:
            e = self.cat_embedding(x_cat).permute(1, 2, 0).contiguous()
            if self.cat_norm is not None:
                e = batch_norm_columns(e, self.cat_norm)
            parts.append(e)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def deep_input_fast(self, x_num, x_cat) -> torch.Tensor:
        """`deep_input(embed(...))` through `fast.columns`: [B, k + F*d], a view
        with the batch innermost in memory (the MLP's `fast.Linear` reads it
        as it is)."""
        cols = self.embed_columns(x_num, x_cat)  # [F, d, B]
        F, d, B = cols.shape
        se_cols = senet_plus_columns(cols, self.senet)  # [F, d, B]
        pairs = self.bilinear(cols.permute(2, 0, 1).contiguous())  # [B, k]
        return torch.cat([pairs.t(), se_cols.view(F * d, B)]).t()

    def deep_input(self, emb: torch.Tensor) -> torch.Tensor:
        """What the MLP reads: [B, F, d] -> [B, k + F*d] ([B, F(F-1)d] with
        interaction="bilinear")."""
        se_emb = self.senet(emb)
        if self.bilinear_se is None:  # Bilinear+ on E; SENet+ output as it is
            return torch.cat([self.bilinear(emb), se_emb.flatten(1)], dim=1)
        return bilinear_both_branches(
            emb, se_emb, self.bilinear, self.bilinear_se
        ).flatten(1)

    def field_importance(self, x) -> torch.Tensor:
        """SENet+'s bit-wise weights a for every sample: [B, F, d].

        Element k of field i enters SENet+'s LayerNorm as e_ik * (1 + a_ik).
        Read per field: the mean of (1 + a) over the d elements scales the
        whole field, and the LayerNorm then cancels that scale; what changes
        the field's vector is how (1 + a) varies across its elements (and a
        negative gain flips an element). With senet="senet": FiBiNET's
        weights, [B, F].
        """
        x_num, x_cat = self.check_inputs(x)
        emb = self.embed(x_num, x_cat)
        if isinstance(self.senet, SENetPlus):
            return self.senet.bit_weights(emb)
        return self.senet.field_weights(emb)

    def forward(self, x) -> torch.Tensor:
        x_num, x_cat = self.check_inputs(x)
        if self.fast and self.bilinear_se is None and isinstance(self.senet, SENetPlus):
            deep_in = self.deep_input_fast(x_num, x_cat)
        else:  # as the layers read (and the ablation's FiBiNET-like variants)
            deep_in = self.deep_input(self.embed(x_num, x_cat))
        out = self.mlp(deep_in)  # [B, 1]
        if self.wide:  # high/low fusion, as in FiBiNET (off in FiBiNet++)
            out = out + self.linear(x_num, x_cat)
        return out.squeeze(-1)
