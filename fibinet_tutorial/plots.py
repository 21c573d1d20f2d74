"""Figures for the notebooks and the main job (matplotlib, made by code).

Not here: the metrics plotted (`metrics`, with `metrics.spearman` for SENet
versus the truth), SENet's mean weights
(`train.evaluation.mean_field_importance`), how strongly the known click model
uses each field (`synthetic.click_model.SyntheticCriteo.field_strengths`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch


def _axes(ax, figsize=(6, 3.5)):
    """Use the given axes, or a new figure's (no pyplot: works without a display)."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_history(
    history: pd.DataFrame, metric: str = "loss", ax=None, label="", color=None
):
    """Training (dashed) and validation (solid) curves of one metric over epochs.

    A seed ensemble's history (column "member") is drawn for its first copy.
    """
    fig, ax = _axes(ax)
    if "member" in history:
        seeds = history["member"].nunique()
        history = history[history["member"] == 0]
        label = f"{label} (seed 1 of {seeds})".strip()
    for stage, style in (("train", "o--"), ("val", "o-")):
        key = f"{stage}_{metric}"
        if key in history:
            name = f"{label} {stage}".strip()
            ax.plot(
                history["epoch"],
                history[key],
                style,
                label=name,
                markersize=4,
                color=color,
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: training and validation")
    ax.legend(fontsize=8)
    return fig


def plot_learning_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Log loss and AUC per epoch for several models, side by side.

    One colour per model, training dashed and validation solid; the exact log
    loss where the history has it (else the batch-mean loss). The AUC axis is
    zoomed to the validation curves after their first epoch, where the models
    differ.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for k, (name, history) in enumerate(histories.items()):
        loss = "logloss" if "val_logloss" in history else "loss"
        for ax, metric in zip(axes, (loss, "auc")):
            plot_history(history, metric, ax=ax, label=name, color=f"C{k % 10}")
    later = np.concatenate(
        [h.loc[h["epoch"] > 1, "val_auc"].to_numpy() for h in histories.values()]
    )
    if later.size:
        low, high = float(later.min()), float(later.max())
        pad = max(high - low, 1e-3) * 0.5
        axes[1].set_ylim(low - pad, high + pad)
        axes[1].set_title("auc (zoomed to the validation curves)")
    return fig


def plot_field_importance(
    weights: pd.Series,
    strengths: dict[str, float] | None = None,
    ax=None,
    ylabel: str = "mean SENet weight",
) -> Figure:
    """SENet's mean weight per field; bars coloured by the known truth if given.

    strengths: field -> how much the true click model uses it (0 = pure noise).
    """
    fig, ax = _axes(ax, figsize=(11, 3.5))
    fields = list(weights.index)
    colors = "tab:blue"
    if strengths is not None:
        colors = [
            "tab:orange" if strengths.get(f, 0) > 0 else "tab:gray" for f in fields
        ]
    ax.bar(range(len(fields)), weights.to_numpy(), color=colors)
    ax.set_xticks(range(len(fields)), fields, rotation=90, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title("SENet's mean weight per field (a learned gate, not importance)")
    if strengths is not None:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(color="tab:orange", label="informative in the true model"),
                Patch(color="tab:gray", label="pure noise in the true model"),
            ],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),  # beside the bars, never over them
        )
    return fig


def plot_parameter_counts(counts: pd.DataFrame, ax=None) -> Figure:
    """Bar chart (log scale) of parameter counts, one bar per row of `counts`."""
    fig, ax = _axes(ax, figsize=(7, 3.5))
    ax.barh(counts.index, counts.iloc[:, 0], color="tab:blue")
    ax.set_xscale("log")
    # start the axis a decade below the smallest bar, not just under it
    ax.set_xlim(left=10 ** np.floor(np.log10(counts.iloc[:, 0].min()) - 1))
    ax.set_xlabel(counts.columns[0])
    ax.invert_yaxis()
    for i, v in enumerate(counts.iloc[:, 0]):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    return fig


def _box(ax, x, y, w, h, text, color):
    """A rounded box of w x h centred at (x, y), with text: architecture figures."""
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.08",
            fc=color,
            ec="black",
            lw=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, x0, y0, x1, y1):
    """An arrow from (x0, y0) to (x1, y1): architecture figures."""
    ax.annotate(
        "",
        (x1, y1),
        (x0, y0),
        arrowprops=dict(arrowstyle="->", lw=0.9, color="black"),
    )


