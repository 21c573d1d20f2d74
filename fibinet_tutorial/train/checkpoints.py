"""A model is a config plus weights: build one, save it, load it back.

`model_config` makes the config from a fitted preprocessor and hyperparameters
(the one place that does); `build_model` turns a config into a fresh model;
`save_model` / `load_model` write and read `.pt` weights (loaded with
`weights_only=True`) and the `.json` config beside them.

Not here: training (`train.trainer`), the hyperparameters' defaults
(`train.hparams`), the models themselves (`models`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..data import CAT_COLS, NUM_COLS, CriteoPreprocessor
from ..models import (
    FM,
    DeepFM,
    FiBiNET,
    FiBiNETPlusPlus,
    LogisticRegression,
    SeedEnsemble,
)

MODELS = {
    "fibinet": FiBiNET,
    "deepfm": DeepFM,
    "lr": LogisticRegression,
    "fm": FM,
    "fibinetpp": FiBiNETPlusPlus,
}
MODEL_TITLES = {
    "fibinet": "FiBiNET",
    "deepfm": "DeepFM",
    "lr": "LogisticRegression",
    "fm": "FM",
    "fibinetpp": "FiBiNet++",
}
# The hyperparameters each model takes (the rest of a config is ignored).
MODEL_PARAMS = {
    "fibinet": (
        "d_embed",
        "mlp_layers",
        "mlp_dropout",
        "reduction_ratio",
        "bilinear_type",
        "shared_bilinear",
    ),
    "deepfm": ("d_embed", "mlp_layers", "mlp_dropout"),
    "lr": (),
    "fm": ("d_embed",),
    # the last ones are FiBiNETPlusPlus's own switches: a config takes them
    # when the hyperparameters have them (the ablation does), else the
    # model's defaults apply
    "fibinetpp": (
        "d_embed",
        "mlp_layers",
        "mlp_dropout",
        "reduction_ratio",
        "bilinear_type",
        "num_groups",
        "projection_dim",
        "cat_norm",
        "num_norm",
        "senet",
        "interaction",
        "wide",
        "init_std",
    ),
}


def model_config(name: str, preprocessor: CriteoPreprocessor, hparams: dict) -> dict:
    """The config of a model for a preprocessor's fields, from hyperparameters.

    {"model", "d_numerical", "categories", "field_names", and the model's own
    hyperparameters (`MODEL_PARAMS`) that `hparams` has}; `build_model` turns
    it into a model.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return {
        "model": name,
        "d_numerical": len(NUM_COLS),
        "categories": preprocessor.categories,
        "field_names": NUM_COLS + CAT_COLS,
        **{k: hparams[k] for k in MODEL_PARAMS[name] if k in hparams},
    }


def build_model(config: dict) -> nn.Module:
    """A fresh model from a config: {"model", "d_numerical", "categories", ...}.

    With "members": k > 1, a SeedEnsemble of k such models.
    """
    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    kwargs = {k: config[k] for k in MODEL_PARAMS[name] if k in config}
    if "mlp_layers" in kwargs:
        kwargs["mlp_layers"] = tuple(kwargs["mlp_layers"])

    def one():
        return MODELS[name](
            config["d_numerical"],
            config["categories"],
            field_names=config.get("field_names"),
            **kwargs,
        )

    members = int(config.get("members", 1))
    return one() if members == 1 else SeedEnsemble([one() for _ in range(members)])


def save_model(net: nn.Module, config: dict, path) -> None:
    """Weights to `path` (.pt) and the config beside it (.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # CPU tensors: the file loads on any machine, with or without a GPU
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps(config, indent=1))


def load_model(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by `save_model` on `device` (e.g. "cuda", or the
    device of the model it is compared with); weights load with
    weights_only=True."""
    path = Path(path)
    config = json.loads(path.with_suffix(".json").read_text())
    net = build_model(config)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval(), config


def load_trained(out_dir, model: str = "fibinet"):
    """A finished run's model and preprocessor: (net, preprocessor)."""
    out_dir = Path(out_dir)
    net, _ = load_model(out_dir / f"{model}.pt")
    return net, CriteoPreprocessor.load(out_dir / "preprocessor.json")
