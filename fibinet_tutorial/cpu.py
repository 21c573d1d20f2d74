"""CPU settings that make training faster, each measured in `make bench`."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory for large tensors instead of unmapping it.

    glibc serves allocations above 32 MB with fresh `mmap` pages, so each new
    [B, P, d] tensor pays a page fault per 4 KB page (about 15 ms for FiBiNET's
    48 MB bilinear output at batch 2048). With mmap off and trimming off, freed
    blocks are reused, as jemalloc or tcmalloc would do. The process keeps its
    peak memory instead of returning it to the system. Returns False (and
    changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def flush_denormals() -> bool:
    """Treat denormal floats (below ~1e-38) as zero in CPU arithmetic.

    Weight decay pulls the embeddings of rarely seen categories towards zero;
    once they are denormal, every operation on them runs in the CPU's slow
    microcode path (measured: 76 s instead of 22 s per FiBiNET epoch). Flushing
    them changes results by less than 1e-38. Returns False where unsupported.
    """
    return torch.set_flush_denormal(True)


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it (CPU: torch >= 2.4).

    The default on CPU loops over parameters in Python-level single-tensor
    kernels; fused does one pass per parameter and is several times faster
    on a million-row embedding table. params may be parameter groups, each
    with its own weight_decay (see train.embedding_decay_groups).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
