"""The trainer: torchkeras's `KerasModel` for CTR, on top of accelerate.

`CTRKerasModel` trains any model here with BCE on logits, early stopping on
exact validation metrics, optional bf16 autocast (`autocast_training`,
`auto_precision`) and weight decay where it helps (`decay_groups`).
Evaluation lives in `train.evaluation`, the defaults in `train.hparams`.
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

from ..fast import make_adam
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
        self.metrics_dict = {
            "auc": AUC(),
            "logloss": LogLoss(),
            "auc_minus_logloss": AUCMinusLogLoss(),
        }

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
        after the one that logs each epoch.
        """
        if precision == "auto":
            precision = auto_precision()
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
                monitor=column,
                mode=mode,
                callbacks=[log, *(callbacks or [])],
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