def _architecture_axes(ax, figsize, height: float):
    """Frameless axes 10 wide and `height` tall for an architecture figure, and
    the box and arrow drawers bound to them: (fig, ax, box, arrow)."""
    fig, ax = _axes(ax, figsize=figsize)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax, partial(_box, ax), partial(_arrow, ax)


def draw_fibinet(ax=None) -> Figure:
    """The FiBiNET architecture as boxes and arrows, bottom (input) to top."""
    fig, ax, box, arrow = _architecture_axes(ax, (8, 6.5), 10.6)

    box(
        5,
        0.5,
        8.6,
        0.6,
        "inputs: numeric x_num [B, 13], categorical x_cat [B, 26]",
        "#eeeeee",
    )
    box(1.5, 2.2, 2.4, 0.8, "wide part\n(first order)", "#ffe4c4")
    box(6, 2.2, 5.4, 0.8, "embeddings E  [B, F, d]", "#cfe2f3")
    box(7.8, 4.0, 2.6, 0.8, "SENet\n(squeeze, excite)", "#d9ead3")
    box(4.2, 5.7, 2.8, 0.8, "bilinear(E)\n[B, F(F-1)/2, d]", "#fff2cc")
    box(7.8, 5.7, 2.8, 0.8, "bilinear(V)\n[B, F(F-1)/2, d]", "#fff2cc")
    box(6, 7.3, 5.4, 0.7, "concatenate, flatten: [B, F(F-1) d]", "#eeeeee")
    box(6, 8.5, 3.0, 0.7, "MLP", "#f4cccc")
    box(3.5, 9.8, 3.4, 0.6, "sum -> sigmoid -> p(click)", "#eeeeee")
    arrow(2.5, 0.8, 1.5, 1.8)
    arrow(6, 0.8, 6, 1.8)
    arrow(5.2, 2.6, 4.2, 5.3)
    arrow(7.2, 2.6, 7.8, 3.6)
    ax.text(7.9, 4.85, "V = E re-weighted", fontsize=7.5, ha="left")
    arrow(7.8, 4.4, 7.8, 5.3)
    arrow(4.2, 6.1, 5.2, 6.95)
    arrow(7.8, 6.1, 6.8, 6.95)
    arrow(6, 7.65, 6, 8.15)
    arrow(5.5, 8.85, 4.2, 9.5)
    arrow(1.5, 2.6, 2.8, 9.5)
    idea = dict(fontsize=8, color="#a0522d", style="italic")
    ax.text(0.1, 6.0, "high/low fusion\n(wide + deep)", **idea)
    ax.text(9.3, 4.0, "dynamic\nadaptation", ha="left", va="center", **idea)
    ax.text(6.0, 6.45, "weight sharing", ha="center", **idea)
    return fig


def draw_deepfm(ax=None) -> Figure:
    """The DeepFM architecture as boxes and arrows, bottom (input) to top.

    The FM part (wide part + FM term) and the deep part (MLP) read one shared
    embedding table; their outputs are summed into the logit.
    """
    fig, ax, box, arrow = _architecture_axes(ax, (8, 4.6), 7.0)
    inputs = "fields: numeric x_num [B, 13], categorical x_cat [B, 26]"
    box(5, 0.5, 8.6, 0.6, inputs, "#eeeeee")
    box(1.5, 2.2, 2.4, 0.8, "wide part\n(first order) [B, 1]", "#ffe4c4")
    box(6, 2.2, 5.4, 0.8, "embeddings E  [B, F, d]\none table, shared", "#cfe2f3")
    fm_text = "FM term [B, 1]\nsum over pairs i < j\nof <e_i, e_j>"
    box(4.3, 4.3, 3.0, 1.0, fm_text, "#fff2cc")
    box(7.9, 4.3, 3.0, 1.0, "MLP on flatten(E)\n[B, F d] -> [B, 1]", "#f4cccc")
    box(4.6, 6.3, 3.6, 0.6, "sum -> sigmoid -> p(click)", "#eeeeee")
    edges = {  # (x0, y0, x1, y1) of each arrow
        "fields -> wide part": (2.5, 0.8, 1.5, 1.8),
        "fields -> embeddings": (6, 0.8, 6, 1.8),
        "embeddings -> FM term": (5.0, 2.6, 4.3, 3.7),
        "embeddings -> MLP": (7.0, 2.6, 7.9, 3.7),
        "wide part -> sum": (1.5, 2.6, 3.4, 6.0),
        "FM term -> sum": (4.3, 4.9, 4.5, 6.0),
        "MLP -> sum": (7.9, 4.9, 5.8, 6.0),
    }
    for x0, y0, x1, y1 in edges.values():
        arrow(x0, y0, x1, y1)
    part = dict(fontsize=8, color="#a0522d", style="italic")
    ax.text(0.2, 4.3, "FM part:\nwide part\n+ FM term", va="center", **part)
    ax.text(9.5, 4.3, "deep\npart", va="center", **part)
    return fig


