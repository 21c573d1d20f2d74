"""How the hand-written autograd functions behave under autocast (bf16).

Each one casts its inputs itself, as autocast would cast the PyTorch op it
replaces, and then runs with autocast off, so nothing inside it is cast twice;
its backward runs in the dtypes it was written for.
"""

from __future__ import annotations

import functools

import torch


def autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype autocast is running in on this device type, or None if off."""
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def without_autocast(backward):
    """Run a hand-written backward in the dtypes it was written for, even when
    it is called inside an autocast region (which would turn its matmuls bf16)."""

    @functools.wraps(backward)
    def run(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):
            return backward(ctx, grad_out)

    return run
