"""The deep part: a multi-layer perceptron.

x: [B, d_in] -> [B, d_out]

Not here: the fast `Linear` and `Dropout` it uses (`fast.blocks`), the MLP's weight
decay (`train.hparams.auto_mlp_weight_decay`, `train.trainer.decay_groups`).
"""

from __future__ import annotations

from torch import nn

# nn.Linear and nn.Dropout with the same parameters and results, faster on a
# CPU for FiBiNET's input (see fibinet_tutorial/fast/blocks.py)
from ..fast import Dropout, Linear


class MLP(nn.Module):
    """(Linear -> BatchNorm -> ReLU -> Dropout) per hidden layer, then Linear.

    x: [B, d_in] -> [B, d_out]
    """

    def __init__(self, d_in: int, d_layers: list[int], dropout: float, d_out: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for d in d_layers:
            layers += [
                Linear(d_in, d),
                nn.BatchNorm1d(d),
                nn.ReLU(),
                Dropout(dropout),
            ]
            d_in = d
        layers.append(Linear(d_in, d_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)
