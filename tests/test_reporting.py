"""Reporting reads run records only: fake but valid run folders with known values, no training."""

import json
import re
import zipfile

import matplotlib
import numpy as np
import pandas as pd
import pytest

from ecgkeras import EcgkerasError
from ecgkeras.report.figures import (plot_complexity, plot_history, plot_paired_comparison, plot_recall_bars,
                                     plot_recall_heatmap, save_figure)
from ecgkeras.report.formatting import format_table, save_table
from ecgkeras.report.summary import write_summary
from ecgkeras.report.tables import (PAPER_REFERENCE, paired_comparisons, per_class_recall, reference_table, runs_frame,
                                    summary_table)
from ecgkeras.runs import RECORD_FORMAT, RunConfig, find_runs

matplotlib.use("Agg")

CLASSES = ["NORM", "AMI", "IMI", "LVH"]
N_TEST = 150
SEEDS = (0, 1)
ARCHS = ("cnn", "cnn-lstm", "cnn-bilstm")  # registry order
DISPLAY = ["CNN", "CNN-LSTM", "CNN-BiLSTM"]
# Known test-fold values (tuned policy) per architecture, seeds 0 and 1. Lowest Hamming loss:
# CNN-LSTM; highest macro-AUPRC: CNN-BiLSTM (different rows on purpose).
AUPRC = {"cnn": (0.40, 0.44), "cnn-lstm": (0.46, 0.47), "cnn-bilstm": (0.50, 0.56)}
HAMMING = {"cnn": (0.050, 0.054), "cnn-lstm": (0.031, 0.033), "cnn-bilstm": (0.040, 0.036)}
PARAMETERS = {"cnn": 100_000, "cnn-lstm": 150_000, "cnn-bilstm": 200_000}
# Signal share of the fake probabilities: CNN-LSTM predicts exactly like CNN (a self-comparison),
# CNN-BiLSTM nearly perfectly.
SIGNAL = {"cnn": 0.2, "cnn-lstm": 0.2, "cnn-bilstm": 0.85}

RNG = np.random.default_rng(3)
Y_TEST = (RNG.random((N_TEST, len(CLASSES))) < 0.3).astype(np.uint8)
NOISE = RNG.random((N_TEST, len(CLASSES)))
ECG_IDS = np.arange(1000, 1000 + N_TEST)


def recall_of(arch: str, seed: int) -> list[float]:
    return [round(0.1 * (k + 1) + 0.05 * ARCHS.index(arch) + 0.02 * seed, 6) for k in range(len(CLASSES))]


def known_metrics(arch: str, seed: int, policy: str) -> dict:
    auprc, hamming = AUPRC[arch][seed], HAMMING[arch][seed] + (0.01 if policy == "fixed" else 0)
    return {"hamming_loss": hamming, "macro_auprc": auprc, "micro_f1": auprc + 0.2, "subset_accuracy": auprc + 0.1,
            "macro_auroc": 0.8 + auprc / 10, "macro_f1": auprc - 0.05, "micro_auprc": auprc,
            "n_classes_scored": len(CLASSES), "ci95": {}}



