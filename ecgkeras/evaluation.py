"""Multi-label metrics (scikit-learn), validation-tuned thresholds and bootstrap intervals.

Conventions:
- Threshold-based metrics come in two policies: a fixed 0.5, and per-class thresholds
  tuned on the validation fold (each class's F1 maximized). The test fold never tunes.
- Macro AUROC/AUPRC average over the classes that have at least one positive and one
  negative record in the evaluated fold; the others are left out and counted
  (`n_classes_scored`), never turned into 0 or 1.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from joblib import Parallel, cpu_count, delayed
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                             precision_recall_curve, precision_recall_fscore_support, precision_score,
                             recall_score, roc_auc_score)

PARALLEL_MIN_RESAMPLES = 100  # per worker process: below this, starting workers costs more than it saves
HEADLINE_METRICS: tuple[str, ...] = ("hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy",
                                     "macro_auroc", "macro_f1")
LOWER_IS_BETTER = frozenset({"hamming_loss"})


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


def all_metrics(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray | float) -> dict[str, float]:
    """Ranking metrics plus threshold metrics at `thresholds`."""
    return {**threshold_metrics(y_true, binarize(y_prob, thresholds)), **ranking_metrics(y_true, y_prob)}


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
                        n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        metrics: tuple[str, ...] = HEADLINE_METRICS) -> dict[str, dict[str, list[float]]]:
    """Percentile bootstrap intervals of `metrics` for each threshold policy in `thresholds`.

    Records are resampled with replacement; all policies share the resamples, and the
    ranking metrics (which no threshold changes) are computed once per resample.
    """
    if n_resamples <= 0:
        return {}

    def statistic(idx: np.ndarray) -> dict[str, float]:
        ranking = ranking_metrics(y_true[idx], y_prob[idx])
        values = {}
        for policy, cutoffs in thresholds.items():
            for name, value in {**threshold_metrics(y_true[idx], binarize(y_prob[idx], cutoffs)),
                                **ranking}.items():
                values[f"{policy}/{name}"] = value
        return values

    samples = _bootstrap(y_true, statistic, n_resamples, seed)
    tail = (1 - level) / 2 * 100
    return {policy: {name: np.nanpercentile(samples[f"{policy}/{name}"], [tail, 100 - tail]).tolist()
                     for name in metrics}
            for policy in thresholds}


def paired_bootstrap(y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray,
                     thresholds_a: np.ndarray | float, thresholds_b: np.ndarray | float,
                     metrics: tuple[str, ...] = ("macro_auprc", "micro_f1"),
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Difference a - b of `metrics` on the same records, with a paired percentile bootstrap interval."""
    def difference(idx: np.ndarray) -> dict[str, float]:
        a = all_metrics(y_true[idx], prob_a[idx], thresholds_a)
        b = all_metrics(y_true[idx], prob_b[idx], thresholds_b)
        return {name: a[name] - b[name] for name in metrics}

    observed = difference(np.arange(len(y_true)))
    samples = _bootstrap(y_true, difference, n_resamples, seed)
    tail = (1 - level) / 2 * 100
    rows = []
    for name in metrics:
        low, high = np.nanpercentile(samples[name], [tail, 100 - tail])
        rows.append({"metric": name, "difference": observed[name], "ci_low": low, "ci_high": high,
                     "significant": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows)


def _bootstrap(y_true: np.ndarray, statistic: Callable[[np.ndarray], dict[str, float]],
               n_resamples: int, seed: int) -> pd.DataFrame:
    """`statistic` on `n_resamples` resamples, over the CPU cores in worker processes (the metrics are
    Python-heavy scikit-learn calls, so threads would serialise); same resamples whatever the cores."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    resamples = [rng.integers(0, n, n) for _ in range(n_resamples)]
    workers = min(cpu_count(), n_resamples // PARALLEL_MIN_RESAMPLES)
    if workers <= 1:
        return pd.DataFrame(_statistics(statistic, resamples))
    chunks = [resamples[i::workers] for i in range(workers)]
    parts = Parallel(n_jobs=workers)(delayed(_statistics)(statistic, chunk) for chunk in chunks)
    rows: list[dict[str, float]] = [None] * n_resamples  # type: ignore[list-item]
    for i, part in enumerate(parts):
        rows[i::workers] = part
    return pd.DataFrame(rows)


def _statistics(statistic: Callable[[np.ndarray], dict[str, float]], resamples: list[np.ndarray]
                ) -> list[dict[str, float]]:
    return [statistic(idx) for idx in resamples]
