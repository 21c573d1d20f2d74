"""Training with torchkeras + accelerate, evaluation, and the main job's CLI.

    python -m fibinet_tutorial.train                      # built-in data, 3 models
    python -m fibinet_tutorial.train --data train.txt --model fibinet
    accelerate launch --multi_gpu --num_processes 2 -m fibinet_tutorial.train ...

The CLI's last line of output is one JSON object (also written to
OUT/metrics.json); errors end with one line `error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import data as D
from .cpu import flush_denormals, has_amx, keep_freed_memory, make_adam
from .metrics import AUC, BCEWithLogits, LogLoss, log_loss, roc_auc
from .models import DeepFM, FiBiNET, LogisticRegression, SeedEnsemble, count_parameters

# torchkeras prints the import errors of optional extras it does not need here
# (its tabular models want the `tabm` package), and tqdm.auto warns in Jupyter
# without ipywidgets (we show no widget bars); keep both out of our output.
warnings.filterwarnings("ignore", message="IProgress not found")
with contextlib.redirect_stdout(io.StringIO()):
    import torchkeras

MODELS = {"fibinet": FiBiNET, "deepfm": DeepFM, "lr": LogisticRegression}
MODEL_TITLES = {"fibinet": "FiBiNET", "deepfm": "DeepFM", "lr": "LogisticRegression"}
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
}


# ------------------------------------------------------------------ models


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
    torch.save(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(config, indent=1))


def load_model(path) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by `save_model`; weights load with weights_only=True."""
    path = Path(path)
    config = json.loads(path.with_suffix(".json").read_text())
    net = build_model(config)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval(), config


def load_trained(out_dir, model: str = "fibinet"):
    """A finished run's model and preprocessor: (net, preprocessor)."""
    out_dir = Path(out_dir)
    net, _ = load_model(out_dir / f"{model}.pt")
    return net, D.CriteoPreprocessor.load(out_dir / "preprocessor.json")


def eval_loader(dataset) -> torch.utils.data.DataLoader:
    """Large, unshuffled batches: for evaluation and scoring."""
    return D.make_loader(dataset, 8192, shuffle=False)


def score(net: nn.Module, preprocessor, df: pd.DataFrame) -> np.ndarray:
    """Click probabilities [N] for raw Criteo rows (unseen categories welcome)."""
    return predict_proba(net, eval_loader(D.CTRDataset.from_frame(df, preprocessor)))


# ---------------------------------------------------------------- training


class _QuietEpochRunner(torchkeras.kerasmodel.EpochRunner):
    """torchkeras's epoch loop without its tqdm bar (clean notebook output)."""

    def __init__(self, step_runner, quiet=False):
        super().__init__(step_runner, quiet=True)


class _EpochLog:
    """torchkeras callback: times each epoch; optionally prints one line per epoch."""

    def __init__(self, stream=None):
        self.stream = stream
        self.seconds: list[float] = []

    def on_fit_start(self, model):
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, model):
        now = time.perf_counter()
        self.seconds.append(now - self.start)
        self.start = now
        if self.stream is not None:
            h = {k: v[-1] for k, v in model.history.items()}
            parts = [f"epoch {h['epoch']:>2}"]
            for key in ("train_loss", "val_loss", "val_auc", "val_logloss"):
                if key in h:
                    parts.append(f"{key} {h[key]:.4f}")
            parts.append(f"{self.seconds[-1]:.1f}s")
            print("  ".join(parts), file=self.stream, flush=True)


PRECISIONS = ("auto", "float32", "bf16")


def auto_precision() -> str:
    """bf16 where its matrix products are fast (CUDA GPUs, CPUs with AMX)."""
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "float32"
    return "bf16" if has_amx() else "float32"