def write_run(run_dir, arch, seed, data_dir, ecg_ids=ECG_IDS, synthetic=False):
    """A complete run folder in the record format of `run_experiment`, with known values."""
    run_dir.mkdir(parents=True)
    config = RunConfig(data_dir=str(data_dir), architecture=arch, seed=seed, bootstrap_resamples=0)
    prob = SIGNAL[arch] * Y_TEST + (1 - SIGNAL[arch]) * NOISE
    support = Y_TEST.sum(axis=0)
    per_class = [{"class": name, "support": int(support[k]), "precision": 0.5, "recall": recall_of(arch, seed)[k],
                  "f1": 0.5, "auprc": 0.5, "auroc": 0.7, "threshold": 0.5} for k, name in enumerate(CLASSES)]
    record = {
        "format": RECORD_FORMAT, "status": "complete", "config": config.to_dict(), "versions": {},
        "architecture": {"name": arch, "display_name": DISPLAY[ARCHS.index(arch)]},
        "classes": CLASSES,
        "data": {"n_train": 800, "n_val": 100, "n_test": N_TEST, "n_dropped": 0, "input_shape": [1000, 12],
                 "split_folds": {"train": list(range(1, 9)), "val": [9], "test": [10]},
                 "provenance": {"synthetic": synthetic, "data_dir": str(data_dir), "database_sha256": "0" * 64}},
        "standardizer": {"mean": [0.0] * 12, "std": [1.0] * 12},
        "n_parameters": PARAMETERS[arch],
        "timings": {"epochs_run": 2, "best_epoch": 2, "seconds_per_epoch": 10.0 * (ARCHS.index(arch) + 1) + seed,
                    "first_epoch_seconds": 20.0, "training_seconds": 40.0, "inference_ms_per_ecg": 1.5},
        "thresholds": {"fixed": [0.5] * len(CLASSES), "tuned": [0.5] * len(CLASSES)},
        "metrics": {split: {policy: known_metrics(arch, seed, policy) for policy in ("fixed", "tuned")}
                    for split in ("val", "test")},
        "per_class": {split: {policy: per_class for policy in ("fixed", "tuned")} for split in ("val", "test")},
    }
    np.savez_compressed(run_dir / "predictions.npz", classes=np.asarray(CLASSES), val_ecg_ids=ecg_ids,
                        val_true=Y_TEST, val_prob=prob, test_ecg_ids=ecg_ids, test_true=Y_TEST, test_prob=prob)
    (run_dir / "history.csv").write_text("epoch,auprc,loss,val_auprc,val_loss\n0,0.30,0.60,0.35,0.55\n"
                                         "1,0.40,0.50,0.38,0.52\n")
    with zipfile.ZipFile(run_dir / "model.keras", "w") as model:  # whole, with Keras' entries; never loaded
        for name in ("metadata.json", "config.json", "model.weights.h5"):
            model.writestr(name, "{}")
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """3 architectures x 2 seeds on a (non-synthetic) data folder."""
    root = tmp_path_factory.mktemp("study")
    (root / "data").mkdir()
    for arch in ARCHS:
        for seed in SEEDS:
            write_run(root / "study" / arch / f"seed-{seed}", arch, seed, root / "data")
    return root / "study"


@pytest.fixture(scope="module")
def runs(study):
    return find_runs(study)


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


def test_best_values_are_marked_on_the_right_rows(runs):
    summary = summary_table(runs)
    markdown = format_table(summary, markup="markdown")
    assert markdown.loc["CNN-LSTM", "Hamming loss"] == "**0.0320 ± 0.0014**"  # lowest is best
    assert markdown.loc["CNN-BiLSTM", "macro-AUPRC"] == "**0.5300 ± 0.0424**"  # highest is best
    assert markdown.loc["CNN", "macro-AUPRC"] == "0.4200 ± 0.0283"
    assert markdown["Hamming loss"].str.contains(r"\*\*").sum() == 1
    assert markdown["macro-AUPRC"].str.contains(r"\*\*").sum() == 1
    assert markdown.loc["CNN", "parameters"] == "100,000" and "**" not in markdown["parameters"].str.cat()
    latex = format_table(summary, markup="latex")
    assert latex.loc["CNN-BiLSTM", "macro-AUPRC"] == r"\textbf{0.5300 $\pm$ 0.0424}"
    assert latex.loc["CNN-LSTM", "Hamming loss"].startswith(r"\textbf{")


def test_no_plus_minus_with_a_single_seed(runs):
    single = format_table(summary_table([run for run in runs if run.seed == 0]))
    assert single.loc["CNN", "macro-AUPRC"] == "0.4000"
    assert not single.stack().str.contains("±").any()


