"""ecgkeras.report.formatting: best values marked, ± only with seeds, saved tables round-trip."""

from __future__ import annotations

import re

import pandas as pd

from ecgkeras.report.formatting import format_table, save_table
from ecgkeras.report.tables import summary_table


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