def plot_test_scores(table: pd.DataFrame) -> Figure:
    """Test AUC and log loss per model (dots) against the oracle (dashed line).

    table: one row per model and one named "oracle", with columns test_auc and
    test_logloss (`train.comparison_table`). The axes are zoomed to the
    scores, so they show dots, not bars that would start at an arbitrary value.
    """
    fig = Figure(figsize=(10, 0.45 * len(table) + 1.4), layout="constrained")
    models = table.drop(index="oracle")
    y = np.arange(len(models))
    for ax, column, better in zip(
        fig.subplots(1, 2), ("test_auc", "test_logloss"), ("higher", "lower")
    ):
        values = models[column].to_numpy(dtype=float)
        oracle = float(table.loc["oracle", column])
        ax.plot(values, y, "o", color="tab:blue")
        for yk, v in zip(y, values):
            ax.annotate(
                f"{v:.4f}",
                (v, yk),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.axvline(oracle, color="black", ls="--", lw=1, label=f"oracle {oracle:.4f}")
        low, high = min(values.min(), oracle), max(values.max(), oracle)
        ax.set_xlim(low - 0.15 * (high - low), high + 0.15 * (high - low))
        ax.set_ylim(len(models) - 0.4, -0.6)  # first model on top
        ax.set_yticks(y, models.index)
        ax.set_xlabel(f"{column.replace('_', ' ')} ({better} is better)")
        ax.legend(fontsize=8, loc="lower right")
    return fig


def save_run_figures(
    histories: dict[str, pd.DataFrame],
    out_dir,
    weights: pd.Series | None = None,
    strengths: dict[str, float] | None = None,
) -> list[Path]:
    """The main job's figures: learning curves; SENet weights (vs the truth)."""
    out_dir = Path(out_dir)
    paths = [out_dir / "learning_curves.png"]
    plot_learning_curves(histories).savefig(paths[0], dpi=110)
    if weights is not None:
        paths.append(out_dir / "field_importance.png")
        plot_field_importance(weights, strengths).savefig(paths[-1], dpi=110)
    return paths


def plot_parameter_comparison(counts: pd.DataFrame, ax=None) -> Figure:
    """Grouped bars (log scale): a group per row of `counts`, a bar per column.

    counts: parts x models, e.g. FiBiNET's and DeepFM's parameters per part.
    A zero (a part that model lacks) gets no bar rather than a bar at 1.
    """
    fig, ax = _axes(ax, figsize=(8, 0.55 * len(counts) + 1.2))
    n = len(counts.columns)
    height = 0.8 / n
    for k, column in enumerate(counts.columns):
        values = counts[column].to_numpy(dtype=float)
        y = np.arange(len(counts)) + (k - (n - 1) / 2) * height
        keep = values > 0
        ax.barh(y[keep], values[keep], height=height, label=column)
        for yk, v in zip(y[keep], values[keep]):
            ax.text(v, yk, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(counts)), counts.index)
    ax.set_xscale("log")
    ax.set_xlim(right=counts.to_numpy().max() * 20)  # room for the labels
    ax.set_xlabel("parameters (log scale)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_field_weights(
    weights, fields: list[str], groups=None, group_names=None, rows_per_group=20
) -> Figure:
    """SENet's weights per sample (heatmap) and their mean per field, by group.

    weights: [N, F] (one row per sample); fields: F names; groups: [N] integer
    labels (e.g. the value of one field) or None. The heatmap shows the first
    `rows_per_group` samples of each group, the bars each group's mean.
    """
    weights = np.asarray(weights, dtype=float)
    groups = np.zeros(len(weights), int) if groups is None else np.asarray(groups)
    labels = np.unique(groups)
    names = group_names or [str(g) for g in labels]
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_map, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.3])
    rows = [weights[groups == g][:rows_per_group] for g in labels]
    image = ax_map.imshow(np.concatenate(rows), aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax_map, label="SENet weight")
    edges = np.cumsum([len(r) for r in rows])[:-1]
    for edge in edges:
        ax_map.axhline(edge - 0.5, color="white", lw=2)
    starts = np.concatenate([[0], edges])
    centers = starts + np.array([len(r) for r in rows]) / 2 - 0.5
    ax_map.set_yticks(centers, names)
    ax_map.set_xticks(range(len(fields)), fields, rotation=45, ha="right")
    ax_map.set_title("one row per sample")
    width = 0.8 / len(labels)
    for k, (g, name) in enumerate(zip(labels, names)):
        x = np.arange(len(fields)) + (k - (len(labels) - 1) / 2) * width
        ax_bar.bar(x, weights[groups == g].mean(axis=0), width=width, label=name)
    ax_bar.set_xticks(range(len(fields)), fields, rotation=45, ha="right")
    ax_bar.set_ylabel("mean SENet weight")
    ax_bar.set_title("mean weight per field")
    if len(labels) > 1:
        ax_bar.legend(fontsize=8)
    return fig


