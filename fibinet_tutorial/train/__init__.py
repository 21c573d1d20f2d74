"""Training with torchkeras + accelerate, evaluation, and the main job.

`from fibinet_tutorial import train` gives every name below; each lives in one
module named for its job:

- `trainer`: `CTRKerasModel` (torchkeras's KerasModel for CTR),
  `autocast_training`, `decay_groups`, `weights_digest`
- `hparams`: `default_hparams` and the rules that adapt them to a file or the
  machine (`resolve_hparams`, `auto_batch_size`, `auto_mlp_weight_decay`,
  `auto_seeds`, `auto_precision`), and FiBiNet++'s authors' settings beside
  ours (`authors_preset_table`)
- `checkpoints`: `model_config`, `build_model`, `save_model`, `load_model`,
  `load_trained`
- `evaluation`: `predict_proba`, `evaluate`, `score`, `eval_loader`,
  `mean_field_importance`, `summarize`, `comparison_table`
- `job`: `prepare_data`, `train_one`, `run` (what the command line runs)
- `cli`: the command line, `python -m fibinet_tutorial.train --help`

Not here: the models (`models`), the data pipeline (`data`), the CPU settings
training applies (`fast.cpu`).
"""

from .checkpoints import (
    MODEL_PARAMS,
    MODEL_TITLES,
    MODELS,
    build_model,
    load_model,
    load_trained,
    model_config,
    save_model,
)
from .evaluation import (
    comparison_table,
    eval_loader,
    evaluate,
    loader_labels,
    mean_field_importance,
    predict_proba,
    score,
    summarize,
)
from .hparams import (
    MONITORS,
    PRECISIONS,
    authors_preset_table,
    auto_batch_size,
    auto_mlp_weight_decay,
    auto_precision,
    auto_seeds,
    default_hparams,
    resolve_hparams,
)
from .job import prepare_data, run, train_one
from .trainer import (
    CTRKerasModel,
    autocast_training,
    decay_groups,
    weights_digest,
)

__all__ = [
    "MODELS",
    "MONITORS",
    "MODEL_PARAMS",
    "MODEL_TITLES",
    "PRECISIONS",
    "CTRKerasModel",
    "auto_batch_size",
    "auto_mlp_weight_decay",
    "auto_precision",
    "auto_seeds",
    "authors_preset_table",
    "autocast_training",
    "build_model",
    "comparison_table",
    "decay_groups",
    "default_hparams",
    "eval_loader",
    "evaluate",
    "load_model",
    "load_trained",
    "loader_labels",
    "mean_field_importance",
    "model_config",
    "predict_proba",
    "prepare_data",
    "resolve_hparams",
    "run",
    "save_model",
    "score",
    "summarize",
    "train_one",
    "weights_digest",
]
