"""`ecgkeras tune` for real on the synthetic data: equal budgets with two workers sharing the journal,
pruning, a rerun that retrains nothing, shards that split the budget exactly, a dead worker's trial
requeued, the test fold never steering the choice (one side on a real PostgreSQL server), the tuning
notebook, and `study --from-tuning`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import optuna
import pandas as pd
import pytest

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.record import find_runs, is_complete
from ecgkeras.study.notebooks import execute_notebook, to_ipynb
from ecgkeras.tuning.layout import SUMMARY_FILE, TRIAL_FILE, study_name, trial_folder, tuning_dir
from ecgkeras.tuning.settings import open_storage, read_settings
from helpers import TINY_MODEL, built_once, one_line_error, refused, run_main

SETTINGS = {**TINY_MODEL, "crop_length": 500, "verbose": 0}
TUNE_P = [arg for name, value in SETTINGS.items() for arg in ("-p", name, json.dumps(value))]


def tune_args(data: Path, out: Path, *extra: str) -> list:
    return ["tune", "--data-dir", data, "--out", out, *TUNE_P, *extra]


def trials_of(out: Path, architecture: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(out, read_settings(out).storage)
    return optuna.load_study(study_name=study_name(architecture), storage=storage).get_trials()


@pytest.fixture(scope="session")
def tuned(synthetic_ptbxl, tmp_path_factory) -> Path:
    """cnn and cnn-gru, 3 trials each, 2 epochs, the median pruner, two worker processes on one journal; built
    once. Read-only: use `tuned_copy` to change it."""
    from ecgkeras.cli import main

    def build(folder: Path) -> Path:
        main([str(a) for a in tune_args(synthetic_ptbxl, folder / "study", "--architectures", "cnn", "cnn-gru",
                                         "--trials", "3", "--epochs", "2", "--jobs", "2")])
        return folder / "study"

    return built_once(tmp_path_factory, "tuned", build)


@pytest.fixture
def tuned_copy(tuned, tmp_path) -> Path:
    """A copy of the tuning (its journal moves with it), to continue or to train from."""
    shutil.copytree(tuned, tmp_path / "study")
    return tmp_path / "study"


@pytest.mark.slow
def test_every_architecture_spends_the_same_budget_and_pruning_happens(tuned):
    summary = json.loads((tuning_dir(tuned) / SUMMARY_FILE).read_text())
    assert summary["budget"] == {"trials": 3, "sampler_seed": 0, "pruner": "median"}
    pruned = 0
    for architecture in ("cnn", "cnn-gru"):
        result = summary["architectures"][architecture]
        assert sum(result["trials"].values()) == 3 and result["finished"] and result["best"]
        pruned += result["trials"]["pruned"]
        for trial in trials_of(tuned, architecture):
            folder = trial_folder(tuned, architecture, trial.number)
            assert is_complete(folder)  # a pruned trial is a run record too
            assert json.loads((folder / TRIAL_FILE).read_text())["state"] in ("complete", "pruned")
        assert (tuning_dir(tuned) / architecture / "history.png").is_file()
    assert pruned >= 1
    assert not find_runs(tuned)  # trials stay out of the study's own tables


@pytest.mark.slow
def test_a_rerun_continues_the_study_without_retraining(tuned_copy, synthetic_ptbxl, capsys):
    before = {path: path.stat().st_mtime_ns for path in tuning_dir(tuned_copy).rglob("metrics.json")}
    code, out, _ = run_main(tune_args(synthetic_ptbxl, tuned_copy, "--architectures", "cnn", "cnn-gru", "--trials", "3",
                                      "--epochs", "2"), capsys)
    assert code == 0 and "cnn-gru:" in out
    assert {path: path.stat().st_mtime_ns for path in tuning_dir(tuned_copy).rglob("metrics.json")} == before
    assert len(trials_of(tuned_copy, "cnn")) == 3
    code, _, err = run_main(tune_args(synthetic_ptbxl, tuned_copy, "--architectures", "cnn", "--trials", "3",
                                      "--epochs", "2", "--pruner", "none"), capsys)
    assert code == 2 and "another pruner" in err


@pytest.mark.slow
def test_study_from_tuning_trains_the_chosen_configuration(tuned_copy, capsys):
    code, out, err = run_main(["study", "--from-tuning", tuned_copy, "--architectures", "cnn", "--seeds", "1",
                               "-p", "bootstrap_resamples", "10"], capsys)
    assert code == 0, err
    best = json.loads((tuning_dir(tuned_copy) / SUMMARY_FILE).read_text())["architectures"]["cnn"]["best"]["params"]
    runs = find_runs(tuned_copy)
    assert [run.seed for run in runs] == [1]
    for run in runs:
        assert {name: run.config.parameters()[name] for name in best} == best
    table = pd.read_csv(tuned_copy / "summary" / "results_tuned.csv")
    assert (table["recipe"] == "tuned, 3 trials").all()
    assert "learning_rate=" in (tuned_copy / "summary" / "tuning.md").read_text()
    assert (tuned_copy / "summary" / "tuning_cnn_history.png").is_file()
    assert "tuning_cnn_history.png" in (tuned_copy / "report" / "index.html").read_text()


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
def test_the_test_fold_never_steers_and_a_dead_workers_trial_is_requeued(synthetic_ptbxl, postgres_url, tmp_path,
                                                                        capsys):
    poisoned = _poisoned_copy(synthetic_ptbxl, tmp_path / "poisoned")
    values = {}
    for name, data, storage in (("clean", synthetic_ptbxl, []),  # the journal file; then a PostgreSQL database
                                ("poisoned", poisoned, ["--storage", postgres_url])):
        out = tmp_path / name
        code, _, err = run_main(tune_args(data, out, "--architectures", "cnn", "--trials", "1", "--epochs", "1",
                                          "--pruner", "none", *storage), capsys)
        assert code == 0, err
        values[name] = [(trial.params, trial.value) for trial in trials_of(out, "cnn")]
    assert values["clean"] == values["poisoned"]

    out = tmp_path / "clean"  # a worker that died mid-trial: its trial is running, its run lock free
    study = optuna.load_study(study_name=study_name("cnn"), storage=open_storage(out, read_settings(out).storage))
    dead = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)})
    staging = trial_folder(out, "cnn", dead.number).with_name(f".trial-{dead.number}.staging")
    (staging / "half-written").mkdir(parents=True)  # what kill -9 leaves while a trial trains
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
    assert not staging.exists()


@pytest.mark.slow
def test_shards_spend_their_shares_of_the_budget_exactly(synthetic_ptbxl, tmp_path, capsys):
    out, common = tmp_path / "study", ("--architectures", "cnn", "--trials", "3", "--epochs", "1", "--pruner", "none")
    code, stdout, err = run_main(tune_args(synthetic_ptbxl, out, *common, "--shard", "2/2"), capsys)
    assert code == 0 and "the budget is not spent yet" in stdout, err
    assert [trial.user_attrs["shard"] for trial in trials_of(out, "cnn")] == ["2/2"]  # 3 = 2 + 1
    refused(["study", "--from-tuning", out, "--seeds", "0"], capsys, "has not finished its 3 trials")
    code, stdout, err = run_main(tune_args(synthetic_ptbxl, out, *common, "--shard", "1/2"), capsys)
    assert code == 0 and "next: ecgkeras study --from-tuning" in stdout, err
    assert sorted(trial.user_attrs["shard"] for trial in trials_of(out, "cnn")) == ["1/2", "1/2", "2/2"]
    code, _, err = run_main(tune_args(synthetic_ptbxl, out, *common, "--shard", "1/2"), capsys)
    assert code == 0 and len(trials_of(out, "cnn")) == 3, err  # a shard run again trains nothing


def test_an_unreachable_database_is_a_one_line_error_before_anything_is_written(synthetic_ptbxl, tmp_path, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused(tune_args(synthetic_ptbxl, tmp_path / "study", "--architectures", "cnn", "--trials", "1", "--storage",
                      f"postgresql://postgres@127.0.0.1:{port}/postgres"), capsys, "--storage postgresql://",
            "cannot open it")
    assert not (tmp_path / "study").exists()


def test_a_worker_process_that_fails_says_why_in_one_line(tmp_path):
    worker = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                             "from ecgkeras.tuning.worker import worker_process; "
                             "worker_process(Path(sys.argv[1]), ['cnn'])", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == 2 and "Traceback" not in worker.stderr, worker.stderr
    assert worker.stderr.strip().splitlines()[-1].startswith("ecgkeras tune worker: error:")
    assert "holds no tuning" in worker.stderr


@pytest.mark.slow
def test_the_tune_notebook_shows_the_budget_and_plots_of_a_tuning_and_trains_nothing_more(tuned_copy, synthetic_ptbxl,
                                                                                           tmp_path):
    study = tuned_copy  # a tuning folder moves with its journal
    before = sorted(tuning_dir(study).rglob("metrics.json"))
    settings = read_settings(study)
    output = tmp_path / "05_tune.ipynb"
    execute_notebook(to_ipynb("05_tune", tmp_path), output, {
        "data_dir": str(synthetic_ptbxl), "study_dir": str(study), "architectures": ["cnn", "cnn-gru"], "trials": 3,
        "parameters": {**settings.parameters}, "pruner": "median", "sampler_seed": 0})
    executed = nbformat.read(output, as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    plots = [path for name in ("cnn", "cnn-gru") for path in (tuning_dir(study) / name).glob("*.png")]
    assert len(plots) >= 2 and sum("image/png" in o.get("data", {}) for o in outputs) == len(plots)  # every plot
    assert any("best validation macro-AUPRC" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert sorted(tuning_dir(study).rglob("metrics.json")) == before


def test_study_from_a_folder_without_tuning_is_refused(tmp_path, capsys):
    refused(["study", "--from-tuning", tmp_path, "--seeds", "0"], capsys, "holds no tuning", "ecgkeras tune")
    assert not any(tmp_path.iterdir())


def test_a_journal_cut_short_is_a_one_line_error(tmp_path):
    (tmp_path / "tuning").mkdir()
    optuna.create_study(study_name="s", storage=open_storage(tmp_path))
    journal = tmp_path / "tuning" / "journal.log"
    line = journal.read_bytes()
    journal.write_bytes(line[:-40] + b"\n" + line)  # a line cut short by kill -9, then another worker's line
    with pytest.raises(EcgkerasError) as excinfo:
        open_storage(tmp_path)
    one_line_error(excinfo, "journal.log is damaged", "another --out")
