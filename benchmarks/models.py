"""Every model over several seeds, mean ± sd: `make bench-models`.

Each seed is one `make run --seed S`: the built-in data split with seed S, the
preprocessing fitted on that split's training rows, every model trained from
seed S with the CLI's defaults (`train.prepare_data`, `train.train_one`). So the
spread covers both the split and the initial weights. Prints a markdown page
(`make bench-models` saves it to benchmarks/MODELS.md) and writes the numbers to
benchmarks/models.json, which notebook 4 reads.

    python benchmarks/models.py [--models fibinet deepfm lr] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from datetime import date
from pathlib import Path

import torch

from fibinet_tutorial import train
from fibinet_tutorial.models import count_non_embedding_parameters

JSON = Path(__file__).with_name("models.json")


def _sd(values) -> float:
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_seeds(runs: list[dict]) -> dict:
    """One model's results over seeds -> means, sds and the per-seed rows.

    Each run may carry the oracle's test AUC on its split ("oracle_test_auc"):
    then the gap to it, paired split by split, is summarized too.
    """

    def sd(key):
        return _sd(r[key] for r in runs)

    def mean(key):
        return statistics.mean(r[key] for r in runs)

    gaps = [
        r["oracle_test_auc"] - r["test_auc"] for r in runs if "oracle_test_auc" in r
    ]
    paired = {}
    if len(gaps) == len(runs):
        paired = {
            "auc_below_oracle_mean": statistics.mean(gaps),
            "auc_below_oracle_sd": _sd(gaps),
        }
    return paired | {
        "test_auc_mean": mean("test_auc"),
        "test_auc_sd": sd("test_auc"),
        "test_logloss_mean": mean("test_logloss"),
        "test_logloss_sd": sd("test_logloss"),
        "val_auc_mean": mean("val_auc"),
        "epochs_mean": mean("epochs_run"),
        "seconds_per_epoch": mean("seconds_per_epoch"),
        "non_embedding_parameters": runs[0]["non_embedding_parameters"],
        "parameters": runs[0]["parameters"],
        "precision": runs[0]["precision"],
        "per_seed": runs,
    }


def page(results: dict) -> str:
    """The markdown page of a results dict (what models.json holds)."""
    oracle, models = results["oracle"], results["models"]
    lines = [
        "## Every model over several seeds",
        "",
        f"Measured {results['date']} by `benchmarks/models.py` (`make bench-models`): "
        f"the built-in data ({results['data']}, {results['rows']:,} rows), "
        f"`make run`'s settings (the CLI's defaults: at most "
        f"{results['hparams']['epochs']} epochs, patience "
        f"{results['hparams']['patience']}, early stopping on "
        f"`{results['hparams']['monitor']}`), training in "
        f"{results['precision']}, torch {results['torch']}, {results['machine']}. "
        f"Seeds {', '.join(map(str, results['seeds']))}: seed S splits the rows "
        "80/10/10 and initialises the weights, as `make run --seed S` does; mean ± sd "
        "over the seeds. The numbers live in benchmarks/models.json (notebook 4 "
        "reads them).",
        "",
        'Where `precision="auto"` picks float32 (CPUs without AMX), training runs '
        "in float32 instead of bf16: expect the last digits to differ, and other "
        "times per epoch.",
        "",
        "Most of the spread of the test scores comes from the split: the oracle's own "
        "test AUC moves with it. Differences measured on the same split, seed by "
        "seed, are steadier: the column *below the oracle* and the pairs after the "
        "table.",
        "",
        "| model | test AUC | test log loss | below the oracle's AUC | epochs | "
        "s / epoch | non-embedding parameters | parameters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    # best first, so that each pair below is a step down the table
    names = sorted(models, key=lambda n: -models[n]["test_auc_mean"])
    for name in names:
        m = models[name]
        lines.append(
            f"| {train.MODEL_TITLES.get(name, name)} "
            f"| {m['test_auc_mean']:.4f} ± {m['test_auc_sd']:.4f} "
            f"| {m['test_logloss_mean']:.4f} ± {m['test_logloss_sd']:.4f} "
            f"| {m['auc_below_oracle_mean']:.4f} ± {m['auc_below_oracle_sd']:.4f} "
            f"| {m['epochs_mean']:.1f} | {m['seconds_per_epoch']:.1f} "
            f"| {m['non_embedding_parameters']:,} | {m['parameters']:,} |"
        )
    lines.append(
        f"| oracle (the true probabilities) "
        f"| {oracle['test_auc']:.4f} ± {oracle['test_auc_sd']:.4f} "
        f"| {oracle['test_logloss']:.4f} ± {oracle['test_logloss_sd']:.4f} "
        "| 0 | | | | |"
    )
    lines += ["", "Test AUC differences on the same split (mean ± sd over seeds):", ""]
    for a, b in zip(names, names[1:]):
        diffs = [
            ra["test_auc"] - rb["test_auc"]
            for ra, rb in zip(models[a]["per_seed"], models[b]["per_seed"])
        ]
        lines.append(
            f"- {train.MODEL_TITLES.get(a, a)} − {train.MODEL_TITLES.get(b, b)}: "
            f"{statistics.mean(diffs):+.4f} ± {_sd(diffs):.4f} "
            f"({', '.join(f'{d:+.4f}' for d in diffs)})"
        )
    lines += ["", "Per seed (test AUC / test log loss / epochs):", ""]
    for name in names:
        m = models[name]
        cells = [
            f"seed {r['seed']}: {r['test_auc']:.4f} / {r['test_logloss']:.4f} / "
            f"{r['epochs_run']}"
            for r in m["per_seed"]
        ]
        lines.append(f"- {train.MODEL_TITLES.get(name, name)}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(train.MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=JSON)
    parser.add_argument(
        "--page", action="store_true", help="only print the page of --json again"
    )
    args = parser.parse_args()
    if args.page:
        print(page(json.loads(args.json.read_text())))
        return
    unknown = sorted(set(args.models) - set(train.MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(train.MODELS)}")
    torch.set_num_threads(args.threads)  # train_one sets the rest
    hparams = train.default_hparams()
    runs = {name: [] for name in args.models}
    oracles = []
    for seed in args.seeds:
        prepared = train.prepare_data(data_dir="data", seed=seed)
        oracle = prepared["oracle"]["test"]
        oracles.append(
            {"seed": seed, "auc": oracle["auc"], "logloss": oracle["logloss"]}
        )
        for name in args.models:
            run = train.train_one(
                name, prepared, hparams, "runs/models", seed=seed, progress="none"
            )
            result = dict(run["result"], seed=seed, oracle_test_auc=oracle["auc"])
            result["non_embedding_parameters"] = count_non_embedding_parameters(
                run["net"]
            )
            runs[name].append(result)

    results = {
        "models": {name: summarize_seeds(r) for name, r in runs.items()},
        "oracle": {
            "test_auc": statistics.mean(o["auc"] for o in oracles),
            "test_auc_sd": _sd(o["auc"] for o in oracles),
            "test_logloss": statistics.mean(o["logloss"] for o in oracles),
            "test_logloss_sd": _sd(o["logloss"] for o in oracles),
            "per_seed": oracles,
        },
        "seeds": args.seeds,
        "data": prepared["data"],
        "rows": sum(len(prepared[f"ds_{p}"]) for p in ("train", "val", "test")),
        "hparams": hparams,
        "precision": runs[args.models[0]][0]["precision"],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "date": str(date.today()),
    }
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(page(results))


if __name__ == "__main__":
    main()
