"""ecgkeras.runs.experiment: training through the one code path: learning, determinism, complete
run records, and a failed rerun keeps the completed run."""

from __future__ import annotations

import json

import keras
import numpy as np
import papermill
import pytest
from helpers import CROP

from ecgkeras import EcgkerasError
from ecgkeras.models import build_model
from ecgkeras.runs import RECORD_FILE, RunConfig, is_complete, load_run, run_experiment
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, to_ipynb


@pytest.mark.slow
def test_real_subset_trains_end_to_end_and_writes_a_complete_record(real_run):
    assert is_complete(real_run.run_dir)
    record = json.loads((real_run.run_dir / "metrics.json").read_text())
    assert record["config"]["architecture"] == "cnn-lstm" and record["config"]["training"]["epochs"] == 1
    assert {"python", "tensorflow", "keras", "numpy", "scikit-learn", "wfdb"} <= set(record["versions"])
    assert len(record["classes"]) == 23
    assert record["data"]["n_test"] == 64  # fold 10 of the subset: 66 records, 2 without a subclass label
    for policy in ("fixed", "tuned"):
        test = record["metrics"]["test"][policy]
        assert 0 <= test["hamming_loss"] <= 1 and 0 <= test["macro_auroc"] <= 1
        assert set(test["ci95"]) >= {"hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy"}
    assert record["timings"]["seconds_per_epoch"] > 0 and record["timings"]["inference_ms_per_ecg"] > 0
    predictions = real_run.predictions
    assert predictions["test_prob"].shape == predictions["test_true"].shape == (record["data"]["n_test"], 23)
    assert list(predictions["classes"]) == record["classes"]
    assert len(real_run.per_class("test", "tuned")) == 23


@pytest.mark.slow
def test_thresholds_come_from_the_validation_fold(real_run):
    from ecgkeras.evaluation import tune_thresholds

    p = real_run.predictions
    np.testing.assert_allclose(real_run.thresholds("tuned"), tune_thresholds(p["val_true"], p["val_prob"]))


@pytest.mark.slow
def test_a_model_learns_the_synthetic_classes(learned_run):
    run = learned_run
    assert run.metrics("test", "tuned")["macro_auroc"] > 0.75


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(tiny_study, tmp_path):
    trained = load_run(tiny_study / "cnn-gru" / "seed-0")  # trained in a kernel: a fresh process

    def metrics(run) -> dict:
        return {split: {policy: run.metrics(split, policy) for policy in ("tuned", "fixed")} for split in ("val", "test")}

    def again(seed: int):
        config = RunConfig.from_parameters(**{**trained.config.parameters(), "seed": seed})
        return run_experiment(config, tmp_path / f"seed-{seed}", progress=False)

    keras.utils.set_random_seed(12345)  # disturb every global random state of this process first
    build_model("cnn", (1000, 12), 23)
    assert metrics(again(0)) == metrics(trained)
    assert metrics(again(1)) != metrics(trained)


@pytest.mark.slow
def test_cropped_training_is_evaluated_on_full_records_by_sliding_windows(tiny_run):
    run = tiny_run
    assert run.data["input_shape"] == [CROP, 12]
    assert run.predictions["test_prob"].shape[0] == run.data["n_test"]


@pytest.fixture
def complete_run(tiny_run_copy):
    """A copy of the tiny run, to rerun."""
    return load_run(tiny_run_copy / "cnn" / "seed-0")


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_completed_run(complete_run, synthetic_ptbxl, tmp_path, monkeypatch):
    run_dir = complete_run.run_dir
    (run_dir / "notes.txt").write_text("my notes\n")
    record = (run_dir / RECORD_FILE).read_bytes()
    config = complete_run.config

    with pytest.raises(EcgkerasError, match="not a PTB-XL folder"):  # a wrong data folder
        run_experiment(RunConfig.from_parameters(**{**config.parameters(), "data_dir": str(tmp_path)}), run_dir)
    with pytest.raises(EcgkerasError, match="crop_length=5000"):  # a crop longer than the records
        run_experiment(RunConfig.from_parameters(**{**config.parameters(), "crop_length": 5000}), run_dir)

    def fail(*args, **kwargs):
        raise MemoryError("killed while evaluating")

    with monkeypatch.context() as patch:  # a failure after training started
        patch.setattr("ecgkeras.runs.experiment.evaluate_run", fail)
        with pytest.raises(MemoryError):
            run_experiment(config, run_dir, progress=False)
    assert (run_dir / RECORD_FILE).read_bytes() == record and is_complete(run_dir)
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["seed-0"]  # no staging folder left

    # The same through the notebook, as the issue found it: papermill straight into the complete folder.
    notebook = to_ipynb(TRAIN_NOTEBOOK, tmp_path)
    elsewhere = {**config.parameters(), "data_dir": str(tmp_path / "nowhere")}
    with pytest.raises(papermill.PapermillExecutionError, match=f"PTB-XL folder not found: {tmp_path / 'nowhere'}"):
        papermill.execute_notebook(str(notebook), str(tmp_path / "failed.ipynb"), kernel_name="python3",
                                   parameters={"parameters": elsewhere, "output_dir": str(run_dir)},
                                   progress_bar=False)
    assert (run_dir / RECORD_FILE).read_bytes() == record

    rerun = run_experiment(config, run_dir, progress=False)  # a successful rerun replaces the record
    assert (run_dir / RECORD_FILE).read_bytes() != record and rerun.metrics() == complete_run.metrics()
    assert (run_dir / "notes.txt").read_text() == "my notes\n"


@pytest.mark.slow
def test_a_record_times_the_runs_fixed_costs(tiny_run):
    timings = tiny_run.timings
    for stage in ("process_seconds", "data_seconds", "fit_seconds", "evaluation_seconds", "bootstrap_seconds"):
        assert timings[stage] >= 0, stage
    assert timings["fit_seconds"] >= timings["training_seconds"]  # building and tracing come on top of the epochs
    assert timings["evaluation_seconds"] >= timings["bootstrap_seconds"]
