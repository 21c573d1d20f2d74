"""CPU settings that make training faster, Intel AMX detection and Adam's fused
kernel (see the package docstring, `fast`).

`training_settings` applies the ones training depends on, for the duration of
training; the trainer (`train.CTRKerasModel.fit`, `train.train_one`) uses it,
so a notebook, the command line and a user's own script train at one speed.

Not here: core counts, default threads and memory available (`fast.machine`), the
choice of bf16 (`train.hparams.auto_precision`), the kernels' autocast rules
(`fast.autocast`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys

import torch

from .machine import default_threads

# torch's thread count when this package was imported: while a process still
# has it, nobody chose one, and training uses `machine.default_threads()`.
_STARTUP_THREADS = torch.get_num_threads()

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_MADV_HUGEPAGE, _HUGE_PAGE = 14, 2 << 20


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library (None where there is none to load)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def _madvise():
    """libc's madvise with its argument types, on Linux only (else None)."""
    libc = _libc()
    if not sys.platform.startswith("linux") or libc is None:
        return None
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


def advise_huge_pages(t: torch.Tensor) -> bool:
    """Ask Linux to back a large, not yet written CPU tensor with 2 MB pages.

    A fresh tensor's memory is mapped lazily: the first write to each 4 KB page
    traps into the kernel. For FiBiNET's 48 MB bilinear output (batch 2048)
    that is 12,000 traps, a large share of the layer's forward pass; with
    2 MB pages it is 24. Call it right after `torch.empty`, before anything is
    written. Only the whole 2 MB blocks inside the tensor are advised; where
    transparent huge pages are off, or off Linux, nothing changes. Returns
    whether the advice was given.
    """
    madvise = _madvise()
    if madvise is None or t.device.type != "cpu":  # a CPU-only trick by design
        return False
    nbytes = t.untyped_storage().nbytes()
    if nbytes < 2 * _HUGE_PAGE:
        return False
    start = -(-t.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    end = (t.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
    return end > start and madvise(start, end - start, _MADV_HUGEPAGE) == 0


def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory for large tensors instead of unmapping it.

    glibc serves allocations above 32 MB with fresh `mmap` pages, so each new
    [B, P, d] tensor pays a page fault per 4 KB page (FiBiNET's bilinear output
    is 48 MB at batch 2048). With mmap off and trimming off, freed
    blocks are reused, as jemalloc or tcmalloc would do. The process keeps its
    peak memory instead of returning it to the system. Returns False (and
    changes nothing) where the C library is not glibc.
    """
    try:
        mallopt = _libc().mallopt
    except AttributeError:  # no C library, or not glibc
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def flush_denormals() -> bool:
    """Treat denormal floats (below ~1e-38) as zero in CPU arithmetic.

    Weight decay pulls the embeddings of rarely seen categories towards zero;
    once they are denormal, every operation on them runs in the CPU's slow
    microcode path (an earlier measurement here: epochs over three times as
    long). Flushing them changes results by less than 1e-38. Returns False
    where unsupported.
    """
    return torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes denormals to zero now
    (torch has no getter: a denormal times one comes out zero when it does)."""
    return (torch.tensor([1e-40]) * 1.0).item() == 0.0


@contextlib.contextmanager
def training_settings(device_type: str = "cpu", threads: int | None = None):
    """The process-wide settings training depends on, while training runs.

    threads: torch's intra-op threads for the duration (the CPU also gathers
    every batch on a GPU); None keeps a number someone already chose with
    `torch.set_num_threads` and otherwise uses `machine.default_threads()`.
    The previous number is restored afterwards.
    On a CPU device also: denormals flushed to zero (`flush_denormals`; the
    previous mode is restored afterwards) and freed memory kept for reuse
    (`keep_freed_memory`; glibc's settings cannot be read back, so this one
    stays for the rest of the process). On other devices those two CPU
    tricks do nothing for the model's arithmetic and are left alone.
    """
    before = torch.get_num_threads()
    if threads is None and before == _STARTUP_THREADS:
        threads = default_threads()
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    flushed = None
    if device_type == "cpu":
        keep_freed_memory()
        flushed = denormals_flushed()
        flush_denormals()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if flushed is False:
            torch.set_flush_denormal(False)


def has_amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX).

    There, training under bf16 autocast is faster (`make bench`: the training
    step table); elsewhere bf16 on a CPU is emulated and slower than float32.
    """
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(check is not None and check())
    except RuntimeError:
        return False


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it (CPU: torch >= 2.4).

    The default on CPU loops over parameters in Python-level single-tensor
    kernels; fused does one pass per parameter and is several times faster
    on a million-row embedding table. params may be parameter groups, each
    with its own weight_decay (see train.decay_groups).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
