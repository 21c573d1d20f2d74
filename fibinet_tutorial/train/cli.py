"""The command line of the main job.

    python -m fibinet_tutorial.train                      # built-in data
    python -m fibinet_tutorial.train --data train.txt --model fibinet
    accelerate launch --multi_gpu --num_processes 2 -m fibinet_tutorial.train ...

The last line of output is one strict JSON object (no NaN: an undefined
metric is null; also written to OUT/metrics.json); errors end with one line
`error: ...` and exit status 2.

Not here: what the job does (`train.job`), the defaults its flags show
(`train.hparams`), the error hints that name its flags (`data.schema`).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..data import NUMERIC_TRANSFORMS, cli_hints
from ..fast import default_threads
from .checkpoints import MODELS
from .hparams import MONITORS, PRECISIONS, default_hparams
from .job import run


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
    p.add_argument("--numeric", choices=sorted(NUMERIC_TRANSFORMS), default="log1p")
    p.add_argument(
        "--streamed",
        action="store_true",
        help="preprocess in bounded memory into memory-mapped arrays (for the "
        "full Criteo file); without it, a file that would not fit in the memory "
        "available (about 10 bytes per byte of text, within 70%% of what the "
        "machine or container has free) is streamed anyway, with a note",
    )
    p.add_argument(
        "--labelled",
        choices=["auto", "yes", "no"],
        default="auto",
        help="whether the files have a label column (40 fields a line) or not "
        "(39); auto: from the widest of the first lines. Say yes or no when "
        "empty tail fields were stripped from those lines",
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
        "--monitor",
        choices=list(MONITORS),
        default=d["monitor"],
        help="validation score for early stopping and the kept epoch",
    )
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
    p.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="CPU threads per process; default (%(default)s here): "
        "OMP_NUM_THREADS if set, else the physical cores within the container's "
        "CPU quota, divided among the processes of an `accelerate launch`",
    )
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
        with cli_hints():  # hints in error messages name flags, not arguments
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
        print(json.dumps(summary, allow_nan=False))
    return 0
