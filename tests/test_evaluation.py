"""ecgkeras.evaluation: metrics on small hand-worked examples, threshold tuning and bootstrap intervals."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from ecgkeras import EcgkerasError
from ecgkeras.evaluation import (VERDICT_METRICS, all_metrics, binarize, bootstrap_intervals, calibration_metrics,
                                 detectable_difference, expected_calibration_error, holm, per_class_table,
                                 ranking_metrics, resampled_run_metrics, seed_aware_difference,
                                 threshold_metrics, tune_thresholds, weighted_metrics)

# 4 records x 3 classes; class 2 has no positive record.
Y_TRUE = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
Y_PRED = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])


def test_threshold_metrics_by_hand():
    m = threshold_metrics(Y_TRUE, Y_PRED)
    assert m["hamming_loss"] == pytest.approx(2 / 12)  # one missed positive, one false positive
    assert m["subset_accuracy"] == pytest.approx(2 / 4)  # records 0 and 3 exactly right
    # micro: TP=3, FP=1, FN=1 -> precision = recall = F1 = 0.75
    assert m["micro_precision"] == m["micro_recall"] == m["micro_f1"] == pytest.approx(0.75)
    # macro F1: class 0 P=1 R=0.5 F1=2/3, class 1 F1=1, class 2 F1=0 (no positives, zero_division=0)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_ranking_metrics_leave_out_classes_without_positives():
    y_prob = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.1], [0.3, 0.6, 0.9], [0.1, 0.2, 0.3]])
    m = ranking_metrics(Y_TRUE, y_prob)
    assert m["n_classes_scored"] == 2
    # class 0 ranks perfectly (AUROC 1); class 1: positives 0.7, 0.6 vs negatives 0.1, 0.2 -> 1
    assert m["macro_auroc"] == pytest.approx(1.0)
    assert m["macro_auprc"] == pytest.approx(1.0)
    worse = y_prob.copy()
    worse[:, 1] = [0.9, 0.1, 0.6, 0.2]  # class 1: one negative (0.9) above both positives
    m = ranking_metrics(Y_TRUE, worse)
    # class 1 AUROC: pairs (pos>neg) 0.1>{0.9,0.2}: 0, 0.6>{0.9,0.2}: 1 -> 1/4
    assert m["macro_auroc"] == pytest.approx((1 + 0.25) / 2)


def test_thresholds_are_tuned_per_class_and_default_without_positives():
    y_true = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    y_prob = np.array([[0.30, 0.9], [0.25, 0.1], [0.2, 0.2], [0.1, 0.3]])
    thresholds = tune_thresholds(y_true, y_prob)
    assert thresholds[0] == pytest.approx(0.25)  # the lowest threshold that keeps both positives and F1=1
    assert thresholds[1] == 0.5  # no positive: the default, not a value fitted to noise
    assert threshold_metrics(y_true[:, :1], (y_prob[:, :1] >= thresholds[0]).astype(int))["micro_f1"] == 1


def test_per_class_table():
    y_prob = np.array([[0.9, 0.1, 0.2], [0.4, 0.7, 0.1], [0.3, 0.6, 0.9], [0.1, 0.2, 0.3]])
    table = per_class_table(Y_TRUE, y_prob, 0.5, ["A", "B", "C"])
    assert table.loc["A", "support"] == 2 and table.loc["A", "recall"] == pytest.approx(0.5)
    assert table.loc["B", "precision"] == pytest.approx(1.0)
    assert np.isnan(table.loc["C", "auroc"]) and np.isnan(table.loc["C", "auprc"])
    assert list(table["threshold"]) == [0.5, 0.5, 0.5]


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, (200, 4))
    y_prob = np.clip(y_true * 0.6 + rng.normal(0.2, 0.25, y_true.shape), 0, 1)
    point = all_metrics(y_true, y_prob, 0.5)
    ci = bootstrap_intervals(y_true, y_prob, {"fixed": 0.5, "strict": 0.9}, bootstrap_resamples=100, seed=3)
    for name in ("macro_auprc", "micro_f1", "hamming_loss"):
        low, high = ci["fixed"][name]
        assert low < point[name] < high
    assert ci["fixed"]["macro_auprc"] == ci["strict"]["macro_auprc"]  # ranking metrics ignore thresholds
    assert ci["fixed"]["micro_f1"] != ci["strict"]["micro_f1"]
    assert ci == bootstrap_intervals(y_true, y_prob, {"fixed": 0.5, "strict": 0.9}, bootstrap_resamples=100, seed=3)


def test_bootstrap_gives_the_same_intervals_in_worker_processes_as_serially(monkeypatch):
    from ecgkeras import evaluation

    rng = np.random.default_rng(3)
    y_true = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    y_prob = np.clip(y_true * 0.4 + rng.random((300, 5)) * 0.6, 0, 1)
    thresholds = {"fixed": 0.5, "tuned": evaluation.tune_thresholds(y_true, y_prob)}
    monkeypatch.setattr(evaluation, "PARALLEL_MIN_RESAMPLES", 1000)
    serial = bootstrap_intervals(y_true, y_prob, thresholds, bootstrap_resamples=40, seed=5)
    monkeypatch.setattr(evaluation, "PARALLEL_MIN_RESAMPLES", 10)
    monkeypatch.setattr(evaluation, "cpu_count", lambda: 2)  # two worker processes even on one core
    assert bootstrap_intervals(y_true, y_prob, thresholds, bootstrap_resamples=40, seed=5) == serial


def test_expected_calibration_error_by_hand():
    # 10 equal-width bins; bins hold [0.05] (y 0), [0.15, 0.12] (y 0, 1), [0.6] (y 0), [0.85] (y 1), [0.95] (y 1)
    y_prob = np.array([0.05, 0.15, 0.12, 0.85, 0.95, 0.6])
    y_true = np.array([0, 0, 1, 1, 1, 0])
    gaps = [abs(0 - 0.05), 2 * abs(0.5 - 0.135), abs(0 - 0.6), abs(1 - 0.85), abs(1 - 0.95)]  # count x |gap|
    assert expected_calibration_error(y_true, y_prob) == pytest.approx(sum(gaps) / 6)  # = 1.58 / 6
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0  # perfectly calibrated


def test_calibration_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    y_prob = rng.beta(0.5, 2.0, (300, 4))
    y_true = (rng.random((300, 4)) < y_prob ** 0.7).astype(int)  # deliberately miscalibrated
    m = calibration_metrics(y_true, y_prob)
    per_class_brier = [brier_score_loss(y_true[:, k], y_prob[:, k]) for k in range(4)]
    assert m["brier_score"] == pytest.approx(np.mean(per_class_brier))  # class average ...
    assert m["brier_score"] == pytest.approx(brier_score_loss(y_true.ravel(), y_prob.ravel()))  # ... = micro

    def ece_from_calibration_curve(y, p):
        fraction_positive, mean_probability = calibration_curve(y, p, n_bins=10, strategy="uniform")
        counts, _ = np.histogram(p, bins=np.linspace(0, 1, 11))  # no probability lies on an edge here
        return np.sum(counts[counts > 0] / len(p) * np.abs(fraction_positive - mean_probability))

    assert m["ece"] == pytest.approx(ece_from_calibration_curve(y_true.ravel(), y_prob.ravel()))
    assert m["macro_ece"] == pytest.approx(np.mean([ece_from_calibration_curve(y_true[:, k], y_prob[:, k])
                                                    for k in range(4)]))
    assert m["ece"] > 0.02  # the miscalibration is seen
    assert all_metrics(y_true, y_prob, 0.5)["brier_score"] == m["brier_score"]  # in every run record


def _simulated_intervals(sims=400, seeds=3, n=300, resamples=200, sd_seed=0.02, sd_interaction=0.1, rng_seed=0,
                         **options):
    """seed_aware_difference on `sims` simulated studies of two architectures whose true difference is 0.02.

    A run's score on record i is mu_arch + seed effect + record difficulty (shared by all runs) +
    architecture-by-record interaction + noise; its metric is the mean over the test records."""
    rng = np.random.default_rng(rng_seed)
    mu = np.array([0.02, 0.0])
    scores = (mu[None, :, None, None] + rng.normal(0, sd_seed, (sims, 2, seeds, 1))
              + rng.normal(0, 0.3, (sims, 1, 1, n)) + rng.normal(0, sd_interaction, (sims, 2, 1, n))
              + rng.normal(0, 0.3, (sims, 2, seeds, n)))
    weights = rng.multinomial(n, np.full(n, 1 / n), size=resamples) / n  # record resamples, shared (paired)
    observed, resampled = scores.mean(axis=-1), np.swapaxes(scores @ weights.T, -1, -2)
    result = seed_aware_difference(observed[:, 0], observed[:, 1], resampled[:, 0], resampled[:, 1], **options)
    return result, np.mean((result["ci_low"] <= 0.02) & (0.02 <= result["ci_high"]))


@pytest.mark.parametrize("scenario", [{}, {"seeds": 2}, {"seeds": 5, "sd_seed": 0.05}, {"sd_interaction": 0.3},
                                      {"sd_seed": 0.0}])
def test_seed_aware_95_percent_intervals_cover_the_true_difference(scenario):
    _, coverage = _simulated_intervals(**scenario)
    assert 0.90 <= coverage <= 0.99


def test_without_the_seed_part_intervals_undercover_when_seeds_vary():
    """The record bootstrap alone (what one seed per architecture can give) misses the seed-to-seed spread."""
    result, _ = _simulated_intervals(sd_seed=0.05)
    assert np.all(result["seed_variance_known"])
    _, records_only = _simulated_intervals(seeds=1, sd_seed=0.05)  # one seed: the seed spread is unknown
    assert records_only < 0.7  # measured 0.55


def test_one_seed_has_no_seed_variance_and_says_so():
    result, _ = _simulated_intervals(seeds=1, sims=5)
    assert not result["seed_variance_known"].any() and np.isinf(result["df"]).all()


def test_holm_matches_the_step_down_definition():
    # sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then made monotone: 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.9 x 1 raised to 1.0: monotone
    assert holm([]).size == 0


def test_detectable_difference_is_the_power_calculation():
    assert detectable_difference(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert detectable_difference(0.01, df=2) > detectable_difference(0.01)


def test_weighted_metrics_match_scikit_learn_on_resamples_with_ties_and_unscorable_classes():
    rng = np.random.default_rng(4)
    y_true = (rng.random((60, 4)) < 0.3).astype(np.uint8)
    y_true[:, 3] = 0
    y_true[5, 3] = 1  # a rare class: unscorable in resamples that miss record 5
    y_prob = np.round(rng.random((60, 4)), 1)  # many tied scores
    thresholds = np.array([0.5, 0.3, 0.6, 0.4])
    resamples = [rng.integers(0, 60, 60) for _ in range(25)]
    counts = np.stack([np.bincount(idx, minlength=60) for idx in resamples])
    fast = weighted_metrics(y_true, y_prob, thresholds, counts)
    for row, idx in enumerate(resamples):
        slow = {**threshold_metrics(y_true[idx], binarize(y_prob[idx], thresholds)),
                **ranking_metrics(y_true[idx], y_prob[idx])}
        for name in VERDICT_METRICS:
            assert fast[name][row] == pytest.approx(slow[name], abs=1e-12), (name, row)


def test_resampled_run_metrics_pairs_the_resamples_and_refuses_other_metrics():
    rng = np.random.default_rng(5)
    y_true = (rng.random((40, 3)) < 0.4).astype(np.uint8)
    prob = rng.random((40, 3))
    observed, resampled = resampled_run_metrics(y_true, {"a": (prob, 0.5), "b": (prob, 0.5)}, bootstrap_resamples=30)
    assert observed.loc["a", "micro_f1"] == pytest.approx(threshold_metrics(y_true, binarize(prob, 0.5))["micro_f1"])
    assert resampled["macro_auroc"].shape == (30, 2)
    np.testing.assert_array_equal(resampled["macro_auroc"][:, 0], resampled["macro_auroc"][:, 1])
    with pytest.raises(EcgkerasError, match="brier_score"):
        resampled_run_metrics(y_true, {"a": (prob, 0.5)}, metrics=("brier_score",), bootstrap_resamples=3)
