"""ecgkeras.report.verdict: the verdict names the right set on constructed records (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CLASSES, N_TEST, Y_TEST, write_run

from ecgkeras.evaluation import VERDICT_METRICS
from ecgkeras.report.site import write_site
from ecgkeras.report.summary import write_summary
from ecgkeras.report.tables import paired_comparisons, summary_table
from ecgkeras.report.verdict import verdict_table
from ecgkeras.runs import find_runs

# Two good architectures of the same signal (tied) and two poor ones (tied with each other); the good
# pair differs in cost: CNN-GRU is the smaller, CNN-BiLSTM the faster.
SIGNAL = {"cnn": 0.15, "cnn-lstm": 0.15, "cnn-gru": 0.45, "cnn-bilstm": 0.45}
COST = {"cnn": (100_000, 5.0), "cnn-lstm": (150_000, 6.0), "cnn-gru": (120_000, 30.0),
        "cnn-bilstm": (240_000, 20.0)}


def _study(root, seeds):
    rng = np.random.default_rng(11)
    (root / "data").mkdir(parents=True)
    for arch, signal in SIGNAL.items():
        for seed in seeds:
            prob = signal * Y_TEST + (1 - signal) * rng.random((N_TEST, len(CLASSES)))
            write_run(root / "study" / arch / f"seed-{seed}", arch, seed, root / "data", prob=prob,
                      n_parameters=COST[arch][0], seconds_per_epoch=COST[arch][1])
    return root / "study"


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    return _study(tmp_path_factory.mktemp("verdict"), (0, 1, 2))


def test_the_verdict_names_the_tied_best_pair_and_its_cheapest_members(three_seeds):
    runs = find_runs(three_seeds)
    comparison = paired_comparisons(runs, bootstrap_resamples=200)
    verdict = verdict_table(comparison, summary_table(runs)).set_index("metric")
    assert list(verdict.index) == list(VERDICT_METRICS)
    for metric, row in verdict.iterrows():
        assert row["best"] in {"cnn-gru", "cnn-bilstm"}, metric
        assert sorted(row["indistinguishable"]) == ["cnn-bilstm", "cnn-gru"], metric
        assert row["cheapest_by_parameters"] == "cnn-gru" and row["cheapest_by_seconds_per_epoch"] == "cnn-bilstm"
        assert 0 < row["detectable_difference"] < 0.2
    poor = comparison[comparison["architecture"].isin(["cnn", "cnn-lstm"])]
    assert poor["significant"].all() and (poor["p_holm"] < 0.05).all()


def test_the_summary_and_the_report_open_with_the_verdict(three_seeds):
    out = write_summary(three_seeds, bootstrap_resamples=100)
    readme = (out / "README.md").read_text()
    verdict = readme[readme.index("## Verdict"):readme.index("## Data")]
    assert f"3 seed(s) per architecture and {N_TEST} test records" in verdict
    assert "cannot separate" not in verdict
    rows = [line for line in verdict.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| Hamming loss", "| macro-AUPRC", "| micro-F1",
                                                     "| subset accuracy", "| macro-AUROC"]
    for row in rows:
        cells = row.split(" | ")
        assert "CNN-GRU" in cells[2] and "CNN-BiLSTM" in cells[2] and "CNN-LSTM" not in cells[2]
        assert cells[3].startswith("CNN-GRU") and "120,000 parameters" in cells[3]
        assert cells[4].startswith("CNN-BiLSTM") and "20.0 s/epoch" in cells[4]
        assert " CI " in cells[2]  # the tied one's difference and interval
    index = write_site(three_seeds).read_text()
    assert index.index("<h2>Verdict</h2>") < index.index('id="results"')
    assert "indistinguishable from the best" in index and "(the best)" in index


def test_with_one_seed_the_verdict_says_it_cannot_separate_architectures_from_seed_noise(tmp_path):
    out = write_summary(_study(tmp_path, (0,)), bootstrap_resamples=50)
    readme = (out / "README.md").read_text()
    assert "cannot separate architectures from seed noise" in readme.split("## Data")[0]
    assert "1 seed(s) per architecture" in readme


def test_a_single_architecture_has_nothing_to_compare(tmp_path):
    (tmp_path / "data").mkdir()
    write_run(tmp_path / "study" / "cnn" / "seed-0", "cnn", 0, tmp_path / "data")
    readme = (write_summary(tmp_path / "study", bootstrap_resamples=10) / "README.md").read_text()
    assert "## Verdict\n\nOne architecture: nothing to compare." in readme
