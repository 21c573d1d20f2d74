"""FiBiNET vs logistic regression on small files: the evidence behind
`train.auto_mlp_weight_decay` and `train.auto_seeds`.

For each size, three samples of the built-in data (different rows, different
seeds) are split 90/10 into train/validation; every model is scored on the
same 50,000 held-out rows, so the comparison is not lost in test-set noise.
Prints a markdown table: test AUC of LR; of FiBiNET with the defaults (the
size-dependent MLP weight decay, and below 6,000 training rows the average of
five seeds: `train.auto_seeds`); of one seed alone; and of one seed without the
MLP decay.

    python benchmarks/small_files.py --rows 3000 5000 10000 20000   (make bench-small)
    python benchmarks/small_files.py --model fibinetpp --rows 3000 5000
    (make bench-fibinetpp runs `compare("fibinetpp", ...)`: the rules for FiBiNet++)
"""

from __future__ import annotations

import argparse

import torch

from fibinet_tutorial import data, train
from fibinet_tutorial.synthetic import SyntheticCriteo

SAMPLES = 3


def variants(model: str = "fibinet") -> dict:
    """name -> (model, hyperparameter overrides); the first is LR."""
    title = train.MODEL_TITLES[model]
    # the defaults: 5 seeds averaged below 6,000 rows (train.auto_seeds)
    found = {"LR": ("lr", {}), title: (model, {})}
    found[f"{title}, one seed"] = (model, {"seeds": 1})
    if model == "fibinet":
        found[f"{title}, one seed, no MLP decay"] = (
            model,
            {"seeds": 1, "mlp_weight_decay": 0.0},
        )
        return found
    # another model: the defaults (FiBiNET's two rules) against one seed and
    # against the same seeds without the MLP decay
    found[f"{title}, no MLP decay"] = (
        model,
        {"seeds": train.auto_seeds, "mlp_weight_decay": 0.0},
    )
    return found


def compare(model: str, sizes: list[int], emit=print) -> dict:
    """Train every variant on every sample of every size; emit the markdown
    tables line by line and return {rows: {variant: minus LR per sample}}."""
    table = variants(model)
    gen = SyntheticCriteo()
    test = gen.sample(50_000, start=5_000_000)  # far from every sample below
    emit("| rows | sample | MLP decay | " + " | ".join(table) + " |")
    emit("|---:|---:|---:|" + "---:|" * len(table))
    diffs = {}  # rows -> variant -> the model minus LR, one per sample
    for n in sizes:
        for k in range(SAMPLES):
            df = gen.sample(n, start=k * 100_000)
            idx_train, idx_val, _ = data.train_val_test_split(n, 0.1, 0.0, seed=k)
            pre = data.CriteoPreprocessor().fit(df.iloc[idx_train])
            prepared = {
                "ds_train": data.CTRDataset.from_frame(df.iloc[idx_train], pre),
                "ds_val": data.CTRDataset.from_frame(df.iloc[idx_val], pre),
                "ds_test": data.CTRDataset.from_frame(test, pre),
                "preprocessor": pre,
            }
            decay = train.auto_mlp_weight_decay(len(idx_train))
            aucs, done = {}, {}  # done: resolved settings -> test AUC
            for name, (variant_model, overrides) in table.items():
                hp = train.default_hparams() | {  # a rule: apply it as FiBiNET's
                    h: v(len(idx_train)) if callable(v) else v
                    for h, v in overrides.items()
                }
                resolved = train.resolve_hparams(hp, len(idx_train), variant_model)
                key = (variant_model, str(resolved))
                if key not in done:  # e.g. "one seed" where the default is one seed
                    run = train.train_one(
                        variant_model,
                        prepared,
                        hp,
                        "runs/small_files",
                        seed=k,
                        progress="none",
                    )
                    done[key] = run["result"]["test_auc"]
                aucs[name] = done[key]
                if name != "LR":
                    minus_lr = aucs[name] - aucs["LR"]
                    diffs.setdefault(n, {}).setdefault(name, []).append(minus_lr)
            cells = " | ".join(f"{v:.4f}" for v in aucs.values())
            emit(f"| {n:,} | {k} | {decay:.3g} | {cells} |")
    emit("")
    emit(
        f"{train.MODEL_TITLES[model]} minus LR, mean over the samples "
        "(samples at or above LR):"
    )
    emit("")
    emit("| rows | " + " | ".join(list(table)[1:]) + " |")
    emit("|---:|" + "---:|" * (len(table) - 1))
    for n in sizes:
        cells = []
        for d in diffs[n].values():
            above = sum(v >= 0 for v in d)
            cells.append(f"{sum(d) / len(d):+.4f} ({above} of {len(d)})")
        emit(f"| {n:,} | " + " | ".join(cells) + " |")
    return diffs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = [3_000, 5_000, 10_000, 20_000]
    parser.add_argument("--rows", type=int, nargs="+", default=sizes)
    parser.add_argument("--model", default="fibinet", choices=["fibinet", "fibinetpp"])
    args = parser.parse_args()
    torch.set_num_threads(2)  # train_one sets the rest
    compare(args.model, args.rows, emit=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
