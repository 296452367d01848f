"""ecgkeras.report.tables: run records to tables (fake but valid run folders with known values, no
training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import ARCHS, AUPRC, CLASSES, DISPLAY, ECG_IDS, HAMMING, PARAMETERS, SEEDS, Y_TEST, recall_of, write_run

from ecgkeras import EcgkerasError
from ecgkeras.evaluation import VERDICT_METRICS
from ecgkeras.report.summary import convergence_lines
from ecgkeras.report.tables import (PAPER_REFERENCE, paired_comparisons, per_class_recall, reference_table, runs_frame,
                                    summary_table, unconverged_runs)
from ecgkeras.runs import find_runs


def test_runs_frame_has_one_row_per_architecture_seed_and_policy(runs):
    frame = runs_frame(runs)
    assert len(frame) == len(ARCHS) * len(SEEDS) * 2
    assert list(dict.fromkeys(frame["architecture"])) == list(ARCHS)
    row = frame[(frame["architecture"] == "cnn-lstm") & (frame["seed"] == 1) & (frame["policy"] == "fixed")]
    assert row["hamming_loss"].item() == pytest.approx(0.043) and row["n_parameters"].item() == 150_000


def test_summary_table_means_and_stds_over_seeds(runs):
    summary = summary_table(runs)
    assert list(summary.index) == list(ARCHS) and summary.index.name == "architecture"  # registry names
    assert list(summary["display_name"]) == DISPLAY
    for arch in ARCHS:
        assert summary.loc[arch, "macro_auprc"] == pytest.approx(np.mean(AUPRC[arch]))
        assert summary.loc[arch, "macro_auprc_std"] == pytest.approx(np.std(AUPRC[arch], ddof=1))
        assert summary.loc[arch, "hamming_loss"] == pytest.approx(np.mean(HAMMING[arch]))
        assert summary.loc[arch, "n_parameters"] == PARAMETERS[arch] and summary.loc[arch, "n_seeds"] == 2
    assert summary.loc["cnn-lstm", "seconds_per_epoch"] == pytest.approx(20.5)
    fixed = summary_table(runs, policy="fixed")
    assert fixed.loc["cnn", "hamming_loss"] == pytest.approx(np.mean(HAMMING["cnn"]) + 0.01)
    with pytest.raises(EcgkerasError, match="policy"):
        summary_table(runs, policy="best")


def test_per_class_recall_matches_the_records(runs):
    recall = per_class_recall(runs)
    assert list(recall.index) == CLASSES and list(recall.columns) == ["support", *DISPLAY]
    np.testing.assert_array_equal(recall["support"], Y_TEST.sum(axis=0))
    for arch, name in zip(ARCHS, DISPLAY):
        expected = np.mean([recall_of(arch, seed) for seed in SEEDS], axis=0)
        np.testing.assert_allclose(recall[name], expected)


def test_paired_comparison_against_itself_is_zero_and_a_better_model_wins(runs):
    comparison = paired_comparisons(runs, reference="cnn", metrics=("macro_auprc", "micro_f1"), bootstrap_resamples=50)
    assert set(comparison["reference"]) == {"cnn"} and set(comparison["architecture"]) == {"cnn-lstm", "cnn-bilstm"}
    assert set(comparison["reference_display_name"]) == {"CNN"}
    assert set(comparison["display_name"]) == {"CNN-LSTM", "CNN-BiLSTM"}
    assert set(comparison["n_seeds"]) == set(comparison["reference_n_seeds"]) == {len(SEEDS)}  # every seed
    same = comparison[comparison["architecture"] == "cnn-lstm"]  # identical predictions and thresholds
    assert (same[["difference", "ci_low", "ci_high"]] == 0).all().all() and not same["significant"].any()
    better = comparison[comparison["architecture"] == "cnn-bilstm"]
    assert (better["difference"] > 0).all() and (better["ci_low"] > 0).all() and better["significant"].all()
    assert set(better["metric"]) == {"macro_auprc", "micro_f1"} and (better["p_holm"] >= better["p_value"]).all()
    # default reference: per metric the best seed mean (CNN-BiLSTM), by display name too
    default = paired_comparisons(runs, bootstrap_resamples=20)
    assert list(dict.fromkeys(default["metric"])) == list(VERDICT_METRICS)
    assert set(default["reference"]) == {"cnn-bilstm"}
    lower = default["metric"] == "hamming_loss"
    assert (default.loc[lower, "difference"] > 0).all() and (default.loc[~lower & (default["architecture"] == "cnn"),
                                                                          "difference"] < 0).all()
    pd.testing.assert_frame_equal(paired_comparisons(runs, reference="CNN-BiLSTM", bootstrap_resamples=20), default)
    with pytest.raises(EcgkerasError, match="reference"):
        paired_comparisons(runs, reference="cnn-gru", bootstrap_resamples=20)


def test_mismatched_test_records_are_refused(tmp_path):
    write_run(tmp_path / "cnn" / "seed-0", "cnn", 0, tmp_path)
    write_run(tmp_path / "cnn-lstm" / "seed-0", "cnn-lstm", 0, tmp_path, ecg_ids=ECG_IDS[::-1].copy())
    with pytest.raises(EcgkerasError, match="different records"):
        paired_comparisons(find_runs(tmp_path), reference="cnn", bootstrap_resamples=10)


def test_two_runs_of_one_architecture_and_seed_are_refused(tmp_path):
    write_run(tmp_path / "a" / "cnn" / "seed-0", "cnn", 0, tmp_path)
    write_run(tmp_path / "b" / "cnn" / "seed-0", "cnn", 0, tmp_path)
    with pytest.raises(EcgkerasError, match="two runs of cnn seed 0"):
        runs_frame(find_runs(tmp_path))


def test_reference_table_holds_the_published_numbers():
    table = reference_table()
    jafari = table.loc["Jafari & Jafari 2026"]
    assert jafari["model"] == "CNN-BiLSTM" and jafari["hamming_loss"] == 0.0338 and jafari["macro_auprc"] == 0.4715
    assert jafari["micro_f1"] == 0.6979 and jafari["subset_accuracy"] == 0.5723
    assert table["macro_auroc"].dropna().item() == pytest.approx(0.93)
    assert len(table) == len(PAPER_REFERENCE)


@pytest.mark.slow
def test_tables_and_readme_mark_the_unconverged_run(two_runs):
    # the two runs differ in epochs and patience: a row each (crossed parameters), one converged
    assert sorted(summary_table(two_runs)["converged"]) == ["0/1", "1/1"]
    listed = unconverged_runs(two_runs)
    assert list(listed["seed"]) == [0] and listed["stopped_by"].item() == "epoch_cap"
    text = "\n".join(convergence_lines(two_runs))
    assert "1 run(s) had not converged" in text and "CNN, seed 0: epoch_cap, 8 of 8 epochs" in text
    assert "Every run converged." in "\n".join(convergence_lines(two_runs[:1]))


def test_a_crossed_parameter_gives_a_row_per_value_grouped_by_it(tmp_path):
    for arch in ("cnn", "cnn-lstm"):
        for readout in ("last", "pool"):
            for seed in SEEDS:
                write_run(tmp_path / f"{arch}@rnn_readout={readout}" / f"seed-{seed}", arch, seed, tmp_path,
                          parameters={"rnn_readout": readout})
    runs = find_runs(tmp_path)
    summary = summary_table(runs)
    assert list(summary.index) == ["cnn@rnn_readout=last", "cnn-lstm@rnn_readout=last", "cnn@rnn_readout=pool",
                                   "cnn-lstm@rnn_readout=pool"]  # grouped by the crossed value, then registry order
    assert list(summary["rnn_readout"]) == ["last", "last", "pool", "pool"] and set(summary["n_seeds"]) == {2}
    assert summary.loc["cnn-lstm@rnn_readout=pool", "display_name"] == "CNN-LSTM (rnn_readout=pool)"
    assert list(runs_frame(runs)["rnn_readout"][:2]) == ["last", "last"]
    recall = per_class_recall(runs)
    assert "CNN (rnn_readout=pool)" in recall.columns and len(recall.columns) == 5
    comparison = paired_comparisons(runs, metrics=("micro_f1",), bootstrap_resamples=10)
    assert len(comparison) == 3 and comparison["architecture"].is_unique
    from ecgkeras.report.summary import write_summary

    readme = (write_summary(tmp_path, tmp_path / "summary", bootstrap_resamples=10) / "README.md").read_text()
    assert "**Runs differ in rnn_readout**" in readme and "- CNN-LSTM (rnn_readout=pool): seed(s) 0, 1" in readme
