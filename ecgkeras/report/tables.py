"""Study tables from run records: one row per run, paper-style summaries, per-class recall, paired tests.

Nothing here trains or re-runs a model; every value comes from a run record (`RunRecord`).
Conventions:
- Tables show the test fold by default; mean and sample standard deviation (ddof=1) over
  seeds. Architectures appear in registry order (`ecgkeras.models.ARCHITECTURES`) under
  their display names.
- Runs that differ in shared parameters (a crossed grid, `--grid rnn_readout=last,pool`, or a
  mixed folder) are told apart by those parameters' values (`run_labels`): "cnn-gru@rnn_readout=pool",
  shown as "CNN-GRU (rnn_readout=pool)", one row each; rows are grouped by those values first.
- Paired comparisons use every seed of both architectures, each run with its own thresholds
  (averaging probabilities over seeds would need thresholds re-tuned on the averaged validation
  probabilities, a new model, not a record): the difference of seed-mean scores, with an interval
  for seed-to-seed and test-record variation (`ecgkeras.evaluation.seed_aware_difference`), and
  Holm's adjustment over the comparisons of each metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import (HEADLINE_METRICS, LOWER_IS_BETTER, TABLE_METRICS, VERDICT_METRICS, all_metrics,
                                 holm, resampled_run_metrics, seed_aware_difference)
from ecgkeras.models import ARCHITECTURES
from ecgkeras.runs.config import POLICIES, TUNED
from ecgkeras.runs.record import RunRecord
from ecgkeras.study.layout import cell_name

PAIRED_COLUMNS: tuple[str, ...] = ("metric", "architecture", "display_name", "n_seeds", "reference",
                                   "reference_display_name", "reference_n_seeds", "reference_mean", "difference",
                                   "ci_low", "ci_high", "standard_error", "df", "p_value", "p_holm", "significant",
                                   "seed_variance_known")

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


def crossed_parameters(runs: Sequence[RunRecord]) -> list[str]:
    """Shared parameters whose value differs between runs (a crossed grid's, or a mixed folder's)."""
    values = [run.config.shared_parameters(results_only=True) for run in runs]
    names = sorted({name for value in values for name in value})
    return [name for name in names if len({repr(value.get(name)) for value in values}) > 1]


def run_labels(runs: Sequence[RunRecord]) -> dict[Path, tuple[str, str, dict]]:
    """Run folder -> (key, display name, cell): the architecture's registry and display names, followed by
    the values of the `crossed_parameters` when the runs differ in some; cell maps those to the run's values."""
    crossed = crossed_parameters(runs)
    labels = {}
    for run in runs:
        shared = run.config.shared_parameters()
        cell = {name: shared.get(name) for name in crossed}
        suffix = cell_name(cell)
        labels[run.run_dir] = (run.architecture + (f"@{suffix}" if cell else ""),
                               run.display_name + (f" ({suffix.replace(',', ', ')})" if cell else ""), cell)
    return labels


