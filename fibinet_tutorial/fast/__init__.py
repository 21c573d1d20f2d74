"""The speed path: hand-written kernels and CPU settings, kept apart from the model.

The model code (`layers`, `models`) reads like the formulas; it calls into this
package where a plain PyTorch op would be slow for FiBiNET's shapes. Nothing
here changes a result beyond float rounding: each piece is tested against the
plain version it replaces (tests/test_fast.py, tests/test_layers.py), and
`make bench` measures what each buys (benchmarks/RESULTS.md).

What each piece buys, and why the model uses it:

- `bilinear_kernel`: the bilinear interaction of every field pair with one
  operation per *row* of pairs and a hand-written backward, on a
  batch-innermost layout. The readable loop records thousands of tiny autograd
  ops per call (741 pairs on Criteo); this is the biggest win.
- `blocks.Linear`: the MLP's first layer reads that batch-innermost output
  directly; `nn.Linear` would multiply it as a transposed operand (slow in bf16).
- `blocks.Dropout`: a dropout mask from 64-bit random draws, several times
  cheaper than `bernoulli_` on the CPU.
- `blocks.lookup`: an embedding backward with one `index_add_` instead of
  PyTorch's sort on the CPU (one million rows on Criteo).
- `cpu`: process-wide CPU settings: reuse of freed memory (`keep_freed_memory`),
  2 MB pages for the bilinear output (`advise_huge_pages`), denormals flushed
  to zero (`flush_denormals`), Intel AMX detection for bf16 (`has_amx`), and
  Adam's fused kernel (`make_adam`); `training_settings` applies the ones
  training depends on while it runs (the trainer calls it).
- `machine`: what the machine gives a process: physical cores, a container's
  CPU quota, `default_threads`, `memory_available`.
- `autocast`: how the hand-written functions behave under bf16 autocast.
- `columns`: FiBiNet++'s embedding norms and SENet+ on a batch-innermost
  layout, [F, d, B], with a hand-written LayerNorm backward: PyTorch's kernels
  are slow on FiBiNet++'s rows of d = 8 numbers.

On other devices (CUDA) the blocks fall back to PyTorch's own ops and the CPU
settings are not applied, by design (tests/test_devices.py); the bilinear
kernel runs on any device.

Not here: the readable layers these pieces replace (`layers`), where FiBiNet++
switches to `columns` (`models.fibinetpp`), the choice of bf16 or float32
(`train.hparams.auto_precision`).
"""

from .bilinear_kernel import bilinear_interaction, bilinear_pairs, row_offsets
from .blocks import Dropout, Linear, lookup
from .columns import (
    batch_norm_columns,
    layer_norm_columns,
    senet_plus_columns,
)
from .cpu import (
    advise_huge_pages,
    denormals_flushed,
    flush_denormals,
    has_amx,
    keep_freed_memory,
    make_adam,
    training_settings,
)
from .machine import default_threads, memory_available

__all__ = [
    "Dropout",
    "Linear",
    "advise_huge_pages",
    "batch_norm_columns",
    "bilinear_interaction",
    "bilinear_pairs",
    "default_threads",
    "denormals_flushed",
    "flush_denormals",
    "has_amx",
    "keep_freed_memory",
    "layer_norm_columns",
    "lookup",
    "make_adam",
    "memory_available",
    "row_offsets",
    "senet_plus_columns",
    "training_settings",
]
