"""Study figures (seaborn): per-class recall, complexity, learning curves, paired differences."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator, StrMethodFormatter
from sklearn.calibration import calibration_curve

from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import CALIBRATION_BINS
from ecgkeras.files import atomic_write
from ecgkeras.report.formatting import LABELS, for_people
from ecgkeras.report.tables import ordered_runs, run_labels
from ecgkeras.runs.record import RunRecord
from ecgkeras.training import MONITOR


def save_figure(fig: plt.Figure, out_dir: str | Path, stem: str, dpi: int = 150) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        atomic_write(path, lambda handle, fmt=path.suffix[1:]: fig.savefig(handle, format=fmt, dpi=dpi,
                                                                           bbox_inches="tight"))
    return paths


def _class_labels(recall: pd.DataFrame) -> list[str]:
    return [f"{name} (n={support})" for name, support in zip(recall.index, recall["support"])]


def plot_recall_heatmap(recall: pd.DataFrame, title: str = "Per-class recall") -> plt.Figure:
    """Classes x architectures heatmap of a `per_class_recall` table, class support in the labels."""
    values = recall.drop(columns="support").set_axis(_class_labels(recall))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * values.shape[1] + 3), max(4.0, 0.38 * len(values) + 1.5)))
    sns.heatmap(values, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", annot_kws={"size": 8},
                cbar_kws={"label": "recall"}, ax=ax)
    ax.set_xlabel("architecture")
    ax.set_ylabel("class (test support)")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=40, ha="right")
    fig.tight_layout()
    return fig


def plot_recall_bars(recall: pd.DataFrame, title: str = "Per-class recall by architecture") -> plt.Figure:
    """Grouped bars of a `per_class_recall` table: one group per class, one bar per architecture."""
    architectures = [c for c in recall.columns if c != "support"]
    labels = _class_labels(recall)
    long = (recall[architectures].set_axis(labels).rename_axis("class").reset_index()
            .melt(id_vars="class", var_name="architecture", value_name="recall"))
    fig, ax = plt.subplots(figsize=(min(max(8.0, 0.12 * len(long) + 3), 26.0), 4.8))
    sns.barplot(long, x="class", y="recall", hue="architecture", order=labels, hue_order=architectures,
                errorbar=None, ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("class (test support)")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def plot_complexity(summary: pd.DataFrame, title: str = "Macro-AUPRC against model complexity") -> plt.Figure:
    """Macro-AUPRC of a `summary_table` against parameters and seconds per epoch (seed std as bars)."""
    data = for_people(summary).reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = (("n_parameters", None, "parameters"),
              ("seconds_per_epoch", "seconds_per_epoch_std", "seconds per epoch"))
    for ax, (x, x_std, label) in zip(axes, panels):
        ax.errorbar(data[x], data["macro_auprc"], yerr=data["macro_auprc_std"].fillna(0),
                    xerr=data[x_std].fillna(0) if x_std else None, fmt="none", ecolor="grey", capsize=3, zorder=1)
        sns.scatterplot(data, x=x, y="macro_auprc", hue="architecture", s=60, legend=False, ax=ax, zorder=2)
        for _, row in data.iterrows():
            ax.annotate(row["architecture"], (row[x], row["macro_auprc"]), xytext=(4, 4),
                        textcoords="offset points", fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(MaxNLocator(nbins=5))  # long labels like 150,000 need few ticks
    axes[0].xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes[0].set_ylabel("macro-AUPRC (test)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame) -> plt.Figure:
    """Learning curves: loss and AUPRC (Keras, interpolated) on training and validation, per epoch."""
    epochs = np.arange(1, len(history) + 1)
    has_best = MONITOR in history and history[MONITOR].notna().any()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in zip(axes, ("loss", "auprc"), ("loss", "macro-AUPRC (Keras)")):
        curves = {split: history[column].to_numpy() for split, column in
                  (("training", metric), ("validation", f"val_{metric}")) if column in history}
        if curves:
            long = pd.DataFrame({"epoch": epochs, **curves}).melt(id_vars="epoch", var_name="split",
                                                                  value_name=metric)
            sns.lineplot(long, x="epoch", y=metric, hue="split", marker="o", ax=ax)
        if has_best:
            ax.axvline(epochs[int(np.nanargmax(history[MONITOR]))], color="grey", linestyle="--",
                       linewidth=0.8, label="best epoch")
            ax.legend()
        ax.set_ylabel(label)
        ax.set_title(label)
    fig.tight_layout()
    return fig


def plot_paired_comparison(comparison: pd.DataFrame) -> plt.Figure:
    """Forest plot of `paired_comparisons`: each difference with its 95% interval, 0 marked, one panel per metric."""
    if comparison.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no paired comparison (fewer than two architectures or no resamples)",
                ha="center", va="center")
        return fig
    comparison = for_people(comparison)
    metrics = list(dict.fromkeys(comparison["metric"]))
    architectures = list(dict.fromkeys(comparison["architecture"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 2, 0.45 * len(architectures) + 1.8),
                             sharey=True, squeeze=False)
    positions = np.arange(len(architectures))
    for ax, metric in zip(axes[0], metrics):
        part = comparison[comparison["metric"] == metric].set_index("architecture").reindex(architectures)
        difference = part["difference"].astype(float)
        # the interval itself, from its ends: a percentile bootstrap interval need not contain the estimate
        low, high = part["ci_low"].astype(float), part["ci_high"].astype(float)
        ax.hlines(positions, low, high, color="grey", zorder=1)
        ax.plot(np.concatenate([low, high]), np.concatenate([positions, positions]), "|", color="grey",
                markersize=8, zorder=1)
        significance = part["significant"].map({True: "significant", False: "not significant"}).to_numpy()
        sns.scatterplot(x=difference.to_numpy(), y=positions, hue=significance,
                        palette={"significant": "tab:red", "not significant": "tab:gray"}, s=50, ax=ax, zorder=3,
                        legend="auto" if ax is axes[0][-1] else False)
        ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, architectures)
        ax.set_ylim(len(architectures) - 0.5, -0.5)
        ax.set_xlabel(f"difference in {LABELS.get(metric, metric)} to {part['reference'].dropna().iloc[0]}")
        ax.grid(axis="x", alpha=0.3)
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle("Test fold, all seeds: architecture minus the best per metric (95% CI; significant: "
                 "Holm-adjusted p < 0.05)")
    fig.tight_layout()
    return fig


def plot_learning_curves(runs: Sequence[RunRecord]) -> plt.Figure:
    """Validation macro-AUPRC (Keras, interpolated) and loss per epoch: a line per architecture, seeds' range as a band.

    Runs stopped early contribute only their epochs, so late epochs may summarise fewer seeds.
    """
    labels = run_labels(runs)
    parts = [run.history.assign(epoch=np.arange(1, len(run.history) + 1),  # CSVLogger counts from 0
                                architecture=labels[run.run_dir][1],
                                seed=run.seed) for run in ordered_runs(runs)]
    if not parts:
        raise EcgkerasError("no runs given: nothing to plot")
    long = pd.concat(parts, ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (column, label) in zip(axes, ((MONITOR, "validation macro-AUPRC (Keras)"),
                                          ("val_loss", "validation loss"))):
        sns.lineplot(long, x="epoch", y=column, hue="architecture", errorbar=("pi", 100), ax=ax,
                     legend=ax is axes[-1])
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle("Learning curves (band: range over seeds)")
    fig.tight_layout()
    return fig


def plot_reliability(runs: Sequence[RunRecord], n_classes: int = 3, n_bins: int = CALIBRATION_BINS,
                     split: str = "test") -> plt.Figure:
    """Reliability diagrams: all (record, class) probabilities, then the `n_classes` most frequent classes.

    Each architecture's seeds are pooled; points are `calibration_curve` bins (equal width), the
    diagonal is perfect calibration.
    """
    ordered = ordered_runs(runs)
    labels = run_labels(ordered)
    if not ordered:
        raise EcgkerasError("no runs given: nothing to plot")
    support = ordered[0].predictions[f"{split}_true"].sum(axis=0)
    frequent = [int(k) for k in np.argsort(-support, kind="stable")[:n_classes]]
    panels = [("all classes (micro)", None), *((f"{ordered[0].classes[k]} (n={support[k]})", k) for k in frequent)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 2, 3.8), sharey=True, squeeze=False)
    for ax, (title, k) in zip(axes[0], panels):
        curves = {}
        for run in ordered:
            y_true, y_prob = run.predictions[f"{split}_true"], run.predictions[f"{split}_prob"]
            truth, prob = (y_true.ravel(), y_prob.ravel()) if k is None else (y_true[:, k], y_prob[:, k])
            pooled = curves.setdefault(labels[run.run_dir][1], ([], []))
            pooled[0].append(truth)
            pooled[1].append(prob)
        rows = []
        for architecture, (truth, prob) in curves.items():
            fraction, mean = calibration_curve(np.concatenate(truth), np.concatenate(prob), n_bins=n_bins)
            rows.append(pd.DataFrame({"architecture": architecture, "mean probability": mean,
                                      "fraction positive": fraction}))
        sns.lineplot(pd.concat(rows), x="mean probability", y="fraction positive", hue="architecture",
                     marker="o", errorbar=None, sort=False, ax=ax, legend=ax is axes[0][-1])
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=title)
        ax.grid(alpha=0.3)
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(f"Reliability diagrams ({split} fold, seeds pooled, {n_bins} equal-width bins)")
    fig.tight_layout()
    return fig
