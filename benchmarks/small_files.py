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
"""

from __future__ import annotations

import argparse

import torch

from fibinet_tutorial import data, train
from fibinet_tutorial.fast import flush_denormals
from fibinet_tutorial.synthetic import SyntheticCriteo

SAMPLES = 3
VARIANTS = {  # name -> (model, hyperparameter overrides)
    "LR": ("lr", {}),
    "FiBiNET": ("fibinet", {}),  # the defaults: 5 seeds averaged below 6,000 rows
    "FiBiNET, one seed": ("fibinet", {"seeds": 1}),
    "FiBiNET, one seed, no MLP decay": (
        "fibinet",
        {"seeds": 1, "mlp_weight_decay": 0.0},
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = [3_000, 5_000, 10_000, 20_000]
    parser.add_argument("--rows", type=int, nargs="+", default=sizes)
    args = parser.parse_args()
    torch.set_num_threads(2)
    flush_denormals()
    gen = SyntheticCriteo()
    test = gen.sample(50_000, start=5_000_000)  # far from every sample below
    print("| rows | sample | MLP decay | " + " | ".join(VARIANTS) + " |")
    print("|---:|---:|---:|" + "---:|" * len(VARIANTS))
    diffs = {}  # (rows, variant) -> FiBiNET minus LR, one per sample
    for n in args.rows:
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
            for name, (model, overrides) in VARIANTS.items():
                hp = train.default_hparams() | overrides
                key = (model, str(train.resolve_hparams(hp, len(idx_train), model)))
                if key not in done:  # e.g. "one seed" where the default is one seed
                    run = train.train_one(
                        model, prepared, hp, "runs/small_files", seed=k, progress="none"
                    )
                    done[key] = run["result"]["test_auc"]
                aucs[name] = done[key]
                if name != "LR":
                    diffs.setdefault((n, name), []).append(aucs[name] - aucs["LR"])
            cells = " | ".join(f"{v:.4f}" for v in aucs.values())
            print(f"| {n:,} | {k} | {decay:.3g} | {cells} |", flush=True)
    print()
    print("FiBiNET minus LR, mean over the samples (samples at or above LR):")
    print()
    print("| rows | " + " | ".join(list(VARIANTS)[1:]) + " |")
    print("|---:|" + "---:|" * (len(VARIANTS) - 1))
    for n in args.rows:
        cells = []
        for name in list(VARIANTS)[1:]:
            d = diffs[(n, name)]
            above = sum(v >= 0 for v in d)
            cells.append(f"{sum(d) / len(d):+.4f} ({above} of {len(d)})")
        print(f"| {n:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