@contextlib.contextmanager
def autocast_training(net: nn.Module, precision: str):
    """Run net's *training* forward passes under autocast; evaluation stays float32.

    precision "bf16": the MLP's (and SENet's) matrix products run in bfloat16
    and the bilinear layer hands the MLP its products in bfloat16, while the
    weights, the optimizer and the bilinear backward stay float32; logits come
    back as float32. Validation, `evaluate` and `predict_proba`
    see the plain float32 model, so their AUCs are exact and reproducible.
    "float32" changes nothing.
    """
    if precision not in ("float32", "bf16"):
        raise ValueError(f"precision must be float32 or bf16, got {precision!r}")
    if precision == "float32":
        yield net
        return
    had_own_forward = "forward" in net.__dict__
    forward = net.forward

    def forward_in_bf16(*args, **kwargs):
        if not net.training:
            return forward(*args, **kwargs)
        device = next(net.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return out.float()

    net.forward = forward_in_bf16
    try:
        yield net
    finally:
        if had_own_forward:
            net.forward = forward
        else:
            del net.forward


def decay_groups(
    net: nn.Module, weight_decay: float, mlp_weight_decay: float = 0.0
) -> list[dict]:
    """Optimizer groups: weight decay on per-category tables and MLP weights only.

    The decay (L2, as Adam applies it) pulls a rarely seen category's vector
    back to zero between its rare updates, which stops the model memorising
    rare values. The MLP's weight matrices get their own decay, which matters
    on small files only (see `auto_mlp_weight_decay`). Everything else keeps
    none: on SENet's small excitation layers decay drives the ReLU outputs to
    exactly zero and switches the re-weighted branch off.
    """
    tables = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    mlp = getattr(net, "mlp", None)
    dense = {id(p) for p in mlp.parameters() if p.dim() == 2} if mlp else set()
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [
        ([p for p in params if id(p) in tables], weight_decay),
        ([p for p in params if id(p) in dense], mlp_weight_decay),
        ([p for p in params if id(p) not in tables | dense], 0.0),
    ]
    return [{"params": ps, "weight_decay": wd} for ps, wd in groups if ps]


class CTRKerasModel(torchkeras.KerasModel):
    """torchkeras.KerasModel for CTR: BCE on logits, exact AUC and log loss.

    Two changes to make it work on several processes (`accelerate launch`):
    the loss and metrics are plain callables, not nn.Modules, so accelerate
    wraps only the network in DistributedDataParallel (DDP on CPU refuses
    modules without parameters); and after `fit` every process, not only the
    main one, holds the best checkpoint's weights.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        mlp_weight_decay: float = 0.0,
    ):
        groups = decay_groups(net, weight_decay, mlp_weight_decay)
        optimizer = make_adam(groups, lr=lr)
        super().__init__(net, loss_fn=BCEWithLogits(), optimizer=optimizer)
        del self.metrics_dict  # KerasModel made an nn.ModuleDict; see above
        self.metrics_dict = {"auc": AUC(), "logloss": LogLoss()}

    def fit(
        self,
        train_data,
        val_data=None,
        epochs: int = 20,
        ckpt_path="checkpoint.pt",
        patience: int = 2,
        monitor: str = "val_auc",
        mode: str = "max",
        progress: str = "bar",
        precision: str = "float32",
        **kwargs,
    ) -> pd.DataFrame:
        """Train with early stopping; returns the history, one row per epoch.

        progress: "bar" (torchkeras's tqdm bars), "epoch" (one plain line per
        epoch, for notebooks) or "none". precision: "float32", "bf16" (training
        steps under autocast, see `autocast_training`) or "auto" (bf16 where
        it is fast: `auto_precision`).
        """
        if precision == "auto":
            precision = auto_precision()
        if progress not in ("bar", "epoch", "none"):
            raise ValueError(f"progress must be bar, epoch or none, got {progress!r}")
        log = _EpochLog(sys.stdout if progress == "epoch" else None)
        if progress != "bar":
            self.EpochRunner = _QuietEpochRunner
        # On a machine without a GPU, accelerate runs several processes only
        # when told cpu=True (then it uses gloo); with one process it is harmless.
        kwargs.setdefault("cpu", not torch.cuda.is_available())
        Path(ckpt_path).parent.mkdir(parents=True, exist_ok=True)
        quiet = contextlib.redirect_stdout(io.StringIO()) if progress != "bar" else None
        with quiet or contextlib.nullcontext(), autocast_training(self.net, precision):
            super().fit(
                train_data,
                val_data,
                epochs=epochs,
                ckpt_path=str(ckpt_path),
                patience=patience,
                monitor=monitor,
                mode=mode,
                callbacks=[log],
                plot=False,
                **kwargs,
            )
        acc = self.accelerator
        acc.wait_for_everyone()  # the main process has written the best weights
        if not acc.is_local_main_process:
            self.net = acc.unwrap_model(self.net).cpu()
            self.load_ckpt(str(ckpt_path))
        history = pd.DataFrame(self.history)
        if len(log.seconds) == len(history):
            history["seconds"] = log.seconds
        self.history_ = history
        return history


def weights_digest(net: nn.Module) -> str:
    """sha256 of all parameters and buffers: equal digests, equal models."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -------------------------------------------------------------- evaluation


def _features(batch):
    """A loader's batch -> (features, labels or None)."""
    if len(batch) == 2 and isinstance(batch[0], (tuple, list)):
        return batch[0], batch[1]
    return tuple(batch), None


@torch.no_grad()
def predict_proba(net: nn.Module, loader) -> np.ndarray:
    """Click probabilities [N] for every row of a loader, in order."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for batch in loader:
        features, _ = _features(batch)
        features = tuple(t.to(device) for t in features)
        out.append(torch.sigmoid(net(features)).double().cpu())
    return torch.cat(out).numpy()


def loader_labels(loader) -> np.ndarray:
    """The labels [N] of a (non-shuffled) loader, in order."""
    return torch.cat([_features(b)[1] for b in loader]).numpy()


def evaluate(net: nn.Module, loader) -> dict:
    """Exact AUC and log loss of a model on a labelled loader."""
    p = predict_proba(net, loader)
    y = loader_labels(loader)
    return {"auc": roc_auc(y, p), "logloss": log_loss(y, p)}


@torch.no_grad()
def mean_field_importance(net: FiBiNET, loader) -> pd.Series:
    """SENet's average weight per field over a loader, indexed by field name."""
    net.eval()
    device = next(net.parameters()).device
    total, n = 0.0, 0
    for batch in loader:
        features, _ = _features(batch)
        w = net.field_importance(tuple(t.to(device) for t in features))
        total = total + w.sum(0).double().cpu()
        n += len(w)
    return pd.Series((total / n).numpy(), index=net.field_names, name="senet_weight")


def summarize(name: str, net: nn.Module, history: pd.DataFrame, dl_val, dl_test):
    """One model's row of the comparison: exact val/test metrics, time, size."""
    result = {"model": name, "epochs_run": int(len(history))}
    result.update({f"val_{k}": v for k, v in evaluate(net, dl_val).items()})
    if dl_test.dataset.y is not None:
        result.update({f"test_{k}": v for k, v in evaluate(net, dl_test).items()})
    if "seconds" in history:
        result["seconds_per_epoch"] = float(history["seconds"].mean())
    result["parameters"] = count_parameters(net)
    return result


def comparison_table(results: list[dict]) -> pd.DataFrame:
    """One row per model (and the oracle): AUC, log loss, time, parameters."""
    table = pd.DataFrame(results).set_index("model")
    keep = [
        "test_auc",
        "test_logloss",
        "val_auc",
        "epochs_run",
        "seconds_per_epoch",
        "parameters",
    ]
    return table[[c for c in keep if c in table]]


# ---------------------------------------------------------------- the job


def prepare_data(
    data=None,
    test=None,
    data_dir=None,
    rows: int | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    min_count: int = 10,
    numeric: str = "log1p",
    streamed_dir=None,
) -> dict:
    """Read, split (seeded, at random) and preprocess; fit on training rows only.

    data=None uses the built-in synthetic data (written once to data_dir).
    With `test`, that file is the test set and `data` splits into train/val.
    streamed_dir: preprocess in bounded memory into memory-mapped arrays there.
    Returns datasets ds_train/ds_val/ds_test, the preprocessor, and for the
    built-in data the generator (`truth`) and the oracle's test metrics.
    """
    from . import synthetic

    truth = None
    if data is None:
        n = rows or synthetic.DEFAULT_ROWS
        data = synthetic.ensure_default_data(data_dir or "data", n_rows=n)
        truth = synthetic.SyntheticCriteo(synthetic.DEFAULT_SEED)
        rows = None
    if test is not None:
        val_frac, test_frac = val_frac / (1 - test_frac), 0.0
    out = {"data": str(data), "truth": truth}
    if streamed_dir is not None:
        arrays = D.preprocess_to_arrays(
            data,
            streamed_dir,
            min_count=min_count,
            numeric=numeric,
            val_frac=val_frac,
            test_frac=test_frac,
            split_seed=seed,
            nrows=rows,
        )
        pre = arrays.preprocessor
        out.update({f"ds_{p}": arrays.dataset(p) for p in ("train", "val", "test")})
        df = D.read_criteo(data, nrows=rows) if truth is not None else None
        split = np.asarray(arrays.split)
    else:
        df = D.read_criteo(data, nrows=rows)
        split = D.split_codes(0, len(df), val_frac, test_frac, seed)
        pre = D.CriteoPreprocessor(min_count=min_count, numeric=numeric)
        pre.fit(df[split == 0])
        for k, part in enumerate(("train", "val", "test")):
            out[f"ds_{part}"] = D.CTRDataset.from_frame(df[split == k], pre)
    if test is not None:
        out["ds_test"] = D.CTRDataset.from_frame(D.read_criteo(test), pre)
    out["preprocessor"] = pre
    for part in ("train", "val", "test"):
        if len(out[f"ds_{part}"]) == 0:
            raise ValueError(
                f"{data}: the {part} split is empty; the file needs more rows "
                f"(val_frac={val_frac:g}, test_frac={test_frac:g})"
            )
    if truth is not None:
        out["oracle"] = {
            part: truth.oracle_metrics(df[split == k])
            for k, part in enumerate(("train", "val", "test"))
        }
    return out


def default_hparams() -> dict:
    """The CLI's defaults, in one place (the notebooks use them too).

    Tuned on the built-in data and kept safe for small files: the seed's Criteo
    run used lr 2e-3, dropout 0.25 and weight decay 1e-3. Weight decay matters
    most: it pulls the embeddings of rarely seen categories back to zero
    between their rare updates, which stops the model from memorising them
    (measured without it, min_count 10, an earlier version of the built-in data:
    validation AUC 0.754 after epoch 2, 0.691 after epoch 4).
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
        "precision": "auto",  # auto_precision
        "seeds": None,  # auto_seeds
    }


def auto_mlp_weight_decay(n_train: int) -> float:
    """Weight decay for the MLP's weights: strong on small files, ~0 on large ones.

    FiBiNET's MLP reads F(F-1)d inputs (11,856 on Criteo's 39 fields): on a few
    thousand rows it fits noise, and FiBiNET falls below logistic regression.
    0.1 * (4,500 / n_train)**2; `make bench-small` measures it on the built-in
    data (benchmarks/SMALL_FILES.md: 3 samples per size, test AUC on 50k
    held-out rows). Mean FiBiNET minus LR for one seed, with / without it:
    3k rows +0.008 / -0.039, 5k -0.005 / -0.014, 10k +0.002 / -0.007,
    20k +0.003 / +0.005 (level within the noise there). Below 6,000 rows the
    defaults also average five seeds (`auto_seeds`).
    At 200k training rows it is 5e-5, too small to matter; a fixed 0.1 there
    costs 0.01 AUC, which is why it fades with the square of the size.
    """
    return 0.1 * (4_500 / max(n_train, 1)) ** 2


def auto_seeds(n_train: int, model: str = "fibinet") -> int:
    """How many seeds to train and average (`models.SeedEnsemble`): 5 below 6,000
    training rows, else 1; always 1 for logistic regression.

    On a few thousand rows one FiBiNET's test AUC moves a lot with its
    seed alone. benchmarks/SMALL_FILES.md, FiBiNET minus LR at 5,000 rows: one
    seed -0.005 on average (0 of 3 samples at or above LR), five seeds +0.006
    (2 of 3; the third 0.0005 below); at 3,000 rows +0.008 and +0.009 (3 of 3
    each). Five runs on such a file take seconds.
    Logistic regression has no such variance and trains once.
    """
    return 1 if model == "lr" or n_train >= 6_000 else 5


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


def train_one(
    name: str,
    prepared: dict,
    hparams: dict,
    out_dir,
    seed: int = 0,
    progress: str = "bar",
) -> dict:
    """Train one model with CTRKerasModel and evaluate it on val and test.

    With hparams "seeds" k > 1 (by default on small files, `auto_seeds`), k
    copies train from seeds seed, seed+1, ... and the result is their
    SeedEnsemble; the history then has one block of epochs per copy (column
    "member").
    """
    pre = prepared["preprocessor"]
    config = {
        "model": name,
        "d_numerical": len(D.NUM_COLS),
        "categories": pre.categories,
        "field_names": D.NUM_COLS + D.CAT_COLS,
        **{k: hparams[k] for k in MODEL_PARAMS[name]},
    }
    hp = resolve_hparams(hparams, len(prepared["ds_train"]), name)
    members = hp["seeds"]
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"seeds must be a whole number >= 1, got {members!r}")
    dl_val, dl_test = eval_loader(prepared["ds_val"]), eval_loader(prepared["ds_test"])
    nets, histories = [], []
    for k in range(members):
        torch.manual_seed(seed + k)
        model = CTRKerasModel(
            build_model(config),
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            mlp_weight_decay=hp["mlp_weight_decay"],
        )
        dl_train = D.make_loader(
            prepared["ds_train"], hp["batch_size"], True, seed=seed + k
        )
        ckpt = Path(out_dir) / (f"{name}.pt" if k == 0 else f"{name}.seed{seed + k}.pt")
        history = model.fit(
            dl_train,
            dl_val,
            epochs=hp["epochs"],
            patience=hp["patience"],
            ckpt_path=ckpt,
            progress=progress,
            precision=hp["precision"],
        )
        nets.append(model.net)
        histories.append(history.assign(member=k) if members > 1 else history)
    net, history = nets[0], histories[0]
    if members > 1:
        config["members"] = members
        net, history = SeedEnsemble(nets), pd.concat(histories, ignore_index=True)
    result = summarize(name, net, history, dl_val, dl_test)
    result["precision"] = hp["precision"]
    result["seeds"] = members
    return {
        "result": result,
        "net": net,
        "config": config,
        "history": history,
        "model": model,
    }


def run(args) -> dict | None:
    """The main job: train the requested models, compare, save, plot.

    Returns the summary (None on the other processes of a multi-process run).
    """
    from accelerate import PartialState

    from . import plots

    out_dir = Path(args.out)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    flush_denormals()
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # the main process writes the built-in data
        prepared = prepare_data(
            args.data,
            args.test,
            data_dir=args.data_dir,
            rows=args.rows,
            val_frac=args.val_frac,
            test_frac=args.test_frac,
            seed=args.seed,
            min_count=args.min_count,
            numeric=args.numeric,
            streamed_dir=out_dir / f"arrays{state.process_index}"
            if args.streamed
            else None,
        )
    hparams = {k: getattr(args, k) for k in default_hparams()}
    trained = {}
    for name in args.model:
        trained[name] = train_one(
            name, prepared, hparams, out_dir, args.seed, args.progress
        )
    first = trained[args.model[0]]
    acc = first["model"].accelerator
    rows = [t["result"] for t in trained.values()]
    if prepared["truth"] is not None:
        o = prepared["oracle"]
        rows.append(
            {
                "model": "oracle",
                "val_auc": o["val"]["auc"],
                "test_auc": o["test"]["auc"],
                "test_logloss": o["test"]["logloss"],
            }
        )
    summary = dict(first["result"])
    summary["data"] = prepared["data"]
    if prepared["truth"] is not None:
        summary["oracle_auc"] = prepared["oracle"]["test"]["auc"]
        summary["oracle_logloss"] = prepared["oracle"]["test"]["logloss"]
    summary["comparison"] = rows
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        digests = [weights_digest(t["net"]) for t in trained.values()]
        all_digests = gather_object([digests])
        summary["processes"] = acc.num_processes
        summary["ranks_identical"] = all(d == all_digests[0] for d in all_digests)
    if not acc.is_main_process:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared["preprocessor"].save(out_dir / "preprocessor.json")
    for name, t in trained.items():
        save_model(t["net"], t["config"], out_dir / f"{name}.pt")
        t["history"].to_csv(out_dir / f"history_{name}.csv", index=False)
    weights = strengths = None
    if "fibinet" in trained:
        net = trained["fibinet"]["net"]
        weights = mean_field_importance(net, eval_loader(prepared["ds_val"]))
        if prepared["truth"] is not None:
            strengths = plots.field_strengths(prepared["truth"])
    histories = {name: t["history"] for name, t in trained.items()}
    plots.save_run_figures(histories, out_dir, weights, strengths)
    print()
    print(comparison_table(rows).to_string(float_format=lambda v: f"{v:.4f}"))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    d = default_hparams()
    p = argparse.ArgumentParser(
        prog="python -m fibinet_tutorial.train",
        description="Train FiBiNET (and baselines) on a Criteo-format file.",
    )
    p.add_argument(
        "--data",
        help="Criteo-format file (.txt or .gz); default: the "
        "built-in synthetic data with known click probabilities",
    )
    p.add_argument("--test", help="a separate labelled test file (else a split)")
    p.add_argument(
        "--model",
        nargs="+",
        choices=list(MODELS),
        default=["fibinet"],
        help="models to train; the first one's metrics lead the JSON",
    )
    p.add_argument("--out", default="runs/default", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rows",
        type=int,
        help="read only this many rows (built-in data: generate this many)",
    )
    p.add_argument("--data-dir", help="where the built-in data is cached")
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--test-frac", type=float, default=0.1)
    p.add_argument(
        "--min-count",
        type=int,
        default=10,
        help="rarer categories share one out-of-vocabulary index",
    )
    p.add_argument("--numeric", choices=sorted(D.NUMERIC_TRANSFORMS), default="log1p")
    p.add_argument(
        "--streamed",
        action="store_true",
        help="preprocess in bounded "
        "memory into memory-mapped arrays (for the full Criteo file)",
    )
    p.add_argument(
        "--bilinear-type",
        dest="bilinear_type",
        default=d["bilinear_type"],
        choices=["field_all", "field_each", "field_interaction"],
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--shared-bilinear",
        dest="shared_bilinear",
        action="store_true",
        help="one bilinear layer for both branches (the seed's model)",
    )
    g.add_argument(
        "--separate-bilinear",
        dest="shared_bilinear",
        action="store_false",
        help="one per branch (the authors' code, FuxiCTR; default)",
    )
    p.set_defaults(shared_bilinear=d["shared_bilinear"])
    p.add_argument("--d-embed", dest="d_embed", type=int, default=d["d_embed"])
    p.add_argument(
        "--mlp",
        dest="mlp_layers",
        type=_int_list,
        default=d["mlp_layers"],
        help="hidden sizes, e.g. 128,64,32",
    )
    p.add_argument(
        "--dropout", dest="mlp_dropout", type=float, default=d["mlp_dropout"]
    )
    p.add_argument(
        "--reduction-ratio",
        dest="reduction_ratio",
        type=float,
        default=d["reduction_ratio"],
    )
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument(
        "--weight-decay", dest="weight_decay", type=float, default=d["weight_decay"]
    )
    p.add_argument(
        "--mlp-weight-decay",
        dest="mlp_weight_decay",
        type=float,
        default=d["mlp_weight_decay"],
        help="decay of the MLP's weights; default: by training-set size",
    )
    p.add_argument(
        "--batch-size",
        dest="batch_size",
        type=int,
        default=d["batch_size"],
        help="default 2048, smaller for small files (at least 32 steps an epoch)",
    )
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--patience", type=int, default=d["patience"])
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d["precision"],
        help="training steps in bf16 autocast or float32; auto: bf16 on GPUs "
        "and on CPUs with AMX, where it is faster (evaluation is float32)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=d["seeds"],
        help="train this many copies from consecutive seeds and average them; "
        "default: 5 below 6,000 training rows, else 1 (LR: 1)",
    )
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--progress", choices=["bar", "epoch", "none"], default="bar")
    p.add_argument("--traceback", action="store_true", help="show errors in full")
    return p.parse_args(argv)


def _int_list(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 128,64,32, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return sizes


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, OSError, RuntimeError) as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # all ranks finish together and close gloo/nccl cleanly: exiting with
        # the process group alive can abort a rank during interpreter teardown
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if summary is not None:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