def test_saved_tables_exist_and_the_csv_round_trips(runs, tmp_path):
    summary = summary_table(runs)
    paths = save_table(summary, tmp_path, "results_tuned")
    assert {path.name for path in paths} == {"results_tuned.md", "results_tuned.csv", "results_tuned.tex"}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results_tuned.csv", index_col=0), summary)
    markdown = re.sub(r" +", " ", (tmp_path / "results_tuned.md").read_text())  # tabulate pads columns
    assert markdown.startswith("| Architecture | Hamming loss |") and "**0.5300 ± 0.0424**" in markdown
    tex = (tmp_path / "results_tuned.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{0.5300 $\pm$ 0.0424}" in tex
    assert tex.count(r" \\") == len(summary) + 1  # header and one row per architecture


def test_per_class_recall_matches_the_records(runs):
    recall = per_class_recall(runs)
    assert list(recall.index) == CLASSES and list(recall.columns) == ["support", *DISPLAY]
    np.testing.assert_array_equal(recall["support"], Y_TEST.sum(axis=0))
    for arch, name in zip(ARCHS, DISPLAY):
        expected = np.mean([recall_of(arch, seed) for seed in SEEDS], axis=0)
        np.testing.assert_allclose(recall[name], expected)


def test_paired_comparison_against_itself_is_zero_and_a_better_model_wins(runs):
    comparison = paired_comparisons(runs, reference="cnn", bootstrap_resamples=50)
    assert set(comparison["reference"]) == {"cnn"} and set(comparison["architecture"]) == {"cnn-lstm", "cnn-bilstm"}
    assert set(comparison["reference_display_name"]) == {"CNN"}
    assert set(comparison["display_name"]) == {"CNN-LSTM", "CNN-BiLSTM"}
    same = comparison[comparison["architecture"] == "cnn-lstm"]  # identical predictions and thresholds
    assert (same[["difference", "ci_low", "ci_high"]] == 0).all().all() and not same["significant"].any()
    better = comparison[comparison["architecture"] == "cnn-bilstm"]
    assert (better["difference"] > 0).all() and (better["ci_low"] > 0).all() and better["significant"].all()
    assert set(better["metric"]) == {"macro_auprc", "micro_f1"} and set(better["seed"]) == {0}
    # default reference: best mean test macro-AUPRC in the records (CNN-BiLSTM), by display name too
    default = paired_comparisons(runs, bootstrap_resamples=20)
    assert set(default["reference"]) == {"cnn-bilstm"} and (default["difference"] < 0).all()
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


def test_figures_are_returned_and_saved(runs, tmp_path):
    import matplotlib.pyplot as plt

    recall = per_class_recall(runs)
    figures = {"heatmap": plot_recall_heatmap(recall), "bars": plot_recall_bars(recall),
               "complexity": plot_complexity(summary_table(runs)), "history": plot_history(runs[0].history),
               "paired": plot_paired_comparison(paired_comparisons(runs, bootstrap_resamples=10))}
    assert "NORM (n=" in figures["heatmap"].axes[0].get_yticklabels()[0].get_text()
    assert len(figures["complexity"].axes) == 2 and len(figures["history"].axes) == 2
    for stem, fig in figures.items():
        paths = save_figure(fig, tmp_path, stem)
        assert [path.suffix for path in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
        plt.close(fig)


def test_write_summary_writes_every_table_figure_and_readme(study):
    out = write_summary(study, bootstrap_resamples=50)
    assert out == study / "summary"
    for stem in ("results_tuned", "results_fixed", "per_class_recall", "paired_comparison"):
        for ext in ("md", "csv", "tex"):
            assert (out / f"{stem}.{ext}").is_file(), f"{stem}.{ext}"
    for stem in ("recall_heatmap", "recall_bars", "complexity", "paired_comparison"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 0, f"{stem}.{ext}"
    readme = (out / "README.md").read_text()
    assert "SYNTHETIC" not in readme
    assert "sampling rate: 100 Hz" in readme and f"test {N_TEST}" in readme and str(study.parent / "data") in readme
    assert "results_tuned.md" in readme and "0.4715" in readme
    assert len(pd.read_csv(out / "runs.csv")) == len(ARCHS) * len(SEEDS) * 2
    paired = re.sub(r" +", " ", (out / "paired_comparison.md").read_text())
    assert "| CNN | 0 | CNN-BiLSTM | 0 | macro-AUPRC |" in paired  # default reference: the best
    assert len(find_runs(study)) == len(ARCHS) * len(SEEDS)  # the summary folder adds no runs


def test_synthetic_data_is_said_prominently_even_when_the_data_folder_is_gone(tmp_path):
    # the record says what the data was when the run trained; the folder itself may be deleted since
    write_run(tmp_path / "study" / "cnn" / "seed-0", "cnn", 0, tmp_path / "deleted", synthetic=True)
    out = write_summary(tmp_path / "study", tmp_path / "elsewhere", bootstrap_resamples=10)
    assert out == tmp_path / "elsewhere"
    readme = (out / "README.md").read_text()
    assert "**SYNTHETIC DATA, NOT PTB-XL.**" in readme.split("\n## ")[0]
    assert pd.read_csv(out / "paired_comparison.csv").empty and (out / "paired_comparison.png").is_file()


def test_empty_or_incomplete_study_folder_is_refused(tmp_path):
    with pytest.raises(EcgkerasError, match="no complete runs"):
        write_summary(tmp_path)
    (tmp_path / "cnn" / "seed-0").mkdir(parents=True)
    (tmp_path / "cnn" / "seed-0" / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(EcgkerasError, match="no complete runs"):
        write_summary(tmp_path)


def test_reference_table_holds_the_published_numbers():
    table = reference_table()
    jafari = table.loc["Jafari & Jafari 2026"]
    assert jafari["model"] == "CNN-BiLSTM" and jafari["hamming_loss"] == 0.0338 and jafari["macro_auprc"] == 0.4715
    assert jafari["micro_f1"] == 0.6979 and jafari["subset_accuracy"] == 0.5723
    assert table["macro_auroc"].dropna().item() == pytest.approx(0.93)
    assert len(table) == len(PAPER_REFERENCE)
