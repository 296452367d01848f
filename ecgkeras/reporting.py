"""Study tables and figures, read from run records: nothing here trains or re-runs a model.

Conventions:
- Tables show the test fold by default; mean and sample standard deviation (ddof=1) over
  seeds, "±" only when an architecture has more than one seed. The best value of each
  metric column is marked (lowest Hamming loss, highest for the others).
- Architectures appear in registry order (`ecgkeras.models.ARCHITECTURES`) under their
  display names.
- Paired comparisons use each architecture's lowest seed (one run each, with that run's
  own thresholds): averaging probabilities over seeds would need thresholds re-tuned on
  the averaged validation probabilities, which is a new model, not a record.
- Markdown and LaTeX are written here (no jinja2/tabulate needed); LaTeX tables use booktabs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator, StrMethodFormatter
from sklearn.calibration import calibration_curve

from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import CALIBRATION_BINS, CALIBRATION_METRICS, HEADLINE_METRICS, paired_bootstrap
from ecgkeras.files import atomic_write, atomic_write_text
from ecgkeras.models import ARCHITECTURES, get_architecture
from ecgkeras.runs import RunRecord, find_runs
from ecgkeras.synthetic import MARKER_FILE
from ecgkeras.training import convergence

POLICIES: tuple[str, ...] = ("tuned", "fixed")
TABLE_METRICS: tuple[str, ...] = (*HEADLINE_METRICS, *CALIBRATION_METRICS)
LOWER_IS_BETTER = frozenset({"hamming_loss", *CALIBRATION_METRICS})
LABELS: dict[str, str] = {
    "hamming_loss": "Hamming loss", "macro_auprc": "macro-AUPRC", "micro_f1": "micro-F1",
    "subset_accuracy": "subset accuracy", "macro_auroc": "macro-AUROC", "macro_f1": "macro-F1",
    "n_parameters": "parameters", "seconds_per_epoch": "seconds/epoch",
    "inference_ms_per_ecg": "inference ms/ECG", "n_seeds": "seeds", "architecture": "Architecture",
    "reference": "reference", "reference_seed": "reference seed", "ci_low": "CI low",
    "ci_high": "CI high", "brier_score": "Brier score", "ece": "ECE", "converged": "converged",
}
DECIMALS: dict[str, int] = {"seconds_per_epoch": 1, "inference_ms_per_ecg": 2}
PAIRED_COLUMNS: tuple[str, ...] = ("architecture", "seed", "reference", "reference_seed", "metric",
                                   "difference", "ci_low", "ci_high", "significant")

# Published reference points, printed beside our numbers (test fold, PTB-XL 23 diagnostic subclasses).
PAPER_REFERENCE: dict[str, dict[str, float | str]] = {
    "Jafari & Jafari 2026": {"model": "CNN-BiLSTM", "hamming_loss": 0.0338, "macro_auprc": 0.4715,
                             "micro_f1": 0.6979, "subset_accuracy": 0.5723},
    "Strodthoff et al. 2020 (PTB-XL benchmark)": {"model": "best benchmark models (approx.)",
                                                  "macro_auroc": 0.93},
}


def reference_table() -> pd.DataFrame:
    """`PAPER_REFERENCE` as a table (one row per source; NaN where a source reports no value)."""
    table = pd.DataFrame.from_dict(PAPER_REFERENCE, orient="index").rename_axis("source")
    return table[["model", *(m for m in HEADLINE_METRICS if m in table)]]


# --------------------------------------------------------------------------- tables

def _name(run: RunRecord) -> str:
    return run.metrics["architecture"]["name"]


def _ordered_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """Runs in registry order, then by seed; refuses two runs of one (architecture, seed)."""
    runs = list(runs)
    order = {name: index for index, name in enumerate(ARCHITECTURES)}
    for run in runs:
        get_architecture(_name(run))
    ordered = sorted(runs, key=lambda run: (order[_name(run)], run.metrics["config"]["seed"]))
    for before, after in zip(ordered, ordered[1:]):
        if (_name(before), before.metrics["config"]["seed"]) == (_name(after), after.metrics["config"]["seed"]):
            raise EcgkerasError(f"two runs of {_name(after)} seed {after.metrics['config']['seed']} "
                                f"({before.run_dir}, {after.run_dir}): keep one of them")
    return ordered


def _shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when inside it (summaries get copied and published)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def runs_frame(runs: Sequence[RunRecord], split: str = "test") -> pd.DataFrame:
    """One row per (architecture, seed, policy): headline metrics on `split`, size and timings."""
    rows = []
    for run in _ordered_runs(runs):
        timings = run.metrics["timings"]
        for policy in POLICIES:
            values = run.metrics["metrics"][split][policy]
            rows.append({"architecture": _name(run), "display_name": run.metrics["architecture"]["display_name"],
                         "seed": int(run.metrics["config"]["seed"]), "policy": policy,
                         **{metric: float(values.get(metric, np.nan)) for metric in TABLE_METRICS},
                         "converged": run_convergence(run)["converged"],
                         "n_parameters": int(run.metrics["n_parameters"]),
                         "seconds_per_epoch": float(timings["seconds_per_epoch"]),
                         "inference_ms_per_ecg": float(timings["inference_ms_per_ecg"]),
                         "run_dir": _shown_path(run.run_dir)})
    columns = ["architecture", "display_name", "seed", "policy", *TABLE_METRICS, "converged", "n_parameters",
               "seconds_per_epoch", "inference_ms_per_ecg", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def summary_table(runs: Sequence[RunRecord], policy: str = "tuned", split: str = "test") -> pd.DataFrame:
    """The paper-style table: one row per architecture, `<metric>` (mean) and `<metric>_std` over seeds.

    `converged` counts the seeds whose early stopping fired, e.g. "2/3" (see `run_convergence`).
    """
    if policy not in POLICIES:
        raise EcgkerasError(f"unknown threshold policy {policy!r}: choose one of {', '.join(POLICIES)}")
    frame = runs_frame(runs, split)
    grouped = frame[frame["policy"] == policy].groupby("display_name", sort=False)
    averaged = [*TABLE_METRICS, "seconds_per_epoch"]
    mean, std = grouped[averaged].mean(), grouped[averaged].std()
    table = pd.DataFrame(index=mean.index.rename("architecture"))
    for metric in TABLE_METRICS:
        table[metric], table[f"{metric}_std"] = mean[metric], std[metric]
    table["n_parameters"] = grouped["n_parameters"].mean().round().astype("int64")
    table["seconds_per_epoch"], table["seconds_per_epoch_std"] = mean["seconds_per_epoch"], std["seconds_per_epoch"]
    table["n_seeds"] = grouped.size()
    table["converged"] = grouped["converged"].sum().astype(int).astype(str) + "/" + table["n_seeds"].astype(str)
    return table


def per_class_recall(runs: Sequence[RunRecord], policy: str = "tuned", split: str = "test") -> pd.DataFrame:
    """Recall per class (rows) and architecture (columns, mean over seeds), after a `support` column."""
    ordered = _ordered_runs(runs)
    if not ordered:
        raise EcgkerasError("no runs given: nothing to tabulate")
    classes = ordered[0].classes
    parts = []
    for run in ordered:
        if run.classes != classes:
            raise EcgkerasError(f"{run.run_dir} has other classes than {ordered[0].run_dir}: "
                                "compare runs of one study (same label level)")
        part = run.per_class(split, policy)[["support", "recall"]]
        parts.append(part.assign(architecture=run.metrics["architecture"]["display_name"]).reset_index())
    long = pd.concat(parts, ignore_index=True)
    if (long.groupby("class")["support"].nunique() > 1).any():
        raise EcgkerasError(f"the runs were evaluated on different {split} records (class support differs): "
                            "compare runs of one study (same data and folds)")
    architectures = list(dict.fromkeys(long["architecture"]))
    recall = long.pivot_table(index="class", columns="architecture", values="recall", aggfunc="mean")
    recall = recall.reindex(index=classes, columns=architectures)
    recall.columns.name = None
    recall.insert(0, "support", long.groupby("class")["support"].first().reindex(classes).astype("int64"))
    return recall


def paired_comparisons(runs: Sequence[RunRecord], reference: str | None = None,
                       metrics: Sequence[str] = ("macro_auprc", "micro_f1"), n_resamples: int = 1000,
                       seed: int = 0, policy: str = "tuned") -> pd.DataFrame:
    """Every architecture minus the reference on the test fold, with paired bootstrap 95% intervals.

    The reference is the architecture with the best mean test macro-AUPRC unless `reference`
    (registry or display name) is given. Each architecture is represented by its lowest seed.
    """
    if n_resamples < 1:
        raise EcgkerasError(f"n_resamples={n_resamples}: a paired bootstrap needs at least 1 resample")
    first: dict[str, RunRecord] = {}
    for run in _ordered_runs(runs):
        first.setdefault(_name(run), run)
    if reference is None:
        frame = runs_frame(runs)
        auprc = frame[frame["policy"] == policy].groupby("architecture", sort=False)["macro_auprc"].mean()
        reference = auprc.idxmax()
    else:
        by_display = {arch.display_name: name for name, arch in ARCHITECTURES.items()}
        reference = by_display.get(reference, reference)
    if reference not in first:
        raise EcgkerasError(f"reference architecture {reference!r} has no run here: choose one of "
                            f"{', '.join(first)}")
    base = first[reference]
    base_pred = base.predictions
    results = []
    for name, run in first.items():
        if name == reference:
            continue
        pred = run.predictions
        if not all(np.array_equal(pred[key], base_pred[key]) for key in ("test_ecg_ids", "test_true", "classes")):
            raise EcgkerasError(f"{run.run_dir} and {base.run_dir} were tested on different records or "
                                "classes: compare runs of one study (same data and folds)")
        result = paired_bootstrap(base_pred["test_true"], pred["test_prob"], base_pred["test_prob"],
                                  run.thresholds(policy), base.thresholds(policy), metrics=tuple(metrics),
                                  n_resamples=n_resamples, seed=seed)
        results.append(result.assign(architecture=run.metrics["architecture"]["display_name"],
                                     seed=int(run.metrics["config"]["seed"]),
                                     reference=base.metrics["architecture"]["display_name"],
                                     reference_seed=int(base.metrics["config"]["seed"])))
    if not results:
        return pd.DataFrame(columns=list(PAIRED_COLUMNS))
    return pd.concat(results, ignore_index=True)[list(PAIRED_COLUMNS)]


# --------------------------------------------------------------------------- formatting

def _shown_columns(table: pd.DataFrame) -> list[str]:
    """Columns of a table as displayed: `<metric>_std` merges into `<metric>`."""
    return [c for c in table.columns if not (c.endswith("_std") and c.removesuffix("_std") in table.columns)]


def _format_value(value, decimals: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if pd.isna(value):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{decimals}f}"
    return str(value)


def _escape_latex(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(char, char) for char in text).replace("±", r"$\pm$").replace("–", "--")


def _best_mask(values: pd.Series, metric: str, decimals: int) -> pd.Series:
    rounded = values.astype(float).round(decimals)
    return rounded == (rounded.min() if metric in LOWER_IS_BETTER else rounded.max())


def format_table(table: pd.DataFrame, decimals: int = 4, markup: str = "markdown",
                 mark_best: bool = True) -> pd.DataFrame:
    """Strings for display: "mean ± std" (± only with more than one seed), best values bold.

    `markup` is "markdown" (**x**) or "latex" (\\textbf{x}, text escaped). Works on any table
    of this module; best values are marked in metric columns (headline and calibration) only.
    """
    if markup not in ("markdown", "latex"):
        raise EcgkerasError(f"unknown markup {markup!r}: choose markdown or latex")
    escape = _escape_latex if markup == "latex" else (lambda text: text.replace("|", r"\|"))
    bold = (lambda text: rf"\textbf{{{text}}}") if markup == "latex" else (lambda text: f"**{text}**")
    several_seeds = table["n_seeds"] > 1 if "n_seeds" in table else pd.Series(True, index=table.index)
    formatted = {}
    for column in _shown_columns(table):
        digits = DECIMALS.get(column, decimals)
        values = table[column].map(lambda value: LABELS.get(value, value)) if column == "metric" else table[column]
        text = values.map(lambda value: _format_value(value, digits))
        if f"{column}_std" in table:
            std = table[f"{column}_std"]
            with_std = several_seeds & std.notna()
            text = text.where(~with_std, text + " ± " + std.map(lambda value: _format_value(value, digits)))
        text = text.map(escape)
        if mark_best and column in TABLE_METRICS:
            text = text.where(~_best_mask(table[column], column, digits), text.map(bold))
        formatted[escape(LABELS.get(column, column))] = text
    result = pd.DataFrame(formatted).set_axis(table.index.map(lambda value: escape(str(value))))
    if table.index.name is not None:
        result.index.name = escape(LABELS.get(table.index.name, table.index.name))
    return result


def save_table(table: pd.DataFrame, out_dir: str | Path, stem: str, decimals: int = 4) -> list[Path]:
    """Write `<stem>.csv` (numbers as they are), `<stem>.md` and `<stem>.tex` (formatted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    named_index = table.index.name is not None
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in _shown_columns(table)]
    alignment = "l" * named_index + "".join("r" if is_number else "l" for is_number in numeric)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    atomic_write_text(paths[0], table.to_csv(index=named_index))

    def formatted(markup: str) -> pd.DataFrame:  # the named index becomes the first column
        frame = format_table(table, decimals, markup)
        return frame.reset_index() if named_index else frame

    atomic_write_text(paths[1], formatted("markdown").to_markdown(index=False) + "\n")
    atomic_write_text(paths[2], formatted("latex").to_latex(index=False, escape=False, column_format=alignment))
    return paths