def ordered_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """Runs grouped by crossed parameter values (if any), then in registry order, then by seed; refuses two
    runs of one (architecture, values, seed)."""
    runs = list(runs)
    order = {name: index for index, name in enumerate(ARCHITECTURES)}
    labels = run_labels(runs)
    ordered = sorted(runs, key=lambda run: (cell_name(labels[run.run_dir][2]), order[run.architecture], run.seed))
    for before, after in zip(ordered, ordered[1:]):
        if (labels[before.run_dir][0], before.seed) == (labels[after.run_dir][0], after.seed):
            raise EcgkerasError(f"two runs of {labels[after.run_dir][0]} seed {after.seed} "
                                f"({before.run_dir}, {after.run_dir}): keep one of them")
    return ordered


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when inside it (summaries get copied and published)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def runs_frame(runs: Sequence[RunRecord], split: str = "test") -> pd.DataFrame:
    """One row per (architecture, crossed values, seed, policy): headline metrics on `split`, size and timings;
    `variant` is the run's key (`run_labels`), and each crossed parameter has a column."""
    rows = []
    labels = run_labels(runs)
    crossed = crossed_parameters(runs)
    for run in ordered_runs(runs):
        key, display, cell = labels[run.run_dir]
        for policy in POLICIES:
            values = run.metrics(split, policy)
            rows.append({"architecture": run.architecture, "variant": key, "display_name": display,
                         **{name: str(value) for name, value in cell.items()},
                         "seed": run.seed, "policy": policy,
                         **{metric: float(values.get(metric, np.nan)) for metric in TABLE_METRICS},
                         "converged": bool(run.convergence["converged"]),
                         "n_parameters": run.n_parameters,
                         "seconds_per_epoch": float(run.timings["seconds_per_epoch"]),
                         "inference_ms_per_ecg": float(run.timings["inference_ms_per_ecg"]),
                         "run_dir": shown_path(run.run_dir)})
    columns = ["architecture", "variant", "display_name", *crossed, "seed", "policy", *TABLE_METRICS, "converged",
               "n_parameters",
               "seconds_per_epoch", "inference_ms_per_ecg", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def summary_table(runs: Sequence[RunRecord], policy: str = TUNED, split: str = "test") -> pd.DataFrame:
    """The paper-style table: one row per architecture, `<metric>` (mean) and `<metric>_std` over seeds.

    `converged` counts the seeds whose early stopping fired, e.g. "2/3" (see `RunRecord.convergence`).
    """
    if policy not in POLICIES:
        raise EcgkerasError(f"unknown threshold policy {policy!r}: choose one of {', '.join(POLICIES)}")
    frame = runs_frame(runs, split)
    grouped = frame[frame["policy"] == policy].groupby("variant", sort=False)
    averaged = [*TABLE_METRICS, "seconds_per_epoch"]
    mean, std = grouped[averaged].mean(), grouped[averaged].std()
    table = pd.DataFrame({"display_name": grouped["display_name"].first()},
                         index=mean.index.rename("architecture"))
    for name in crossed_parameters(runs):
        table[name] = grouped[name].first()
    for metric in TABLE_METRICS:
        table[metric], table[f"{metric}_std"] = mean[metric], std[metric]
    table["n_parameters"] = grouped["n_parameters"].mean().round().astype("int64")
    table["seconds_per_epoch"], table["seconds_per_epoch_std"] = mean["seconds_per_epoch"], std["seconds_per_epoch"]
    table["n_seeds"] = grouped.size()
    table["converged"] = grouped["converged"].sum().astype(int).astype(str) + "/" + table["n_seeds"].astype(str)
    return table


def per_class_recall(runs: Sequence[RunRecord], policy: str = TUNED, split: str = "test") -> pd.DataFrame:
    """Recall per class (rows) and architecture (columns, mean over seeds), after a `support` column."""
    ordered = ordered_runs(runs)
    if not ordered:
        raise EcgkerasError("no runs given: nothing to tabulate")
    labels = run_labels(ordered)
    classes = ordered[0].classes
    parts = []
    for run in ordered:
        if run.classes != classes:
            raise EcgkerasError(f"{run.run_dir} has other classes than {ordered[0].run_dir}: "
                                "compare runs of one study (same label level)")
        part = run.per_class(split, policy)[["support", "recall"]]
        parts.append(part.assign(architecture=labels[run.run_dir][1]).reset_index())
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
                       metrics: Sequence[str] = VERDICT_METRICS, bootstrap_resamples: int = 1000,
                       seed: int = 0, policy: str = TUNED, level: float = 0.95) -> pd.DataFrame:
    """Every architecture minus the reference on the test fold, over all seeds of both, per metric.

    The reference is, per metric, the architecture with the best seed-mean score (lowest Hamming loss,
    highest otherwise) unless `reference` (registry or display name) is given. Every run is scored on
    the same `bootstrap_resamples` resamples of the test records; `seed_aware_difference` turns them into
    a difference of seed means with a `level` interval; `p_holm` adjusts the p-values of each metric's
    comparisons (Holm), `significant` is p_holm below 1 - level.
    """
    if bootstrap_resamples < 2:
        raise EcgkerasError(f"bootstrap_resamples={bootstrap_resamples}: a paired comparison needs at least 2 "
                            "resamples")
    ordered = ordered_runs(runs)
    labels = run_labels(ordered)
    if reference is not None:
        by_display = {display: key for key, display, _ in labels.values()}
        reference = by_display.get(reference, reference)
        if reference not in by_display.values():
            raise EcgkerasError(f"reference architecture {reference!r} has no run here: choose one of "
                                f"{', '.join(dict.fromkeys(by_display.values()))}")
    base = ordered[0].predictions
    for run in ordered[1:]:
        pred = run.predictions
        if not all(np.array_equal(pred[key], base[key]) for key in ("test_ecg_ids", "test_true", "classes")):
            raise EcgkerasError(f"{run.run_dir} and {ordered[0].run_dir} were tested on different records or "
                                "classes: compare runs of one study (same data and folds)")
    keys = {f"{labels[run.run_dir][0]}/{run.seed}": run for run in ordered}
    observed, resampled = resampled_run_metrics(
        base["test_true"], {key: (run.predictions["test_prob"], run.thresholds(policy)) for key, run in keys.items()},
        tuple(metrics), bootstrap_resamples, seed)
    columns = {}  # architecture -> positions of its runs among the keys
    for position, run in enumerate(keys.values()):
        columns.setdefault(labels[run.run_dir][0], []).append(position)
    display = {key: shown for key, shown, _ in labels.values()}
    rows = []
    for metric in metrics:
        scores = observed[metric].to_numpy(float)
        means = {name: scores[at].mean() for name, at in columns.items()}
        best = reference or (min if metric in LOWER_IS_BETTER else max)(means, key=means.get)
        part = []
        for name, at in columns.items():
            if name == best:
                continue
            result = seed_aware_difference(scores[at], scores[columns[best]], resampled[metric][:, at],
                                           resampled[metric][:, columns[best]], level)
            part.append({"metric": metric, "architecture": name, "display_name": display[name], "n_seeds": len(at),
                         "reference": best, "reference_display_name": display[best],
                         "reference_n_seeds": len(columns[best]), "reference_mean": means[best],
                         **{key: value.item() for key, value in result.items()}})
        for row, adjusted in zip(part, holm([row["p_value"] for row in part])):
            row.update(p_holm=float(adjusted), significant=bool(adjusted < 1 - level))
        rows += part
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


