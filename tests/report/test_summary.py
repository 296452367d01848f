"""ecgkeras.report.summary: the summary folder's tables, figures and README."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers import ARCHS, N_TEST, SEEDS, write_run

from ecgkeras import EcgkerasError
from ecgkeras.report.summary import write_summary
from ecgkeras.runs import find_runs


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
    assert "| macro-AUPRC | CNN | 2 | CNN-BiLSTM | 2 |" in paired  # default reference: the best, all seeds
    assert readme.index("## Verdict") < readme.index("## Data") and "2 seed(s) per architecture" in readme
    assert (out / "verdict.md").read_text().strip() in readme
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
