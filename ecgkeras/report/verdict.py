"""The verdict a study summary opens with: per headline metric, the best architecture, those statistically
indistinguishable from it, and the cheapest of those, from `paired_comparisons` and `summary_table`.

"Indistinguishable" means the Holm-adjusted p-value of its difference from the best is at least 5%
(the comparisons of one metric are one family). The cheapest are chosen among the best and those
indistinguishable from it, by parameters and by measured seconds per training epoch (seed mean).
The detectable difference is the 80%-power, 5%-level difference at the median standard error of the
metric's comparisons (unadjusted): smaller true differences would mostly go unnoticed.
"""

from __future__ import annotations

import pandas as pd

from ecgkeras.evaluation import VERDICT_METRICS, detectable_difference
from ecgkeras.report.formatting import LABELS

VERDICT_COLUMNS: tuple[str, ...] = ("metric", "best", "best_score", "indistinguishable", "cheapest_by_parameters",
                                    "cheapest_by_seconds_per_epoch", "detectable_difference")


def verdict_table(comparison: pd.DataFrame, summary: pd.DataFrame,
                  metrics: tuple[str, ...] = VERDICT_METRICS) -> pd.DataFrame:
    """One row per metric: registry names of the best, the set indistinguishable from it (best first), the
    cheapest of that set by parameters and by seconds per epoch, and the detectable difference."""
    rows = []
    for metric in metrics:
        part = comparison[comparison["metric"] == metric]
        if part.empty:
            continue
        best = part["reference"].iloc[0]
        tied = [best, *part.loc[~part["significant"].astype(bool), "architecture"]]
        costs = summary.loc[tied]
        error, df = float(part["standard_error"].median()), float(part["df"].median())
        rows.append({"metric": metric, "best": best, "best_score": float(part["reference_mean"].iloc[0]),
                     "indistinguishable": tied,
                     "cheapest_by_parameters": costs["n_parameters"].idxmin(),
                     "cheapest_by_seconds_per_epoch": costs["seconds_per_epoch"].idxmin(),
                     "detectable_difference": detectable_difference(error, df)})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def _against_best(name: str, best: str, part: pd.DataFrame, summary: pd.DataFrame) -> str:
    """'CNN-TCN (-0.0040, 95% CI -0.0100 to 0.0020)', or 'CNN (the best)'."""
    shown = summary.loc[name, "display_name"]
    if name == best:
        return f"{shown} (the best)"
    row = part.set_index("architecture").loc[name]
    return f"{shown} ({row['difference']:+.4f}, CI {row['ci_low']:+.4f} to {row['ci_high']:+.4f})"


def verdict_lines(comparison: pd.DataFrame, summary: pd.DataFrame, n_test_records: int,
                  bootstrap_resamples: int) -> list[str]:
    """The verdict as Markdown lines (a heading, what it rests on, one table row per metric)."""
    lines = ["## Verdict", ""]
    if len(summary) < 2:
        return lines + ["One architecture: nothing to compare.", ""]
    if comparison.empty:
        return lines + ["No verdict: the study was aggregated without bootstrap resamples (bootstrap_resamples 0).",
                        ""]
    seeds = summary["n_seeds"]
    seeds_text = str(seeds.iloc[0]) if seeds.nunique() == 1 else f"{seeds.min()} to {seeds.max()}"
    lines += [f"Rests on {seeds_text} seed(s) per architecture and {n_test_records} test records; every comparison "
              f"uses all seeds of both architectures ({bootstrap_resamples} paired resamples of the test records "
              "plus the seed-to-seed spread), 95% intervals, differences to the best (architecture minus best); "
              "indistinguishable: Holm-adjusted p >= 0.05 among the metric's comparisons. The detectable "
              "difference is the smallest this study finds with 80% power.", ""]
    if seeds.min() < 2:
        single = ", ".join(summary.loc[seeds < 2, "display_name"])
        lines += [f"> **One seed ({single}): this study cannot separate architectures from seed noise.** Its "
                  "intervals hold the test-record variation only; train more seeds (`--seeds 0 1 2`) for a verdict.",
                  ""]
    table = verdict_table(comparison, summary)
    lines += ["| metric | best (seed mean) | indistinguishable from the best | cheapest of those by parameters | "
              "cheapest of those by seconds/epoch | detectable difference |", "| --- | --- | --- | --- | --- | ---: |"]
    for row in table.itertuples():
        part = comparison[comparison["metric"] == row.metric]
        tied = "; ".join(_against_best(name, row.best, part, summary) for name in row.indistinguishable)
        by_size = _against_best(row.cheapest_by_parameters, row.best, part, summary)
        by_time = _against_best(row.cheapest_by_seconds_per_epoch, row.best, part, summary)
        lines.append(f"| {LABELS.get(row.metric, row.metric)} | {summary.loc[row.best, 'display_name']} "
                     f"({row.best_score:.4f}) | {tied} | {by_size}, "
                     f"{int(summary.loc[row.cheapest_by_parameters, 'n_parameters']):,} parameters | {by_time}, "
                     f"{summary.loc[row.cheapest_by_seconds_per_epoch, 'seconds_per_epoch']:.1f} s/epoch | "
                     f"{row.detectable_difference:.4f} |")
    return lines + [""]

