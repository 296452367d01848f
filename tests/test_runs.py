"""Training through the one code path: learning, determinism, run records and prediction."""

import json

import keras
import numpy as np
import pytest

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.models import build_model
from ecgkeras.runs import RunConfig, find_runs, is_complete, load_run, predict_ecg, run_experiment

SMALL_MODEL = {"filters": [16, 16, 32, 32], "rnn_units": 16, "head_units": 32}


@pytest.fixture(scope="module")
def real_run(real_ptbxl, tmp_path_factory):
    """One epoch of CNN-LSTM on the real PTB-XL subset, with its complete run record."""
    config = RunConfig.from_parameters(data_dir=str(real_ptbxl), architecture="cnn-lstm", epochs=1,
                                       batch_size=32, bootstrap_resamples=20, **SMALL_MODEL)
    return run_experiment(config, tmp_path_factory.mktemp("real") / "cnn-lstm" / "seed-0", progress=False)


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


def test_thresholds_come_from_the_validation_fold(real_run):
    from ecgkeras.evaluation import tune_thresholds

    p = real_run.predictions
    np.testing.assert_allclose(real_run.thresholds("tuned"), tune_thresholds(p["val_true"], p["val_prob"]))


def test_predict_cli_on_a_real_record(real_run, real_ptbxl, capsys):
    record = real_ptbxl / "records100" / "00000" / "00009_lr"
    main(["predict", "--run", str(real_run.run_dir), str(record)])
    out = capsys.readouterr().out
    assert "00009_lr" in out and "probability" in out
    table = predict_ecg(real_run.run_dir, record)
    assert len(table) == 23 and table["probability"].between(0, 1).all()


def test_predict_refuses_a_record_at_the_wrong_rate(real_run, real_ptbxl):
    with pytest.raises(EcgkerasError, match="500 Hz"):
        predict_ecg(real_run.run_dir, real_ptbxl / "records500" / "00000" / "00009_hr")


def test_incomplete_run_folder_is_refused(real_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "history.csv").write_text("epoch,loss\n1,0.5\n")
    assert not is_complete(broken)
    with pytest.raises(EcgkerasError, match="incomplete"):
        load_run(broken)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--run", str(broken), "x"])
    assert exit_info.value.code == 2
    assert find_runs(tmp_path) == []


def test_a_model_learns_the_synthetic_classes(synthetic_ptbxl, tmp_path):
    config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn", epochs=8,
                                       batch_size=16, learning_rate=3e-3, bootstrap_resamples=0, **SMALL_MODEL)
    run = run_experiment(config, tmp_path / "run", progress=False)
    assert run.metrics("test", "tuned")["macro_auroc"] > 0.75


def test_same_seed_gives_identical_metrics(synthetic_ptbxl, tmp_path):
    def metrics(seed, name):
        config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn-gru", epochs=2,
                                           batch_size=32, seed=seed, bootstrap_resamples=0, **SMALL_MODEL)
        run = run_experiment(config, tmp_path / name, progress=False)
        return {split: {policy: run.metrics(split, policy) for policy in ("tuned", "fixed")} for split in ("val", "test")}

    first = metrics(0, "a")
    keras.utils.set_random_seed(12345)  # disturb every global random state between the two runs,
    build_model("cnn", (1000, 12), 23)  # as a fresh process would have it
    assert first == metrics(0, "b")
    assert first != metrics(1, "c")


def test_cropped_training_is_evaluated_on_full_records_by_sliding_windows(synthetic_ptbxl, tmp_path):
    config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn", epochs=1,
                                       batch_size=32, crop_length=250, bootstrap_resamples=0, **SMALL_MODEL)
    run = run_experiment(config, tmp_path / "crop", progress=False)
    assert run.data["input_shape"] == [250, 12]
    assert run.predictions["test_prob"].shape[0] == run.data["n_test"]


def test_unknown_parameters_are_refused():
    with pytest.raises(EcgkerasError, match="unknown parameter"):
        RunConfig.from_parameters(data_dir="x", learning_rat=0.1)
    with pytest.raises(EcgkerasError, match="architecture='cnn-tcn': must be one of cnn, cnn-lstm"):
        RunConfig.from_parameters(data_dir="x", architecture="cnn-tcn")
    with pytest.raises(EcgkerasError, match="loss='hinge': must be one of bce, weighted_bce, focal"):
        RunConfig.from_parameters(data_dir="x", loss="hinge")


def test_xla_without_turning_determinism_off_is_refused():
    with pytest.raises(EcgkerasError, match="deterministic=False"):
        RunConfig.from_parameters(data_dir="x", jit_compile=True)
    assert RunConfig.from_parameters(data_dir="x", jit_compile=True, deterministic=False).training.jit_compile
