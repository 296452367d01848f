"""Convergence in run records and summaries, and the recipe's knobs (clipping, warm-up, recurrent readout)."""

import json

import keras
import pytest

from ecgkeras import EcgkerasError
from ecgkeras.models import build_model
from ecgkeras.report.summary import convergence_lines
from ecgkeras.report.tables import summary_table, unconverged_runs
from ecgkeras.runs import RunConfig, run_experiment
from ecgkeras.training import TrainingConfig, compile_model, convergence, warmup_schedule

SMALL_MODEL = {"filters": [16, 16, 32, 32], "rnn_units": 16, "head_units": 32}


@pytest.fixture(scope="module")
def two_runs(synthetic_ptbxl, tmp_path_factory):
    """A tiny CNN that early-stops (patience 1, seed 0) and one stopped by a 2-epoch cap (seed 1)."""
    root = tmp_path_factory.mktemp("convergence")
    common = {"data_dir": str(synthetic_ptbxl), "architecture": "cnn", "batch_size": 32, "learning_rate": 3e-3,
              "bootstrap_resamples": 0, "verbose": 0, **SMALL_MODEL}
    stops = run_experiment(RunConfig.from_parameters(**common, seed=0, epochs=30, patience=1),
                           root / "cnn" / "seed-0", progress=False)
    capped = run_experiment(RunConfig.from_parameters(**common, seed=1, epochs=2, patience=5),
                            root / "cnn" / "seed-1", progress=False)
    return stops, capped


def test_a_run_that_stops_early_has_converged(two_runs):
    status = json.loads((two_runs[0].run_dir / "metrics.json").read_text())["convergence"]
    assert status["stopped_by"] == "early_stopping" and status["converged"]
    assert status["epochs_run"] < 30 and status["epochs_since_best"] == 1  # stopped one epoch after the best
    assert status["best_epoch"] == status["epochs_run"] - 1
    assert not {"best_epoch", "epochs_run"} & set(two_runs[0].timings)  # stored once, under convergence


def test_a_run_at_the_epoch_cap_has_not_converged(two_runs):
    status = two_runs[1].convergence
    assert status["stopped_by"] == "epoch_cap" and not status["converged"]
    assert status["epochs_run"] == status["epoch_cap"] == 2
    assert status == convergence(two_runs[1].history, two_runs[1].config.training)  # recomputable from the files


def test_tables_and_readme_mark_the_unconverged_run(two_runs):
    assert summary_table(two_runs).loc["cnn", "converged"] == "1/2"
    listed = unconverged_runs(two_runs)
    assert list(listed["seed"]) == [1] and listed["stopped_by"].item() == "epoch_cap"
    text = "\n".join(convergence_lines(two_runs))
    assert "1 run(s) had not converged" in text and "CNN, seed 1: epoch_cap, 2 of 2 epochs" in text
    assert "Every run converged." in "\n".join(convergence_lines(two_runs[:1]))


def test_convergence_by_hand():
    import pandas as pd

    config = TrainingConfig(epochs=6, patience=2)
    history = pd.DataFrame({"loss": [1.0] * 6, "val_auprc": [0.1, 0.3, 0.3, 0.4, 0.5, 0.5]})
    assert convergence(history, config) == {  # best epoch 5 (first of the tie), 1 epoch before the cap
        "stopped_by": "epoch_cap", "converged": False, "epochs_run": 6, "epoch_cap": 6, "best_epoch": 5,
        "epochs_since_best": 1, "patience": 2}
    stopped = convergence(history.iloc[:4].assign(val_auprc=[0.1, 0.5, 0.4, 0.5]), config)
    assert stopped["stopped_by"] == "early_stopping" and stopped["best_epoch"] == 2  # a tie is no improvement
    assert convergence(history.assign(loss=[1.0, float("nan"), 1, 1, 1, 1]), config)["stopped_by"] == "nan"


def test_recurrent_readout_pools_the_last_sequence_or_takes_the_final_state():
    last = build_model("cnn-lstm-x2", (1000, 12), 5, rnn_units=8)
    pooled = build_model("cnn-lstm-x2", (1000, 12), 5, rnn_units=8, rnn_readout="pool")
    assert "pooled" in {layer.name for layer in pooled.layers} and "pooled" not in {layer.name for layer in last.layers}
    assert pooled.get_layer("lstm2").output.shape == (None, 62, 8) and last.get_layer("lstm2").output.shape == (None, 8)
    assert pooled.output.shape == last.output.shape == (None, 5)
    with pytest.raises(EcgkerasError, match="rnn_readout"):
        build_model("cnn-gru", (1000, 12), 5, rnn_readout="mean")


def test_clipping_and_warm_up_are_configured():
    model = compile_model(build_model("cnn", (256, 12), 3, filters=[8, 8], kernel_sizes=[3, 3]),
                          TrainingConfig(global_clipnorm=1.0), keras.ops.zeros((4, 3)).numpy())
    assert model.optimizer.global_clipnorm == 1.0
    schedule = warmup_schedule(TrainingConfig(learning_rate=1e-3, warmup_epochs=3))
    assert [schedule(epoch, 5e-4) for epoch in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 5e-4])
    for bad in ({"global_clipnorm": 0}, {"warmup_epochs": -1}):
        with pytest.raises(EcgkerasError, match=next(iter(bad))):
            TrainingConfig(**bad)


def test_learning_curve_and_reliability_figures(two_runs, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from ecgkeras.report.figures import plot_learning_curves, plot_reliability, save_figure

    matplotlib.use("Agg")
    curves = plot_learning_curves(two_runs)
    epochs = curves.axes[0].lines[0].get_xdata()
    assert epochs[0] == 1 and len(epochs) == max(len(run.history) for run in two_runs)  # epochs count from 1
    reliability = plot_reliability(two_runs, n_classes=2)
    assert [ax.get_title() for ax in reliability.axes][0] == "all classes (micro)" and len(reliability.axes) == 3
    for stem, fig in (("curves", curves), ("reliability", reliability)):
        assert all(path.stat().st_size > 0 for path in save_figure(fig, tmp_path, stem))
        plt.close(fig)
