"""The trainer: torchkeras's `KerasModel` for CTR, on top of accelerate.

`CTRKerasModel` trains any model here with BCE on logits, early stopping on
exact validation metrics, optional bf16 autocast (`autocast_training`) and
weight decay where it helps (`decay_groups`), on one CPU, one GPU or several
processes (`accelerate launch`); its `fit` applies the CPU settings training
depends on while it runs. Also here: `training_device` (where `fit` trains)
and `weights_digest` (equal digests, equal models).

Not here: evaluation (`train.evaluation`), the defaults and `auto_precision`
(`train.hparams`), the CPU settings `fit` applies (`fast.cpu.training_settings`),
the whole job (`train.job`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..data.schema import option
from ..fast import make_adam, training_settings
from ..metrics import AUC, AUCMinusLogLoss, BCEWithLogits, LogLoss
from .hparams import MONITORS, auto_precision, default_hparams

# torchkeras prints the import errors of optional extras it does not need here
# (its tabular models want the `tabm` package), and tqdm.auto warns in Jupyter
# without ipywidgets (we show no widget bars); keep both out of our output.
warnings.filterwarnings("ignore", message="IProgress not found")
with contextlib.redirect_stdout(io.StringIO()):
    import torchkeras


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


def training_device() -> str:
    """Where `CTRKerasModel.fit` trains: "cuda" when a GPU is visible, else "cpu"
    (accelerate's own rule; each process of a launch takes its own GPU)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_labels(loader, part: str) -> None:
    """One clear line before training when a split's labels are all one class:
    training learns nothing from one class, and a validation AUC needs both."""
    label_counts = getattr(getattr(loader, "dataset", None), "label_counts", None)
    counts = label_counts() if label_counts is not None else None
    if counts is None or (counts[0] and counts[1]):
        return
    negatives, positives = counts
    label, n = (0, negatives) if negatives else (1, positives)
    more = option("val_frac=", "--val-frac") if part == "validation" else ""
    raise ValueError(
        f"all {n:,} {part} rows have label {label}: a click model needs clicks "
        "(1) and non-clicks (0) in its training and validation rows"
        + (f"; use more rows or a larger {more}" if more else "")
    )


def _check_first_rows(net: nn.Module, loader, rows: int = 1024) -> None:
    """Check the first training rows against the model on the CPU.

    On a GPU the model checks its input's index ranges only in evaluation
    (a check on every training step would wait for the GPU each time), so a
    bad index would otherwise surface as CUDA's own device-side assert.
    """
    check = getattr(net, "check_inputs", None)
    dataset = getattr(loader, "dataset", None)
    if check is None or not hasattr(dataset, "__getitems__") or not len(dataset):
        return
    batch = dataset.__getitems__(list(range(min(rows, len(dataset)))))
    has_labels = len(batch) == 2 and isinstance(batch[0], (tuple, list))
    check(batch[0] if has_labels else batch)


class CTRKerasModel(torchkeras.KerasModel):
    """torchkeras.KerasModel for CTR: BCE on logits, exact AUC and log loss.

    Each training step is torchkeras's: forward, BCE loss, backward, gradients
    clipped to a total norm of 1.0 (`accelerator.clip_grad_norm_(..., 1.0)` in
    torchkeras's StepRunner, every step), Adam step.

    Changes to make it work on several processes (`accelerate launch`): the
    loss and metrics are plain callables, not nn.Modules, so accelerate wraps
    only the network in DistributedDataParallel (DDP on CPU refuses modules
    without parameters); and after `fit` every process, not only the main
    one, holds the best checkpoint's weights, on the device it trained on.
    On a GPU, batches are copied from pinned memory without blocking
    (`data.make_loader` pins them; accelerate copies them non-blocking).
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
        self.metrics_dict = {
            "auc": AUC(),
            "logloss": LogLoss(),
            "auc_minus_logloss": AUCMinusLogLoss(),
        }

    def __setattr__(self, name, value):
        # torchkeras builds its Accelerator inside fit and prepares the loaders
        # right after; ask it for non-blocking host-to-device copies first
        # (they overlap with the GPU's work when the loader pins its batches)
        config = getattr(value, "dataloader_config", None)
        if name == "accelerator" and config is not None:
            config.non_blocking = True
        super().__setattr__(name, value)

    def fit(
        self,
        train_data,
        val_data=None,
        epochs: int = 20,
        ckpt_path="checkpoint.pt",
        patience: int = 2,
        monitor: str | None = None,
        progress: str = "bar",
        precision: str = "float32",
        callbacks=None,
        threads: int | None = None,
        **kwargs,
    ) -> pd.DataFrame:
        """Train with early stopping; returns the history, one row per epoch.

        monitor: the validation score that early stopping watches and whose
        best epoch's weights are kept: "auc", "logloss" or "auc-logloss"
        (`hparams.MONITORS`; None: `default_hparams()["monitor"]`).
        progress: "bar" (torchkeras's tqdm bars), "epoch" (one plain line per
        epoch, for notebooks) or "none". precision: "float32", "bf16" (training
        steps under autocast, see `autocast_training`) or "auto" (bf16 where
        it is fast: `auto_precision`). callbacks: torchkeras callbacks, called
        after the one that logs each epoch. threads: CPU threads while
        training (None: a number already set with `torch.set_num_threads`,
        else `fast.default_threads()`).

        Training applies the process-wide CPU settings it depends on itself
        (`fast.training_settings`: threads, and on a CPU denormals flushed and
        freed memory kept), so it runs at one speed from a notebook, the
        command line or a script; afterwards the thread count and denormal
        mode are restored. Raises a ValueError before training when the
        training or validation rows are all of one class.
        """
        device = "cpu" if kwargs.get("cpu") else training_device()
        if precision == "auto":
            precision = auto_precision(device)
        if monitor is None:
            monitor = default_hparams()["monitor"]
        if monitor not in MONITORS:
            raise ValueError(
                f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}"
            )
        column, mode = MONITORS[monitor]
        if progress not in ("bar", "epoch", "none"):
            raise ValueError(f"progress must be bar, epoch or none, got {progress!r}")
        log = _EpochLog(sys.stdout if progress == "epoch" else None)
        if progress != "bar":
            self.EpochRunner = _QuietEpochRunner
        _check_labels(train_data, "training")
        _check_labels(val_data, "validation")
        if device != "cpu":
            _check_first_rows(self.net, train_data)
        # On a machine without a GPU, accelerate runs several processes only
        # when told cpu=True (then it uses gloo); with one process it is harmless.
        kwargs.setdefault("cpu", device == "cpu")
        Path(ckpt_path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as scope:
            if progress != "bar":
                scope.enter_context(contextlib.redirect_stdout(io.StringIO()))
            scope.enter_context(training_settings(device, threads))
            scope.enter_context(autocast_training(self.net, precision))
            super().fit(
                train_data,
                val_data,
                epochs=epochs,
                ckpt_path=str(ckpt_path),
                patience=patience,
                monitor=column,
                mode=mode,
                callbacks=[log, *(callbacks or [])],
                plot=False,
                **kwargs,
            )
        acc = self.accelerator
        acc.wait_for_everyone()  # the main process has written the best weights
        if not acc.is_local_main_process:
            self.net = acc.unwrap_model(self.net)
            self.load_ckpt(str(ckpt_path))
        # torchkeras hands the main process's model back on the CPU; keep every
        # process's on the device it trained on, where evaluation is fast too
        self.net.to(acc.device)
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
