"""Multi-label metrics (scikit-learn), validation-tuned thresholds and bootstrap intervals.

Conventions:
- Threshold-based metrics come in two policies: a fixed 0.5, and per-class thresholds
  tuned on the validation fold (each class's F1 maximized). The test fold never tunes.
- Macro AUROC/AUPRC average over the classes that have at least one positive and one
  negative record in the evaluated fold; the others are left out and counted
  (`n_classes_scored`), never turned into 0 or 1.
- Calibration treats every (record, class) probability as one binary forecast. The Brier
  score is the mean squared difference between probability and label; averaged over classes
  or over all probabilities at once (micro) it is the same number, since every class has one
  probability per record. Expected calibration error (ECE) uses `CALIBRATION_BINS` equal-width
  bins over [0, 1], binned as `sklearn.calibration.calibration_curve(strategy="uniform")` does
  (the first bin [0, 0.1], then (0.1, 0.2], ...): ECE = sum over non-empty bins of
  (probabilities in the bin / all probabilities) x |fraction of positives - mean probability|.
  `ece` pools all probabilities (micro); `macro_ece` averages the per-class ECEs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, cpu_count, delayed
from scipy import stats
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, f1_score, hamming_loss,
                             precision_recall_curve, precision_recall_fscore_support, precision_score, recall_score,
                             roc_auc_score)

from ecgkeras.errors import EcgkerasError
from ecgkeras.heap import existing_objects_frozen

PARALLEL_MIN_RESAMPLES = 100  # per worker process: below this, starting workers costs more than it saves
HEADLINE_METRICS: tuple[str, ...] = ("hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy",
                                     "macro_auroc", "macro_f1")
CALIBRATION_METRICS: tuple[str, ...] = ("brier_score", "ece")  # shown in the tables; lower is better
CALIBRATION_BINS = 10
TABLE_METRICS: tuple[str, ...] = (*HEADLINE_METRICS, *CALIBRATION_METRICS)  # the columns of study tables
LOWER_IS_BETTER = frozenset({"hamming_loss", *CALIBRATION_METRICS})
VERDICT_METRICS: tuple[str, ...] = ("hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy", "macro_auroc")


def scorable_classes(y_true: np.ndarray) -> np.ndarray:
    """Mask of classes with both positive and negative records (AUROC/AUPRC are defined)."""
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def ranking_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """Macro AUROC and AUPRC over the scorable classes, micro AUPRC over all."""
    mask = scorable_classes(y_true)
    if not mask.any():
        nan = float("nan")
        return {"macro_auroc": nan, "macro_auprc": nan, "micro_auprc": nan, "n_classes_scored": 0}
    return {
        "macro_auroc": float(roc_auc_score(y_true[:, mask], y_prob[:, mask], average="macro")),
        "macro_auprc": float(average_precision_score(y_true[:, mask], y_prob[:, mask], average="macro")),
        "micro_auprc": float(average_precision_score(y_true, y_prob, average="micro")),
        "n_classes_scored": int(mask.sum()),
    }


def threshold_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Metrics of binary predictions: Hamming loss, subset accuracy, F1/precision/recall."""
    values = {"hamming_loss": float(hamming_loss(y_true, y_pred)),
              "subset_accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("micro", "macro"):  # one call gives precision, recall and F1 (f1_score's own path)
        precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average=average,
                                                                   zero_division=0)
        values.update({f"{average}_f1": float(f1), f"{average}_precision": float(precision),
                       f"{average}_recall": float(recall)})
    return values


def binarize(y_prob: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """0/1 predictions: probability >= the class's threshold."""
    return (y_prob >= np.asarray(thresholds)).astype(np.uint8)


def _calibration_gaps(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> np.ndarray:
    """Per class (rows) and bin (columns): sum of labels minus sum of probabilities, equal-width bins."""
    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    bins = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], y_prob)  # calibration_curve's binning
    index = bins + n_bins * np.arange(y_prob.shape[1])  # one bin range per class
    gaps = np.bincount(index.ravel(), weights=(y_true - y_prob).ravel(), minlength=n_bins * y_prob.shape[1])
    return gaps.reshape(y_prob.shape[1], n_bins)


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = CALIBRATION_BINS) -> float:
    """ECE of binary forecasts (any shape, pooled) over `n_bins` equal-width bins (see module notes).

    sum over bins of n_b / N * |mean label - mean probability| = sum over bins of |sum(label - probability)| / N.
    """
    y_prob = np.ravel(y_prob)
    return float(np.abs(_calibration_gaps(np.ravel(y_true)[:, None], y_prob[:, None], n_bins)).sum() / len(y_prob))


