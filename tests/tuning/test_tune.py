"""`ecgkeras tune` for real on the synthetic data: equal budgets with two workers sharing the journal,
pruning, a rerun that retrains nothing, a dead worker's trial requeued, the test fold never steering the
choice, and `study --from-tuning`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest

from ecgkeras.runs.record import find_runs, is_complete
from ecgkeras.tuning.layout import SUMMARY_FILE, TRIAL_FILE, study_name, trial_folder, tuning_dir
from ecgkeras.tuning.tune import open_storage, read_settings
from helpers import TINY_MODEL, refused, run_main

SETTINGS = {**TINY_MODEL, "crop_length": 500, "verbose": 0}
TUNE_P = [arg for name, value in SETTINGS.items() for arg in ("-p", name, json.dumps(value))]


def tune_args(data: Path, out: Path, *extra: str) -> list:
    return ["tune", "--data-dir", data, "--out", out, *TUNE_P, *extra]


def trials_of(out: Path, architecture: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(read_settings(out).storage)
    return optuna.load_study(study_name=study_name(architecture), storage=storage).get_trials()


@pytest.fixture(scope="module")
def tuned(synthetic_ptbxl, tmp_path_factory):
    """cnn and cnn-gru, 4 trials each, 2 epochs, the median pruner, two worker processes on one journal."""
    out = tmp_path_factory.mktemp("tuned") / "study"
    from ecgkeras.cli import main
    main([str(a) for a in tune_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru", "--trials", "4",
                                     "--epochs", "2", "--jobs", "2")])
    return out


@pytest.mark.slow
def test_every_architecture_spends_the_same_budget_and_pruning_happens(tuned):
    summary = json.loads((tuning_dir(tuned) / SUMMARY_FILE).read_text())
    assert summary["budget"] == {"trials": 4, "sampler_seed": 0, "pruner": "median"}
    pruned = 0
    for architecture in ("cnn", "cnn-gru"):
        result = summary["architectures"][architecture]
        assert sum(result["trials"].values()) == 4 and result["finished"] and result["best"]
        pruned += result["trials"]["pruned"]
        for trial in trials_of(tuned, architecture):
            folder = trial_folder(tuned, architecture, trial.number)
            assert is_complete(folder)  # a pruned trial is a run record too
            assert json.loads((folder / TRIAL_FILE).read_text())["state"] in ("complete", "pruned")
        assert (tuning_dir(tuned) / architecture / "history.png").is_file()
    assert pruned >= 1
    assert not find_runs(tuned)  # trials stay out of the study's own tables


@pytest.mark.slow
def test_a_rerun_continues_the_study_without_retraining(tuned, synthetic_ptbxl, capsys):
    before = {path: path.stat().st_mtime_ns for path in tuning_dir(tuned).rglob("metrics.json")}
    code, out, _ = run_main(tune_args(synthetic_ptbxl, tuned, "--architectures", "cnn", "cnn-gru", "--trials", "4",
                                      "--epochs", "2"), capsys)
    assert code == 0 and "cnn-gru:" in out
    assert {path: path.stat().st_mtime_ns for path in tuning_dir(tuned).rglob("metrics.json")} == before
    assert len(trials_of(tuned, "cnn")) == 4
    code, _, err = run_main(tune_args(synthetic_ptbxl, tuned, "--architectures", "cnn", "--trials", "4",
                                      "--epochs", "2", "--pruner", "none"), capsys)
    assert code == 2 and "another pruner" in err


@pytest.mark.slow
def test_study_from_tuning_trains_the_chosen_configuration(tuned, capsys):
    code, out, err = run_main(["study", "--from-tuning", tuned, "--architectures", "cnn", "--seeds", "0", "1",
                               "--jobs", "2", "-p", "bootstrap_resamples", "10"], capsys)
    assert code == 0, err
    best = json.loads((tuning_dir(tuned) / SUMMARY_FILE).read_text())["architectures"]["cnn"]["best"]["params"]
    runs = find_runs(tuned)
    assert sorted(run.seed for run in runs) == [0, 1]
    for run in runs:
        assert {name: run.config.parameters()[name] for name in best} == best
    table = pd.read_csv(tuned / "summary" / "results_tuned.csv")
    assert (table["recipe"] == "tuned, 4 trials").all()
    assert "learning_rate=" in (tuned / "summary" / "tuning.md").read_text()
    assert (tuned / "summary" / "tuning_cnn_history.png").is_file()
    assert "tuning_cnn_history.png" in (tuned / "report" / "index.html").read_text()


def _poisoned_copy(data: Path, folder: Path) -> Path:
    """The dataset with every test-fold record relabelled (signals shared through symbolic links)."""
    folder.mkdir()
    for path in data.iterdir():
        (folder / path.name).symlink_to(path) if path.is_dir() else shutil.copy2(path, folder / path.name)
    database = pd.read_csv(folder / "ptbxl_database.csv")
    database.loc[database["strat_fold"] == 10, "scp_codes"] = "{'IMI': 100.0}"
    database.to_csv(folder / "ptbxl_database.csv", index=False)
    return folder


@pytest.mark.slow
def test_the_test_fold_never_steers_and_a_dead_workers_trial_is_requeued(synthetic_ptbxl, tmp_path, capsys):
    poisoned = _poisoned_copy(synthetic_ptbxl, tmp_path / "poisoned")
    values = {}
    for name, data, storage in (("clean", synthetic_ptbxl, []),  # the journal file; then a SQLAlchemy database
                                ("poisoned", poisoned, ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}"])):
        out = tmp_path / name
        code, _, err = run_main(tune_args(data, out, "--architectures", "cnn", "--trials", "1", "--epochs", "1",
                                          "--pruner", "none", *storage), capsys)
        assert code == 0, err
        values[name] = [(trial.params, trial.value) for trial in trials_of(out, "cnn")]
    assert values["clean"] == values["poisoned"]

    out = tmp_path / "clean"  # a worker that died mid-trial: its trial is running, its run lock free
    study = optuna.load_study(study_name=study_name("cnn"), storage=open_storage(read_settings(out).storage))
    dead = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)})
    finished = trial_folder(out, "cnn", 0) / "metrics.json"
    stamp = finished.stat().st_mtime_ns
    code, _, err = run_main(tune_args(synthetic_ptbxl, out, "--architectures", "cnn", "--trials", "2", "--epochs", "1",
                                      "--pruner", "none"), capsys)
    assert code == 0, err
    trials = trials_of(out, "cnn")
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL and trials[dead.number].user_attrs["requeued"]
    redone = [trial for trial in trials if trial.user_attrs.get("requeued_from") == dead.number]
    assert len(redone) == 1 and redone[0].state == optuna.trial.TrialState.COMPLETE
    assert redone[0].params["learning_rate"] == dead.params["learning_rate"]
    assert finished.stat().st_mtime_ns == stamp  # finished trials are not retrained


def test_study_from_a_folder_without_tuning_is_refused(tmp_path, capsys):
    refused(["study", "--from-tuning", tmp_path, "--seeds", "0"], capsys, "holds no tuning", "ecgkeras tune")
    assert not any(tmp_path.iterdir())
