"""Which validation score should early stopping watch? `make bench-monitor`.

Each model trains on the built-in data (`make run`'s data and settings) for the
full number of epochs, once per seed, while a callback scores every epoch on
the validation *and* test rows. Early stopping with each monitor of
`train.MONITORS` (and `make run`'s patience) is then replayed on the same
validation curve, so the monitors are compared on identical training runs: the
epoch each one keeps, and that epoch's test AUC and log loss. Prints a markdown
page (`make bench-monitor` saves it to benchmarks/MONITOR.md).

    python benchmarks/monitor.py [--models fibinet deepfm lr] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
from datetime import date

import numpy as np
import torch

from fibinet_tutorial import train


class EpochScores:
    """torchkeras callback: the exact validation and test metrics of every epoch."""

    def __init__(self, dl_val, dl_test):
        self.loaders = {"val": dl_val, "test": dl_test}
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, model):
        net = model.accelerator.unwrap_model(model.net)
        row = {}
        for part, loader in self.loaders.items():
            for k, v in train.evaluate(net, loader).items():
                row[f"{part}_{k}"] = v
        self.rows.append(row)


def kept_epoch(rows: list[dict], monitor: str, patience: int) -> int:
    """The epoch (0-based) early stopping keeps, replayed as torchkeras runs it:
    stop once `patience` epochs have passed without a better score; keep the
    best (the first of equal ones)."""
    column, mode = train.MONITORS[monitor]
    part, metric = column.split("_", 1)
    scores = []
    for row in rows:
        if metric == "auc_minus_logloss":
            score = row[f"{part}_auc"] - row[f"{part}_logloss"]
        else:
            score = row[f"{part}_{metric}"]
        scores.append(score if mode == "max" else -score)
        best = int(np.argmax(scores))
        if len(scores) - best > patience:
            break
    return best


def mean_sd(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fibinet", "deepfm", "lr"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # train_one sets the rest
    prepared = train.prepare_data(data_dir="data")
    defaults = train.default_hparams()
    patience, epochs = defaults["patience"], defaults["epochs"]
    # every epoch trains: the monitors are replayed on the recorded curves
    hp = defaults | {"patience": epochs}
    dl_val = train.eval_loader(prepared["ds_val"])
    dl_test = train.eval_loader(prepared["ds_test"])
    curves = {}  # (model, seed) -> rows
    precision = None
    for name in args.models:
        for seed in args.seeds:
            scores = EpochScores(dl_val, dl_test)
            run = train.train_one(
                name,
                prepared,
                hp,
                "runs/monitor",
                seed=seed,
                progress="none",
                callbacks=[scores],
            )
            precision = run["result"]["precision"]
            curves[(name, seed)] = scores.rows

    oracle = prepared["oracle"]["test"]
    lines = [
        "## Which score early stopping watches",
        "",
        f"Measured {date.today()} by `benchmarks/monitor.py` (`make bench-monitor`): "
        f"the built-in data ({prepared['data']}), `make run`'s settings "
        f"({epochs} epochs at most, patience {patience}, training in {precision}, "
        f"torch {torch.__version__}, {platform.machine()}), seeds "
        f"{', '.join(map(str, args.seeds))}. Every model trained all {epochs} epochs "
        "once per seed; each monitor's early stopping is replayed on the same "
        "validation curve, and the table gives the test scores of the epoch it keeps "
        "(mean ± sd over the seeds). The oracle (the true click probabilities) scores "
        f"test AUC {oracle['auc']:.4f}, log loss {oracle['logloss']:.4f}.",
        "",
        "| model | monitor | kept epoch | test AUC | test log loss |",
        "|---|---|---:|---:|---:|",
    ]
    for name in args.models:
        for monitor in train.MONITORS:
            kept = [
                kept_epoch(curves[(name, s)], monitor, patience) for s in args.seeds
            ]
            rows = [curves[(name, s)][k] for s, k in zip(args.seeds, kept)]
            lines.append(
                f"| {train.MODEL_TITLES[name]} | {monitor} | "
                f"{', '.join(str(k + 1) for k in kept)} | "
                f"{mean_sd(r['test_auc'] for r in rows)} | "
                f"{mean_sd(r['test_logloss'] for r in rows)} |"
            )
    lines += [
        "",
        "Per-epoch curves (seed "
        f"{args.seeds[0]}; validation AUC / validation log loss / test log loss):",
        "",
    ]
    for name in args.models:
        rows = curves[(name, args.seeds[0])]
        cells = [
            f"{r['val_auc']:.4f} / {r['val_logloss']:.4f} / {r['test_logloss']:.4f}"
            for r in rows
        ]
        lines.append(f"- {train.MODEL_TITLES[name]}: " + "; ".join(cells))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