def calibration_metrics(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """Brier score (one number: class and micro averages coincide), micro ECE and class-averaged ECE."""
    gaps = _calibration_gaps(y_true, y_prob, n_bins)
    return {
        "brier_score": float(brier_score_loss(np.ravel(y_true), np.ravel(y_prob))),
        "ece": float(np.abs(gaps.sum(axis=0)).sum() / y_prob.size),
        "macro_ece": float(np.abs(gaps).sum(axis=1).mean() / len(y_prob)),
    }


def all_metrics(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray | float) -> dict[str, float]:
    """Ranking, calibration and threshold metrics (the last at `thresholds`)."""
    return {**threshold_metrics(y_true, binarize(y_prob, thresholds)), **ranking_metrics(y_true, y_prob),
            **calibration_metrics(y_true, y_prob)}


def tune_thresholds(y_true: np.ndarray, y_prob: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds maximizing F1 on (validation) data; `default` for classes without positives."""
    thresholds = np.full(y_true.shape[1], default, dtype=np.float64)
    for k in range(y_true.shape[1]):
        if y_true[:, k].sum() == 0:
            continue
        precision, recall, cutoffs = precision_recall_curve(y_true[:, k], y_prob[:, k])
        f1 = np.divide(2 * precision * recall, precision + recall,
                       out=np.zeros_like(precision), where=(precision + recall) > 0)
        thresholds[k] = cutoffs[int(np.argmax(f1[:-1]))]
    return thresholds


def per_class_table(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray | float,
                    classes: list[str]) -> pd.DataFrame:
    """Support, precision, recall, F1, AUPRC, AUROC and threshold for each class."""
    y_pred = binarize(y_prob, thresholds)
    mask = scorable_classes(y_true)
    nan = np.full(len(classes), np.nan)
    auprc, auroc = nan.copy(), nan.copy()
    if mask.any():
        auprc[mask] = average_precision_score(y_true[:, mask], y_prob[:, mask], average=None)
        auroc[mask] = roc_auc_score(y_true[:, mask], y_prob[:, mask], average=None)
    kwargs = {"average": None, "zero_division": 0}
    return pd.DataFrame({
        "support": y_true.sum(axis=0).astype(int),
        "precision": precision_score(y_true, y_pred, **kwargs),
        "recall": recall_score(y_true, y_pred, **kwargs),
        "f1": f1_score(y_true, y_pred, **kwargs),
        "auprc": auprc,
        "auroc": auroc,
        "threshold": np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),)),
    }, index=pd.Index(classes, name="class"))


def bootstrap_intervals(y_true: np.ndarray, y_prob: np.ndarray, thresholds: dict[str, np.ndarray | float],
                        bootstrap_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        metrics: tuple[str, ...] = HEADLINE_METRICS) -> dict[str, dict[str, list[float]]]:
    """Percentile bootstrap intervals of `metrics` for each threshold policy in `thresholds`.

    Records are resampled with replacement; all policies share the resamples, and the
    ranking metrics (which no threshold changes) are computed once per resample.
    """
    if bootstrap_resamples <= 0:
        return {}

    def statistic(idx: np.ndarray) -> dict[str, float]:
        ranking = ranking_metrics(y_true[idx], y_prob[idx])
        values = {}
        for policy, cutoffs in thresholds.items():
            for name, value in {**threshold_metrics(y_true[idx], binarize(y_prob[idx], cutoffs)),
                                **ranking}.items():
                values[f"{policy}/{name}"] = value
        return values

    samples = _bootstrap(y_true, statistic, bootstrap_resamples, seed)
    tail = (1 - level) / 2 * 100
    return {policy: {name: np.nanpercentile(samples[f"{policy}/{name}"], [tail, 100 - tail]).tolist()
                     for name in metrics}
            for policy in thresholds}


def _bootstrap(y_true: np.ndarray, statistic: Callable[[np.ndarray], dict[str, float]],
               bootstrap_resamples: int, seed: int) -> pd.DataFrame:
    """`statistic` on `bootstrap_resamples` resamples, over the CPU cores in worker processes (the metrics are
    Python-heavy scikit-learn calls, so threads would serialise); same resamples whatever the cores."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    resamples = [rng.integers(0, n, n) for _ in range(bootstrap_resamples)]
    workers = min(cpu_count(), bootstrap_resamples // PARALLEL_MIN_RESAMPLES)
    if workers <= 1:
        return pd.DataFrame(_statistics(statistic, resamples))
    chunks = [resamples[i::workers] for i in range(workers)]
    parts = Parallel(n_jobs=workers)(delayed(_statistics)(statistic, chunk) for chunk in chunks)
    rows: list[dict[str, float]] = [None] * bootstrap_resamples  # type: ignore[list-item]
    for i, part in enumerate(parts):
        rows[i::workers] = part
    return pd.DataFrame(rows)


def _statistics(statistic: Callable[[np.ndarray], dict[str, float]], resamples: list[np.ndarray]
                ) -> list[dict[str, float]]:
    return [statistic(idx) for idx in resamples]


def weighted_metrics(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray | float,
                     weights: np.ndarray) -> dict[str, np.ndarray]:
    """`VERDICT_METRICS` with record weights (rows of `weights`, e.g. bootstrap counts), all rows at once.

    The same definitions as `threshold_metrics` and `ranking_metrics` (scikit-learn's, with
    `sample_weight`): macro AUROC and AUPRC over the classes with positive and negative weight, AUROC
    by the trapezoid rule, AUPRC as average precision. Vectorised over the rows (resamples), since
    scikit-learn's one call per resample and run would take minutes per study.
    """
    y_true = np.asarray(y_true).astype(bool)
    y_pred = binarize(y_prob, thresholds).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    total = weights.sum(axis=1)
    tp, fp, fn = (weights @ (y_true & y_pred).sum(1), weights @ (~y_true & y_pred).sum(1),
                  weights @ (y_true & ~y_pred).sum(1))
    errors = (y_true != y_pred).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {"hamming_loss": weights @ errors / (total * y_true.shape[1]),
                  "subset_accuracy": weights @ (errors == 0) / total,
                  "micro_f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)}
        auroc, auprc = np.full((2, y_true.shape[1], len(weights)), np.nan)
        for k in range(y_true.shape[1]):
            order = np.argsort(-y_prob[:, k], kind="stable")
            scores, positive, w = y_prob[order, k], y_true[order, k], weights[:, order]
            ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last record of each distinct score
            tps, fps = np.cumsum(w * positive, axis=1)[:, ends], np.cumsum(w * ~positive, axis=1)[:, ends]
            n_pos, n_neg = tps[:, -1:], fps[:, -1:]
            tpr = np.hstack([np.zeros_like(n_pos), tps / n_pos])
            fpr = np.hstack([np.zeros_like(n_neg), fps / n_neg])
            scorable = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
            auroc[k] = np.where(scorable, np.trapezoid(tpr, fpr, axis=1), np.nan)
            precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
            auprc[k] = np.where(scorable, (np.diff(tpr, axis=1) * precision).sum(axis=1), np.nan)
        values["macro_auroc"], values["macro_auprc"] = np.nanmean(auroc, axis=0), np.nanmean(auprc, axis=0)
    return values


def resampled_run_metrics(y_true: np.ndarray, runs: dict[str, tuple[np.ndarray, np.ndarray | float]],
                          metrics: Sequence[str] = VERDICT_METRICS, bootstrap_resamples: int = 1000,
                          seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every run's `metrics` (of `VERDICT_METRICS`) on the test records and on `bootstrap_resamples`
    resamples of them (`weighted_metrics`).

    `runs` maps a key to (probabilities, thresholds) on the same records; every run sees the same
    resamples (paired). Returns the observed values (rows: keys) and, per metric, an array
    (resamples, keys) in the order of `runs`.
    """
    if unknown := sorted(set(metrics) - set(VERDICT_METRICS)):
        raise EcgkerasError(f"metric(s) {unknown} cannot be compared: choose from {', '.join(VERDICT_METRICS)}")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(bootstrap_resamples)])
    weights = np.vstack([np.ones(n), counts])  # row 0: the test records themselves
    values = {key: weighted_metrics(y_true, prob, cutoffs, weights) for key, (prob, cutoffs) in runs.items()}
    observed = pd.DataFrame([[values[key][name][0] for name in metrics] for key in runs], index=list(runs),
                            columns=list(metrics))
    return observed, {name: np.column_stack([values[key][name][1:] for key in runs]) for name in metrics}


def seed_aware_difference(observed_a: np.ndarray, observed_b: np.ndarray, resampled_a: np.ndarray,
                          resampled_b: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Difference of seed-averaged scores a - b with an interval for seed-to-seed and test-record variation.

    observed_*: (..., seeds) each seed's score on the test records; resampled_*: (..., resamples, seeds)
    the same runs on record resamples shared by a and b (paired). Leading axes broadcast (simulations).

    The variance of the difference of seed means has two parts (law of total variance):
    - test records: the paired bootstrap variance of (mean_a - mean_b), `V_records`; it holds the
      architecture-by-record interaction, which seeds cannot show (all seeds see the same records),
      and the record noise of each run;
    - seeds: per architecture sigma2_seed / n_seeds, where sigma2_seed is the between-seed variance s2 of
      the observed scores less the record noise it already holds (estimated as the bootstrap mean of the
      between-seed variance minus s2), floored at 0; without that correction the record noise counts twice.
    The interval is difference +- t(df) sqrt(V), df from Welch-Satterthwaite on the seed parts (n_seeds - 1
    each; the bootstrap part counts as exact), so few seeds widen it as a t interval does. With one seed of
    an architecture its seed variance is unknown and left out (`seed_variance_known` False).
    Why not a two-level bootstrap (resample seeds, then records): resampling 3 seeds underestimates
    their variance by a third and a percentile interval has no small-sample widening, while the record
    level counts the record noise a second time. In simulations with a known difference
    (tests/test_evaluation.py) these intervals cover it in 92-98% of 400 studies for 2 to 5 seeds.
    Returns difference, standard_error, df, ci_low, ci_high, p_value (two-sided, unadjusted).
    """
    def seed_part(observed: np.ndarray, resampled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = observed.shape[-1]
        if n < 2:
            zero = np.zeros(observed.shape[:-1])
            return zero, np.full(observed.shape[:-1], np.inf)
        spread = np.var(observed, axis=-1, ddof=1)
        noise = np.nanmean(np.var(resampled, axis=-1, ddof=1), axis=-1) - spread
        return np.maximum(spread - noise, 0) / n, np.full(observed.shape[:-1], n - 1.0)

    difference = observed_a.mean(axis=-1) - observed_b.mean(axis=-1)
    records = np.nanvar(resampled_a.mean(axis=-1) - resampled_b.mean(axis=-1), axis=-1, ddof=1)
    (seeds_a, df_a), (seeds_b, df_b) = seed_part(observed_a, resampled_a), seed_part(observed_b, resampled_b)
    variance = records + seeds_a + seeds_b
    with np.errstate(divide="ignore", invalid="ignore"):
        df = variance ** 2 / (seeds_a ** 2 / df_a + seeds_b ** 2 / df_b)
        df = np.where(np.isfinite(df), df, np.inf)
        error = np.sqrt(variance)
        quantile = stats.t.ppf(0.5 + level / 2, df)
        p_value = np.where(error > 0, 2 * stats.t.sf(np.abs(difference) / error, df),
                           np.where(difference == 0, 1.0, 0.0))
    return {"difference": difference, "standard_error": error, "df": df, "ci_low": difference - quantile * error,
            "ci_high": difference + quantile * error, "p_value": p_value,
            "seed_variance_known": np.broadcast_to(min(observed_a.shape[-1], observed_b.shape[-1]) > 1,
                                                   np.shape(difference))}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (statsmodels' `multipletests`, which runs a full
    garbage collection on each call: over the objects it makes only)."""
    from statsmodels.stats.multitest import multipletests

    p_values = np.asarray(p_values, dtype=float)
    if not len(p_values):
        return p_values
    with existing_objects_frozen():
        return multipletests(p_values, method="holm")[1]


def detectable_difference(standard_error: float, df: float = np.inf, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at `alpha` finds with probability `power`:
    (t(1 - alpha/2) + t(power)) x standard error."""
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * standard_error)