def plot_speedup(ms: pd.DataFrame, ax=None) -> Figure:
    """Grouped bars of milliseconds: a group per row of `ms`, a bar per column.

    ms: e.g. bilinear_type x ["loop", "fast"]; the first column's time divided
    by each other column's is written above that column's bar.
    """
    fig, ax = _axes(ax, figsize=(7, 3.5))
    n = len(ms.columns)
    width = 0.8 / n
    base = ms.iloc[:, 0].to_numpy(dtype=float)
    for k, column in enumerate(ms.columns):
        values = ms[column].to_numpy(dtype=float)
        x = np.arange(len(ms)) + (k - (n - 1) / 2) * width
        ax.bar(x, values, width=width, label=column)
        for xk, v, b in zip(x, values, base):
            text = f"{v:.0f} ms" if k == 0 else f"{v:.0f} ms\n{b / v:.1f}x faster"
            ax.text(xk, v, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(ms)), ms.index)
    ax.set_ylim(top=ms.to_numpy().max() * 1.35)  # room for the labels and legend
    ax.set_ylabel("milliseconds")
    ax.legend(fontsize=8, loc="upper right", ncol=n)
    return fig


def plot_reliability(
    y_true, probabilities: dict[str, np.ndarray], n_bins: int = 10, ax=None
) -> Figure:
    """Reliability diagram: mean predicted vs observed click rate, per model.

    probabilities: name -> predicted probabilities [N] for the labels y_true [N].
    Rows are grouped into n_bins bins of equal size by predicted probability
    (scikit-learn's `calibration_curve`, strategy "quantile"); a calibrated
    model's points lie on the diagonal.
    """
    from sklearn.calibration import calibration_curve

    fig, ax = _axes(ax, figsize=(5.5, 5))
    top = 0.0
    for k, (name, p) in enumerate(probabilities.items()):
        observed, predicted = calibration_curve(
            y_true, p, n_bins=n_bins, strategy="quantile"
        )
        ax.plot(predicted, observed, "o-", label=name, color=f"C{k % 10}", ms=4)
        top = max(top, predicted.max(), observed.max())
    top = min(1.0, top * 1.05)
    ax.plot([0, top], [0, top], ":", color="gray", label="calibrated")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("mean predicted click probability (per bin)")
    ax.set_ylabel("observed click rate (per bin)")
    ax.set_title(f"Reliability diagram ({n_bins} bins of equal size)")
    ax.legend(fontsize=8)
    return fig
