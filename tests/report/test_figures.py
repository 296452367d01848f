"""ecgkeras.report.figures: every figure is returned and saved as PNG and PDF."""

from __future__ import annotations


import pandas as pd
import pytest
from ecgkeras.report.figures import (plot_complexity, plot_history, plot_paired_comparison, plot_recall_bars,
                                     plot_recall_heatmap, save_figure)
from ecgkeras.report.tables import paired_comparisons, per_class_recall, summary_table


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


@pytest.mark.slow
def test_learning_curve_and_reliability_figures(two_runs, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from ecgkeras.report.figures import plot_learning_curves, plot_reliability, save_figure

    matplotlib.use("Agg")
    curves = plot_learning_curves(two_runs)
    epochs = curves.axes[0].lines[0].get_xdata()
    assert epochs[0] == 1 and len(epochs) in {len(run.history) for run in two_runs}  # epochs count from 1
    reliability = plot_reliability(two_runs, n_classes=2)
    assert [ax.get_title() for ax in reliability.axes][0] == "all classes (micro)" and len(reliability.axes) == 3
    for stem, fig in (("curves", curves), ("reliability", reliability)):
        assert all(path.stat().st_size > 0 for path in save_figure(fig, tmp_path, stem))
        plt.close(fig)


def test_a_difference_outside_its_percentile_interval_is_still_drawn():
    """A percentile bootstrap interval need not contain the estimate (it happened on the demo data)."""
    comparison = pd.DataFrame({
        "architecture": ["cnn-gru", "cnn-lstm"], "display_name": ["CNN-GRU", "CNN-LSTM"],
        "reference": ["cnn", "cnn"], "reference_display_name": ["CNN", "CNN"],
        "metric": ["macro_auprc"] * 2, "difference": [0.05, -0.02], "ci_low": [0.06, -0.05],
        "ci_high": [0.10, 0.01], "significant": [True, False]})
    fig = plot_paired_comparison(comparison)
    assert fig.axes[0].get_xlabel() == "difference in macro-AUPRC to CNN"  # display names for people
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["CNN-GRU", "CNN-LSTM"]
