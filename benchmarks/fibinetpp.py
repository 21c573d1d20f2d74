"""From FiBiNET to FiBiNet++, one change at a time: the ablation on the built-in
data; and whether FiBiNET's small-file rules apply to FiBiNet++.

Each ablation row changes one thing in the row above it (the switches of
`models.FiBiNETPlusPlus`); every row trains with the package's defaults
(`train.default_hparams`, resolved for the training set as `train_one` does)
from several seeds on the same split, and is scored on the same test rows.
Then `small_files.compare` trains FiBiNet++ on small built-in files with and
without FiBiNET's rules (`train.auto_seeds`, `train.auto_mlp_weight_decay`).
Prints a markdown page (`make bench-fibinetpp` saves it to
benchmarks/FIBINETPP.md) and writes the numbers to a JSON file beside it,
which notebook 5 reads.

    python benchmarks/fibinetpp.py [--rows N] [--seeds 3] [--small 3000 5000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from bench_layers import cpu_name  # the scripts beside this one
from small_files import compare

from fibinet_tutorial import train
from fibinet_tutorial.models import count_non_embedding_parameters

HERE = Path(__file__).resolve().parent
# key -> (title, model, switches of FiBiNETPlusPlus, what the row changes)
ABLATION = {
    "fibinet": (
        "FiBiNET",
        "fibinet",
        {},
        "the package's FiBiNET: SENet, a Hadamard bilinear layer on E and one on "
        "the SENet output V, wide part, MLP on F(F-1)d numbers",
    ),
    "norms": (
        "+ embedding norms",
        "fibinetpp",
        {"senet": "senet", "interaction": "bilinear", "wide": True},
        "categorical embeddings BatchNorm'd per dimension over batch x fields, "
        "numeric ones LayerNorm'd over d; the rest is FiBiNET",
    ),
    "senet_plus": (
        "+ SENet -> SENet+",
        "fibinetpp",
        {"interaction": "bilinear", "wide": True},
        "SENet+ (group mean/max squeeze, a weight per element, skip, LayerNorm) "
        "replaces SENet; the V branch keeps its Hadamard bilinear layer",
    ),
    "bilinear_plus": (
        "+ Bilinear -> Bilinear+ on E, V flattened",
        "fibinetpp",
        {"wide": True},
        "inner products of E's pairs projected to 50 numbers replace both "
        "bilinear layers; SENet+'s output goes to the MLP as it is "
        "(MLP input 50 + F d)",
    ),
    "fibinetpp": (
        "- wide part = FiBiNet++",
        "fibinetpp",
        {},
        "no wide part: the authors' FiBiNet++",
    ),
    "no_cat_norm": (
        "FiBiNet++ without the categorical BatchNorm",
        "fibinetpp",
        {"cat_norm": False},
        "FiBiNet++ with the categorical embeddings left as they are",
    ),
    "no_num_norm": (
        "FiBiNet++ without the numeric LayerNorm",
        "fibinetpp",
        {"num_norm": False},
        "FiBiNet++ with x v left as it is, so the numeric value's size reaches "
        "the model",
    ),
    "no_num_norm_wide": (
        "FiBiNet++ without the numeric LayerNorm, with a wide part",
        "fibinetpp",
        {"num_norm": False, "wide": True},
        "the row above plus a wide part, where each numeric value also enters "
        "linearly",
    ),
}
# The rows up to FiBiNet++ are the path, each compared with the row above;
# the rows after it change one switch of the row named here.
COMPARED_WITH = {
    "no_cat_norm": "fibinetpp",
    "no_num_norm": "fibinetpp",
    "no_num_norm_wide": "no_num_norm",
}


def compared_with(keys: list[str]) -> dict[str, str]:
    """Row -> the row it changes one thing of (the first row: none)."""
    return {
        key: COMPARED_WITH.get(key, before)
        for before, key in zip(keys, keys[1:])
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_row(key: str, prepared: dict, seeds: list[int], out_dir: Path) -> dict:
    """Train one ablation row from every seed; its mean, sd and per-seed numbers."""
    title, model, switches, definition = ABLATION[key]
    hparams = train.default_hparams() | switches
    runs = []
    for seed in seeds:
        run = train.train_one(
            model, prepared, hparams, out_dir / key, seed=seed, progress="none"
        )
        result = run["result"]
        one = getattr(run["net"], "members", [run["net"]])[0]  # a seed ensemble's
        result["non_embedding_parameters"] = count_non_embedding_parameters(one)
        runs.append(result)
    row = {"title": title, "model": model, "switches": switches}
    row["definition"] = definition
    for metric in ("test_auc", "test_logloss"):
        m, sd = mean_sd([r[metric] for r in runs])
        row[f"{metric}_mean"], row[f"{metric}_sd"] = m, sd
    row["seconds_per_epoch"] = statistics.mean(r["seconds_per_epoch"] for r in runs)
    row["epochs_run"] = statistics.mean(r["epochs_run"] for r in runs)
    row["non_embedding_parameters"] = runs[0]["non_embedding_parameters"]
    row["precision"] = runs[0]["precision"]
    row["seeds"] = [
        {k: r[k] for k in ("test_auc", "test_logloss", "epochs_run")} | {"seed": s}
        for s, r in zip(seeds, runs)
    ]
    return row


def page(report: dict) -> str:
    """The markdown page for a report (see `main`)."""
    d = report["data"]
    lines = [
        "## From FiBiNET to FiBiNet++, one change at a time",
        "",
        f"Measured {report['date']} by `benchmarks/fibinetpp.py` (`make "
        f"bench-fibinetpp`): the built-in data, {d['rows']:,} rows split "
        f"{d['n_train']:,} / {d['n_val']:,} / {d['n_test']:,} (train / val / test); "
        f"every row trained with `train.default_hparams()` from seeds "
        f"{report['seeds']} ({report['precision']} training steps, "
        f"{report['threads']} threads, {report['cpu']}); test metrics as mean ± sd "
        "over the seeds. Down to FiBiNet++, each row makes one change to the row "
        "above it; the rows after it are FiBiNet++ with the changes their titles "
        "name (`models.FiBiNETPlusPlus`'s switches). Non-embedding parameters: all but "
        "the per-category tables, with Criteo's 39 fields (13 numeric, 26 "
        "categorical); seconds per epoch: mean over the seeds' epochs.",
        "",
        "| row | test AUC | test log loss | non-embedding parameters | s / epoch "
        "| epochs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"].values():
        lines.append(
            f"| {row['title']} | {row['test_auc_mean']:.4f} ± {row['test_auc_sd']:.4f}"
            f" | {row['test_logloss_mean']:.4f} ± {row['test_logloss_sd']:.4f} | "
            f"{row['non_embedding_parameters']:,} | {row['seconds_per_epoch']:.1f} | "
            f"{row['epochs_run']:.1f} |"
        )
    oracle = report["oracle"]
    lines += [
        f"| the oracle (the click model itself) | {oracle['test_auc']:.4f} | "
        f"{oracle['test_logloss']:.4f} | | | |",
        "",
        "What each row changes:",
        "",
    ]
    rows = report["rows"]
    lines += [f"- **{r['title']}**: {r['definition']}." for r in rows.values()]
    changes = [
        (r, rows[r["compared_with"]]) for r in rows.values() if "compared_with" in r
    ]
    if changes:
        lines += ["", "What each change does to the mean test AUC:", ""]
        lines += [
            f"- {r['title']} vs {base['title']}: "
            f"{r['test_auc_mean'] - base['test_auc_mean']:+.4f} (sd up to "
            f"{max(r['test_auc_sd'], base['test_auc_sd']):.4f})"
            for r, base in changes
        ]
    if "fibinet" in rows and "fibinetpp" in rows:
        auc = rows["fibinetpp"]["test_auc_mean"]
        lines += [
            "",
            f"FiBiNet++ minus FiBiNET, mean test AUC: "
            f"{auc - rows['fibinet']['test_auc_mean']:+.4f}; FiBiNet++ minus the "
            f"oracle: {auc - oracle['test_auc']:+.4f}.",
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="built-in rows (default: its size)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(ABLATION))
    parser.add_argument(
        "--small", type=int, nargs="*", default=[3_000, 5_000], help="file sizes"
    )
    parser.add_argument("--json", default=str(HERE / "fibinetpp.json"))
    parser.add_argument("--out", default="runs/bench_fibinetpp")
    parser.add_argument(
        "--page", action="store_true", help="only print the page of --json again"
    )
    args = parser.parse_args()
    if args.page:
        report = json.loads(Path(args.json).read_text())
        print(page(report) + report.get("small_files_page", ""), end="")
        return
    torch.set_num_threads(2)  # train_one sets the rest
    out_dir = Path(args.out)
    prepared = train.prepare_data(rows=args.rows, data_dir=out_dir / "data")
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    keys = args.only or list(ABLATION)
    rows = {key: run_row(key, prepared, seeds, out_dir) for key in keys}
    for key, base in compared_with(keys).items():
        rows[key]["compared_with"] = base
    report = {
        "date": str(date.today()),
        "seeds": seeds,
        "threads": 2,
        "cpu": cpu_name(),
        "precision": next(iter(rows.values()))["precision"],
        "hparams": train.default_hparams(),
        "data": {
            "rows": sum(len(prepared[f"ds_{p}"]) for p in ("train", "val", "test")),
            **{f"n_{p}": len(prepared[f"ds_{p}"]) for p in ("train", "val", "test")},
        },
        "oracle": {
            "test_auc": prepared["oracle"]["test"]["auc"],
            "test_logloss": prepared["oracle"]["test"]["logloss"],
        },
        "rows": rows,
    }
    text = page(report)
    if args.small:
        small = [
            "",
            "## Small files: do FiBiNET's rules apply to FiBiNet++?",
            "",
            "FiBiNET trains with two rules on small files (`train.auto_seeds`: "
            "five seeds averaged below 6,000 training rows; "
            "`train.auto_mlp_weight_decay`: a strong MLP weight decay, tuned "
            "for its 11,856-wide MLP input). FiBiNet++ on built-in files of "
            f"{', '.join(f'{n:,}' for n in args.small)} rows (three samples "
            "each, 90/10 train/validation), every model scored on the same "
            "50,000 held-out rows (`benchmarks/small_files.py`); columns: "
            "LR; FiBiNet++ with the defaults (FiBiNET's two rules); one seed "
            "(the MLP decay kept); the defaults' seeds without the MLP decay.",
            "",
        ]
        report["small_files"] = compare("fibinetpp", args.small, small.append)
        report["small_files_page"] = "\n".join(small) + "\n"
        text += report["small_files_page"]
    report["minutes"] = (time.perf_counter() - start) / 60
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
