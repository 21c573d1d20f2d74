"""How the hand-written autograd functions behave under autocast (bf16).

Each one casts its inputs itself, as autocast would cast the PyTorch op it
replaces, and then runs with autocast off, so nothing inside it is cast twice;
its backward runs in the dtypes it was written for.

Not here: choosing bf16 or float32 (`train.hparams.auto_precision`), running
training steps under autocast (`train.trainer.autocast_training`).
"""

from __future__ import annotations

import contextlib
import functools

import torch


def autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype autocast is running in on this device type, or None if off
    (or if autocast does not exist there, e.g. on the "meta" device)."""
    if not torch.amp.is_autocast_available(device):
        return None
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def autocast_off(device: str):
    """A region without autocast on this device type (any device type)."""
    if not torch.amp.is_autocast_available(device):
        return contextlib.nullcontext()
    return torch.autocast(device, enabled=False)


def without_autocast(backward):
    """Run a hand-written backward in the dtypes it was written for, even when
    it is called inside an autocast region (which would turn its matmuls bf16)."""

    @functools.wraps(backward)
    def run(ctx, grad_out):
        with autocast_off(grad_out.device.type):
            return backward(ctx, grad_out)

    return run