EXTERNAL_METRICS = ("macro_auroc", "macro_auprc", "micro_f1", "hamming_loss")


def external_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Per architecture and external dataset (`ecgkeras evaluate`, or `study --external`): the test fold and
    the external records scored over the classes both share at the run's validation-tuned thresholds, side
    by side (seed means); empty when no run was evaluated on another dataset."""
    rows = []
    for run in ordered_runs(runs):
        for dataset, evaluation in run.external_evaluations().items():
            shared = [run.classes.index(name) for name in evaluation["classes"]]
            internal = all_metrics(run.predictions["test_true"][:, shared], run.predictions["test_prob"][:, shared],
                                   run.thresholds(TUNED)[shared])
            rows.append({"architecture": run.architecture, "display_name": run.display_name, "dataset": dataset,
                         "records": evaluation["n_records"], "shared classes": len(shared), "seed": run.seed,
                         **{f"{metric} test fold": internal[metric] for metric in EXTERNAL_METRICS},
                         **{f"{metric} external": evaluation["metrics"][TUNED][metric] for metric in EXTERNAL_METRICS}})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["architecture", "display_name", "dataset", "records", "shared classes"]
    table = frame.groupby(keys, sort=False).mean(numeric_only=True).drop(columns="seed")
    table.insert(0, "seeds", frame.groupby(keys, sort=False)["seed"].count())
    return table.reset_index(level=[1, 2, 3, 4])


def unconverged_runs(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Runs whose early stopping never fired (still improving at the epoch cap), one row each."""
    rows = [{"architecture": run.architecture, "display_name": run.display_name, "seed": run.seed,
             **{key: status[key] for key in ("stopped_by", "epochs_run", "epoch_cap", "best_epoch", "patience")},
             "run_dir": shown_path(run.run_dir)}
            for run in ordered_runs(runs) if not (status := run.convergence)["converged"]]
    return pd.DataFrame(rows, columns=["architecture", "display_name", "seed", "stopped_by", "epochs_run", "epoch_cap",
                                       "best_epoch", "patience", "run_dir"])