# --------------------------------------------------------------------------- figures

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
    data = summary.reset_index()
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
    has_best = "val_auprc" in history and history["val_auprc"].notna().any()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in zip(axes, ("loss", "auprc"), ("loss", "macro-AUPRC (Keras)")):
        curves = {split: history[column].to_numpy() for split, column in
                  (("training", metric), ("validation", f"val_{metric}")) if column in history}
        if curves:
            long = pd.DataFrame({"epoch": epochs, **curves}).melt(id_vars="epoch", var_name="split",
                                                                  value_name=metric)
            sns.lineplot(long, x="epoch", y=metric, hue="split", marker="o", ax=ax)
        if has_best:
            ax.axvline(epochs[int(np.nanargmax(history["val_auprc"]))], color="grey", linestyle="--",
                       linewidth=0.8, label="best epoch")
            ax.legend()
        ax.set_ylabel(label)
        ax.set_title(label)
    fig.tight_layout()
    return fig


def plot_paired_comparison(comparison: pd.DataFrame) -> plt.Figure:
    """Forest plot of `paired_comparisons`: each difference with its 95% interval, 0 marked."""
    if comparison.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no paired comparison (fewer than two architectures or no resamples)",
                ha="center", va="center")
        return fig
    metrics = list(dict.fromkeys(comparison["metric"]))
    architectures = list(dict.fromkeys(comparison["architecture"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 2, 0.45 * len(architectures) + 1.8),
                             sharey=True, squeeze=False)
    positions = np.arange(len(architectures))
    for ax, metric in zip(axes[0], metrics):
        part = comparison[comparison["metric"] == metric].set_index("architecture").reindex(architectures)
        difference = part["difference"].astype(float)
        ax.errorbar(difference, positions, fmt="none", ecolor="grey", capsize=3,
                    xerr=[difference - part["ci_low"].astype(float), part["ci_high"].astype(float) - difference])
        significance = part["significant"].map({True: "significant", False: "not significant"}).to_numpy()
        sns.scatterplot(x=difference.to_numpy(), y=positions, hue=significance,
                        palette={"significant": "tab:red", "not significant": "tab:gray"}, s=50, ax=ax, zorder=3,
                        legend="auto" if ax is axes[0][-1] else False)
        ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, architectures)
        ax.set_ylim(len(architectures) - 0.5, -0.5)
        ax.set_xlabel(f"difference in {LABELS.get(metric, metric)}")
        ax.grid(axis="x", alpha=0.3)
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(f"Paired bootstrap, test fold: architecture minus {comparison['reference'].iloc[0]} (95% CI)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the summary folder

def _distinct(values: Iterable) -> str:
    return ", ".join(dict.fromkeys(str(value) for value in values))


def _readme(study_dir: Path, runs: list[RunRecord], files: dict[str, str], n_resamples: int) -> str:
    configs = [run.metrics["config"] for run in runs]
    data = [run.metrics["data"] for run in runs]
    data_dirs = list(dict.fromkeys(_shown_path(config["data_dir"]) for config in configs))
    synthetic = [d for d in data_dirs if (Path(d) / MARKER_FILE).is_file()]
    lines = ["# Study summary", ""]
    if synthetic:
        lines += [f"> **SYNTHETIC DATA, NOT PTB-XL.** These results come from synthetic ECGs "
                  f"(`{MARKER_FILE}` in `{_distinct(synthetic)}`, generated by `ecgkeras synth`). They show "
                  "that the pipeline runs and learns; they say nothing about the architectures on real ECGs.", ""]
    seeds = {}
    for run in runs:
        seeds.setdefault(run.metrics["architecture"]["display_name"], []).append(str(run.metrics["config"]["seed"]))
    lines += [f"Study folder `{_shown_path(study_dir)}`: {len(runs)} complete run(s), read from their run records "
              "(nothing was retrained).", ""]
    lines += [f"- {name}: seed(s) {', '.join(values)}" for name, values in seeds.items()]
    lines += ["", "## Data", "",
              f"- data folder: `{'`, `'.join(data_dirs)}`",
              f"- sampling rate: {_distinct(c['sampling_rate'] for c in configs)} Hz",
              f"- label level: {_distinct(c['label_level'] for c in configs)} "
              f"({_distinct(len(run.classes) for run in runs)} classes)",
              f"- records: train {_distinct(d['n_train'] for d in data)}, validation "
              f"{_distinct(d['n_val'] for d in data)}, test {_distinct(d['n_test'] for d in data)}",
              f"- folds: train {_distinct(c['train_folds'] for c in configs)}, validation "
              f"{_distinct(c['val_folds'] for c in configs)}, test {_distinct(c['test_folds'] for c in configs)}",
              "", "## Files", "", "| file | content |", "| --- | --- |"]
    lines += [f"| {name} | {content} |" for name, content in files.items()]
    lines += ["", "## Conventions", "",
              "- Test-fold metrics; mean ± sample standard deviation (ddof=1) over seeds, ± only with "
              "more than one seed; best value per column in bold (lowest Hamming loss, highest otherwise).",
              "- `tuned`: per-class thresholds maximizing F1 on the validation fold; `fixed`: 0.5.",
              f"- Paired comparison: each architecture's lowest seed minus the reference's, {n_resamples} "
              "paired bootstrap resamples of the test records, 95% percentile intervals.",
              f"- Calibration: Brier score and expected calibration error (ECE, {CALIBRATION_BINS} equal-width "
              "bins) over all (record, class) probabilities; lower is better.",
              "", *convergence_lines(runs),
              "", "## Published reference points", "",
              format_table(reference_table(), mark_best=False).to_markdown() + "\n"]
    return "\n".join(lines)


def write_summary(study_dir: str | Path, out_dir: str | Path | None = None, n_resamples: int = 1000) -> Path:
    """Tables, figures and a README for every complete run under `study_dir`; returns the folder."""
    study_dir = Path(study_dir)
    runs = find_runs(study_dir)
    if not runs:
        raise EcgkerasError(f"no complete runs under {study_dir}: run `ecgkeras study` first")
    out_dir = Path(out_dir) if out_dir else study_dir / "summary"
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def table(frame: pd.DataFrame, stem: str, content: str) -> None:
        save_table(frame, out_dir, stem)
        files[f"`{stem}.md`, `.csv`, `.tex`"] = content

    def figure(fig: plt.Figure, stem: str, content: str) -> None:
        save_figure(fig, out_dir, stem)
        plt.close(fig)
        files[f"`{stem}.png`, `.pdf`"] = content

    summaries = {policy: summary_table(runs, policy) for policy in POLICIES}
    for policy, summary in summaries.items():
        table(summary, f"results_{policy}", f"test metrics per architecture, {policy} thresholds")
    recall = per_class_recall(runs)
    table(recall, "per_class_recall", "test recall per class and architecture (tuned thresholds), class support")
    comparison = (paired_comparisons(runs, n_resamples=n_resamples) if n_resamples > 0
                  else pd.DataFrame(columns=list(PAIRED_COLUMNS)))
    table(comparison, "paired_comparison", "paired bootstrap differences against the best architecture")
    atomic_write_text(out_dir / "runs.csv", runs_frame(runs).to_csv(index=False))
    files["`runs.csv`"] = "every run's test metrics (both policies), size and timings"
    figure(plot_recall_heatmap(recall, "Per-class recall (test fold, tuned thresholds)"), "recall_heatmap",
           "per-class recall heatmap")
    figure(plot_recall_bars(recall, "Per-class recall by architecture (test fold, tuned thresholds)"),
           "recall_bars", "per-class recall, grouped bars")
    figure(plot_complexity(summaries["tuned"]), "complexity", "macro-AUPRC against parameters and seconds per epoch")
    figure(plot_paired_comparison(comparison), "paired_comparison", "forest plot of the paired differences")
    figure(plot_learning_curves(runs), "learning_curves",
           "validation macro-AUPRC and loss per epoch, one line per architecture, range over seeds")
    figure(plot_reliability(runs), "reliability", "reliability diagrams (test fold): all classes and the most frequent")
    atomic_write_text(out_dir / "README.md", _readme(study_dir, _ordered_runs(runs), files, n_resamples))
    return out_dir


# --------------------------------------------------------------------------- convergence and calibration figures

def run_convergence(run: RunRecord) -> dict:
    """A run's convergence (`ecgkeras.training.convergence`): from its record, or its history for older records."""
    return run.metrics.get("convergence") or convergence(run.history, run.config.training)


def unconverged_runs(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Runs whose early stopping never fired (still improving at the epoch cap), one row each."""
    rows = [{"architecture": run.metrics["architecture"]["display_name"], "seed": int(run.metrics["config"]["seed"]),
             **{key: status[key] for key in ("stopped_by", "epochs_run", "epoch_cap", "best_epoch", "patience")},
             "run_dir": _shown_path(run.run_dir)}
            for run in _ordered_runs(runs) if not (status := run_convergence(run))["converged"]]
    return pd.DataFrame(rows, columns=["architecture", "seed", "stopped_by", "epochs_run", "epoch_cap",
                                       "best_epoch", "patience", "run_dir"])


def convergence_lines(runs: Sequence[RunRecord]) -> list[str]:
    """The summary README's convergence section (Markdown lines)."""
    lines = ["## Convergence", "",
             "A run converged when early stopping fired: validation macro-AUPRC had not improved for `patience` "
             "epochs. A run that reached the epoch cap with its best epoch within `patience` epochs of the last "
             "was still improving; the tables' `converged` column counts converged seeds.", ""]
    unconverged = unconverged_runs(runs)
    if unconverged.empty:
        return lines + ["Every run converged.", ""]
    lines += [f"**{len(unconverged)} run(s) had not converged**; their metrics understate what the architecture "
              "reaches with more epochs:", ""]
    return lines + [f"- {row.architecture}, seed {row.seed}: {row.stopped_by}, {row.epochs_run} of {row.epoch_cap} "
                    f"epochs, best epoch {row.best_epoch} (`{row.run_dir}`)" for row in unconverged.itertuples()] + [""]


def plot_learning_curves(runs: Sequence[RunRecord]) -> plt.Figure:
    """Validation macro-AUPRC (Keras, interpolated) and loss per epoch: a line per architecture, seeds' range as a band.

    Runs stopped early contribute only their epochs, so late epochs may summarise fewer seeds.
    """
    parts = [run.history.assign(epoch=np.arange(1, len(run.history) + 1),  # CSVLogger counts from 0
                                architecture=run.metrics["architecture"]["display_name"],
                                seed=int(run.metrics["config"]["seed"])) for run in _ordered_runs(runs)]
    if not parts:
        raise EcgkerasError("no runs given: nothing to plot")
    long = pd.concat(parts, ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (column, label) in zip(axes, (("val_auprc", "validation macro-AUPRC (Keras)"),
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
    ordered = _ordered_runs(runs)
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
            pooled = curves.setdefault(run.metrics["architecture"]["display_name"], ([], []))
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
