"""The main job: prepare the data, train each requested model, compare, save.

`prepare_data` reads, splits and preprocesses (in memory or streamed);
`train_one` trains one model (or a seed ensemble) and scores it; `run` is what
the command line (`train.cli`) calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data as D
from ..fast import flush_denormals, keep_freed_memory
from ..models import SeedEnsemble
from .checkpoints import build_model, model_config, save_model
from .evaluation import (
    comparison_table,
    eval_loader,
    mean_field_importance,
    summarize,
)
from .hparams import default_hparams, resolve_hparams
from .trainer import CTRKerasModel, weights_digest


def prepare_data(
    data=None,
    test=None,
    data_dir=None,
    rows: int | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    min_count: int = 10,
    numeric: str = "log1p",
    streamed_dir=None,
) -> dict:
    """Read, split (seeded, at random) and preprocess; fit on training rows only.

    data=None uses the built-in synthetic data (written once to data_dir).
    With `test`, that file is the test set and `data` splits into train/val.
    streamed_dir: preprocess in bounded memory into memory-mapped arrays there.
    Returns datasets ds_train/ds_val/ds_test, the preprocessor, and for the
    built-in data the generator (`truth`) and the oracle's test metrics.
    """
    from .. import synthetic

    truth = None
    if data is None:
        n = rows or synthetic.DEFAULT_ROWS
        data = synthetic.ensure_default_data(data_dir or "data", n_rows=n)
        truth = synthetic.SyntheticCriteo(synthetic.DEFAULT_SEED)
        rows = None
    if test is not None:
        val_frac, test_frac = val_frac / (1 - test_frac), 0.0
    out = {"data": str(data), "truth": truth}
    if streamed_dir is not None:
        arrays = D.preprocess_to_arrays(
            data,
            streamed_dir,
            min_count=min_count,
            numeric=numeric,
            val_frac=val_frac,
            test_frac=test_frac,
            split_seed=seed,
            nrows=rows,
        )
        pre = arrays.preprocessor
        out.update({f"ds_{p}": arrays.dataset(p) for p in ("train", "val", "test")})
        df = D.read_criteo(data, nrows=rows) if truth is not None else None
        split = np.asarray(arrays.split)
    else:
        df = D.read_criteo(data, nrows=rows)
        split = D.split_codes(0, len(df), val_frac, test_frac, seed)
        pre = D.CriteoPreprocessor(min_count=min_count, numeric=numeric)
        pre.fit(df[split == 0])
        for k, part in enumerate(("train", "val", "test")):
            out[f"ds_{part}"] = D.CTRDataset.from_frame(df[split == k], pre)
    if test is not None:
        out["ds_test"] = D.CTRDataset.from_frame(D.read_criteo(test), pre)
    out["preprocessor"] = pre
    for part in ("train", "val", "test"):
        if len(out[f"ds_{part}"]) == 0:
            raise ValueError(
                f"{data}: the {part} split is empty; the file needs more rows "
                f"(val_frac={val_frac:g}, test_frac={test_frac:g})"
            )
    if truth is not None:
        out["oracle"] = {
            part: truth.oracle_metrics(df[split == k])
            for k, part in enumerate(("train", "val", "test"))
        }
    return out


def train_one(
    name: str,
    prepared: dict,
    hparams: dict,
    out_dir,
    seed: int = 0,
    progress: str = "bar",
    callbacks=(),
) -> dict:
    """Train one model with CTRKerasModel and evaluate it on val and test.

    With hparams "seeds" k > 1 (by default on small files, `auto_seeds`), k
    copies train from seeds seed, seed+1, ... and the result is their
    SeedEnsemble; the history then has one block of epochs per copy (column
    "member"). callbacks: extra torchkeras callbacks for every copy's `fit`.
    """
    config = model_config(name, prepared["preprocessor"], hparams)
    hp = resolve_hparams(hparams, len(prepared["ds_train"]), name)
    members = hp["seeds"]
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"seeds must be a whole number >= 1, got {members!r}")
    dl_val, dl_test = eval_loader(prepared["ds_val"]), eval_loader(prepared["ds_test"])
    nets, histories = [], []
    for k in range(members):
        torch.manual_seed(seed + k)
        model = CTRKerasModel(
            build_model(config),
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            mlp_weight_decay=hp["mlp_weight_decay"],
        )
        dl_train = D.make_loader(
            prepared["ds_train"], hp["batch_size"], True, seed=seed + k
        )
        ckpt = Path(out_dir) / (f"{name}.pt" if k == 0 else f"{name}.seed{seed + k}.pt")
        history = model.fit(
            dl_train,
            dl_val,
            epochs=hp["epochs"],
            patience=hp["patience"],
            monitor=hp["monitor"],
            ckpt_path=ckpt,
            progress=progress,
            precision=hp["precision"],
            callbacks=list(callbacks),
        )
        nets.append(model.net)
        histories.append(history.assign(member=k) if members > 1 else history)
    net, history = nets[0], histories[0]
    if members > 1:
        config["members"] = members
        net, history = SeedEnsemble(nets), pd.concat(histories, ignore_index=True)
    result = summarize(name, net, history, dl_val, dl_test)
    result["precision"] = hp["precision"]
    result["seeds"] = members
    return {
        "result": result,
        "net": net,
        "config": config,
        "history": history,
        "model": model,
    }


def run(args) -> dict | None:
    """The main job: train the requested models, compare, save, plot.

    Returns the summary (None on the other processes of a multi-process run).
    """
    from accelerate import PartialState

    from .. import plots

    out_dir = Path(args.out)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    flush_denormals()
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # the main process writes the built-in data
        prepared = prepare_data(
            args.data,
            args.test,
            data_dir=args.data_dir,
            rows=args.rows,
            val_frac=args.val_frac,
            test_frac=args.test_frac,
            seed=args.seed,
            min_count=args.min_count,
            numeric=args.numeric,
            streamed_dir=out_dir / f"arrays{state.process_index}"
            if args.streamed
            else None,
        )
    hparams = {k: getattr(args, k) for k in default_hparams()}
    trained = {}
    for name in args.model:
        trained[name] = train_one(
            name, prepared, hparams, out_dir, args.seed, args.progress
        )
    first = trained[args.model[0]]
    acc = first["model"].accelerator
    rows = [t["result"] for t in trained.values()]
    if prepared["truth"] is not None:
        o = prepared["oracle"]
        rows.append(
            {
                "model": "oracle",
                "val_auc": o["val"]["auc"],
                "test_auc": o["test"]["auc"],
                "test_logloss": o["test"]["logloss"],
            }
        )
    summary = dict(first["result"])
    summary["data"] = prepared["data"]
    if prepared["truth"] is not None:
        summary["oracle_auc"] = prepared["oracle"]["test"]["auc"]
        summary["oracle_logloss"] = prepared["oracle"]["test"]["logloss"]
    summary["comparison"] = rows
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        digests = [weights_digest(t["net"]) for t in trained.values()]
        all_digests = gather_object([digests])
        summary["processes"] = acc.num_processes
        summary["ranks_identical"] = all(d == all_digests[0] for d in all_digests)
    if not acc.is_main_process:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared["preprocessor"].save(out_dir / "preprocessor.json")
    for name, t in trained.items():
        save_model(t["net"], t["config"], out_dir / f"{name}.pt")
        t["history"].to_csv(out_dir / f"history_{name}.csv", index=False)
    weights = strengths = None
    if "fibinet" in trained:
        net = trained["fibinet"]["net"]
        weights = mean_field_importance(net, eval_loader(prepared["ds_val"]))
        if prepared["truth"] is not None:
            strengths = plots.field_strengths(prepared["truth"])
    histories = {name: t["history"] for name, t in trained.items()}
    plots.save_run_figures(histories, out_dir, weights, strengths)
    print()
    print(comparison_table(rows).to_string(float_format=lambda v: f"{v:.4f}"))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary
