"""The main job: prepare the data, train each requested model, compare, save.

`prepare_data` reads, splits and preprocesses (in memory or streamed);
`train_one` trains one model (or a seed ensemble) and scores it; `run` is what
the command line (`train.cli`) calls.

Not here: the training loop (`train.trainer`), the flags (`train.cli`), reading and
preprocessing (`data`), the scores and tables (`train.evaluation`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data as D
from ..data.schema import option
from ..fast import training_settings
from ..models import SeedEnsemble
from .checkpoints import build_model, model_config, save_model
from .evaluation import (
    comparison_table,
    eval_loader,
    mean_field_importance,
    summarize,
)
from .hparams import default_hparams, resolve_hparams
from .trainer import CTRKerasModel, training_device, weights_digest


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
    open_streamed: bool = False,
    labelled: bool | None = None,
) -> dict:
    """Read, split (seeded, at random) and preprocess; fit on training rows only.

    data=None uses the built-in synthetic data (written once to data_dir).
    With `test`, that file is the test set and `data` splits into train/val.
    streamed_dir: preprocess in bounded memory into memory-mapped arrays there
    (a `test` file too, into streamed_dir/test); without it, a file too big
    for memory raises `data.FileTooLargeError` before it is read.
    open_streamed: open the arrays that another process has just written to
    streamed_dir instead of preprocessing again (the other processes of an
    `accelerate launch`). labelled: as in `data.read_criteo` (None: detected).
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
        streamed = Path(streamed_dir)
        if open_streamed:
            arrays = D.load_arrays(streamed)
        else:
            arrays = D.preprocess_to_arrays(
                data,
                streamed,
                min_count=min_count,
                numeric=numeric,
                val_frac=val_frac,
                test_frac=test_frac,
                split_seed=seed,
                nrows=rows,
                labelled=labelled,
            )
        pre = arrays.preprocessor
        out.update({f"ds_{p}": arrays.dataset(p) for p in ("train", "val", "test")})
        df = D.read_criteo(data, nrows=rows) if truth is not None else None
        split = np.asarray(arrays.split)
        if test is not None:
            if open_streamed:
                tested = D.load_arrays(streamed / "test")
            else:  # the whole file, with the training rows' preprocessor
                tested = D.preprocess_to_arrays(
                    test,
                    streamed / "test",
                    val_frac=0.0,
                    test_frac=0.0,
                    preprocessor=pre,
                    labelled=labelled,
                )
            out["ds_test"] = tested.dataset("all")
    else:
        df = D.read_criteo(data, nrows=rows, labelled=labelled)
        split = D.split_codes(0, len(df), val_frac, test_frac, seed)
        pre = D.CriteoPreprocessor(min_count=min_count, numeric=numeric)
        pre.fit(df[split == 0])
        for k, part in enumerate(("train", "val", "test")):
            out[f"ds_{part}"] = D.CTRDataset.from_frame(df[split == k], pre)
        if test is not None:
            df_test = D.read_criteo(test, labelled=labelled)
            out["ds_test"] = D.CTRDataset.from_frame(df_test, pre)
    out["preprocessor"] = pre
    if out["ds_train"].y is None:
        raise ValueError(
            f"{data}: no label column (39 fields a line, Criteo's unlabelled "
            "test format); training needs labelled rows (40 fields)"
        )
    fracs = (
        option("val_frac=", "--val-frac ") + f"{val_frac:g}",
        option("test_frac=", "--test-frac ") + f"{test_frac:g}",
    )
    for part in ("train", "val", "test"):
        if len(out[f"ds_{part}"]) == 0:
            raise ValueError(
                f"{data}: the {part} split is empty; the file needs more rows "
                f"({', '.join(fracs)})"
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
    threads: int | None = None,
) -> dict:
    """Train one model with CTRKerasModel and evaluate it on val and test.

    With hparams "seeds" k > 1 (by default on small files, `auto_seeds`), k
    copies train from seeds seed, seed+1, ... and the result is their
    SeedEnsemble; the history then has one block of epochs per copy (column
    "member"). callbacks: extra torchkeras callbacks for every copy's `fit`.
    Training and evaluation run under `fast.training_settings` (threads: None
    keeps a number set with `torch.set_num_threads`, else
    `fast.default_threads()`), as `CTRKerasModel.fit` does.
    """
    with training_settings(training_device(), threads):
        return _train_one(name, prepared, hparams, out_dir, seed, progress, callbacks)


def _train_one(name, prepared, hparams, out_dir, seed, progress, callbacks) -> dict:
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
    state = PartialState(cpu=not torch.cuda.is_available())
    too_large = None if args.streamed else _too_large_for_memory(args, state)
    streamed = args.streamed or too_large is not None
    if too_large is not None and state.is_main_process:
        print(
            f"note: {too_large}: preprocessing it streamed into "
            f"{out_dir / 'arrays'} instead, as --streamed does",
            flush=True,
        )
    # the main process writes the built-in data or the streamed arrays first;
    # the others then read the same files
    with state.main_process_first():
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
            streamed_dir=out_dir / "arrays" if streamed else None,
            open_streamed=not state.is_main_process,
            labelled={"auto": None, "yes": True, "no": False}[args.labelled],
        )
    _warn_one_class_test(prepared["ds_test"], state)
    hparams = {k: getattr(args, k) for k in default_hparams()}
    trained = {}
    for name in args.model:
        trained[name] = train_one(
            name,
            prepared,
            hparams,
            out_dir,
            args.seed,
            args.progress,
            threads=args.threads,
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
            strengths = prepared["truth"].field_strengths()
    histories = {name: t["history"] for name, t in trained.items()}
    plots.save_run_figures(histories, out_dir, weights, strengths)
    print()
    print(comparison_table(rows).to_string(float_format=lambda v: f"{v:.4f}"))
    summary = strict_json(summary)
    (out_dir / "metrics.json").write_text(
        json.dumps(summary, indent=1, allow_nan=False)
    )
    return summary


def _too_large_for_memory(args, state) -> str | None:
    """Why the files of this run would not fit in memory, read by every
    process, or None if they fit. The main process decides for all (memory
    available moves between two readings)."""
    reason = None
    for path, rows in ((args.data, args.rows), (args.test, None)):
        try:
            if path is not None and reason is None:
                D.check_fits_in_memory(path, rows, state.num_processes)
        except D.FileTooLargeError as e:
            reason = str(e).split("; ")[0]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        reason = broadcast_object_list([reason])[0]
    return reason


def _warn_one_class_test(ds_test, state) -> None:
    counts = ds_test.label_counts()
    if counts is not None and not all(counts) and state.is_main_process:
        label = 0 if counts[0] else 1
        print(
            f"warning: all {len(ds_test):,} test rows have label {label}: "
            "the test AUC is undefined (null in the JSON)",
            file=sys.stderr,
            flush=True,
        )


def strict_json(obj):
    """obj with every NaN or infinite float replaced by None (JSON's null), so
    `json.dumps(..., allow_nan=False)` succeeds: strict parsers reject NaN."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj
