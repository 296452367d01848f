"""One schema for every run parameter, checked before anything is written; no completed run is ever lost."""

import json
import shutil

import papermill
import pytest

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import RECORD_FILE, RunConfig, is_complete, load_run, predict_ecg, run_experiment
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, notebook_parameters, to_ipynb
from ecgkeras.study.plan import plan_runs

TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16],
        "rnn_units": 8, "head_units": 16, "verbose": 0}


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    return exit_info.value.code, capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def complete_run(synthetic_ptbxl, tmp_path_factory):
    """A complete CNN run on the synthetic data (one epoch, tiny model)."""
    config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn", **TINY)
    return run_experiment(config, tmp_path_factory.mktemp("runs") / "cnn" / "seed-0", progress=False)


def test_the_notebook_parameters_cell_holds_run_parameters_by_name_and_the_output_folder(tmp_path):
    defaults = notebook_parameters(to_ipynb(TRAIN_NOTEBOOK, tmp_path))
    assert set(defaults) == {"parameters", "output_dir"}
    assert set(defaults["parameters"]) <= set(RunConfig.parameter_names())
    config = RunConfig.from_parameters(**defaults["parameters"])
    expected = RunConfig.from_parameters(data_dir=".").parameters() | defaults["parameters"]
    assert config.parameters() == expected  # the schema supplies every other default


@pytest.mark.parametrize("name, value, message", [
    ("epochs", "abc", "epochs='abc': expected an integer"),
    ("epochs", 1.5, "epochs=1.5: expected an integer"),
    ("epochs", True, "epochs=True: expected an integer"),
    ("epochs", 0, "epochs=0: must be >= 1"),
    ("learning_rate", "fast", "learning_rate='fast': expected a finite number"),
    ("learning_rate", float("nan"), "learning_rate=nan: expected a finite number"),
    ("deterministic", 1, "deterministic=1: expected true or false"),
    ("filters", [8, 8.5], r"filters=\[8, 8.5\]: expected a list of integers"),
    ("train_folds", [1, 11], r"train_folds=\(1, 11\): must be >= 1 and <= 10"),
    ("test_folds", [8], "overlap"),
    ("sampling_rate", 250, "sampling_rate=250: must be one of 100, 500"),
])
def test_wrong_values_are_refused_never_coerced(name, value, message):
    with pytest.raises(EcgkerasError, match=message):
        RunConfig.from_parameters(data_dir="x", **{name: value})


def test_every_run_parameter_is_accepted_by_the_study(synthetic_ptbxl, tmp_path):
    defaults = RunConfig(data_dir="x").parameters()
    owned = {"data_dir", "architecture", "seed"}
    planned = plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0],
                        {name: value for name, value in defaults.items() if name not in owned})
    assert [path.relative_to(tmp_path).as_posix() for path in planned] == ["cnn/seed-0"]
    chosen = {"window_stride": 50, "focal_gamma": 1.0, "max_pos_weight": 10.0, "lr_factor": 0.2,
              "min_learning_rate": 1e-6, "pool_size": 2, "train_folds": [1, 2, 3, 4, 5, 6, 7]}
    config = next(iter(plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0], chosen).values()))
    assert {name: config.parameters()[name] for name in chosen} == chosen
    with pytest.raises(EcgkerasError, match="--seeds"):
        plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0], {"seed": 3})


@pytest.mark.parametrize("value", ["abc", "1.5", "true"])
def test_a_bad_study_parameter_is_refused_before_the_folder_is_touched(synthetic_ptbxl, tmp_path, capsys, value):
    out = tmp_path / "study"
    code, err = run_cli(["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn",
                         "-p", "epochs", value], capsys)
    assert code == 2 and err.startswith("ecgkeras: error: epochs=") and "expected an integer" in err
    assert "\n" not in err and not out.exists()


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
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(notebook), str(tmp_path / "failed.ipynb"), kernel_name="python3",
                                   parameters={**config.parameters(), "data_dir": str(tmp_path / "nowhere"),
                                               "output_dir": str(run_dir)}, progress_bar=False)
    assert (run_dir / RECORD_FILE).read_bytes() == record

    rerun = run_experiment(config, run_dir, progress=False)  # a successful rerun replaces the record
    assert (run_dir / RECORD_FILE).read_bytes() != record and rerun.metrics() == complete_run.metrics()
    assert (run_dir / "notes.txt").read_text() == "my notes\n"


def test_malformed_run_files_give_one_line_errors(complete_run, tmp_path, capsys):
    for content, message in (("{}", "not a complete run record"), ("", "not valid JSON"),
                             ('{"config": 1}', "not a complete run record")):
        broken = tmp_path / f"broken-{len(content)}"
        shutil.copytree(complete_run.run_dir, broken)
        (broken / RECORD_FILE).write_text(content)
        with pytest.raises(EcgkerasError, match=message):
            load_run(broken)
    truncated = tmp_path / "truncated"
    shutil.copytree(complete_run.run_dir, truncated)
    model = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(model[: len(model) // 2])
    record = complete_run.config.data_dir + "/records100/00000/00001_lr"
    code, err = run_cli(["predict", "--run", truncated, record], capsys)
    assert code == 2 and "model.keras" in err and "damaged" in err and "\n" not in err
    with pytest.raises(EcgkerasError, match="damaged"):
        predict_ecg(truncated, record)


def test_a_read_only_study_folder_is_a_one_line_error(read_only_dir, synthetic_ptbxl, capsys):
    code, err = run_cli(["study", "--data-dir", synthetic_ptbxl, "--out", read_only_dir / "study",
                         "--architectures", "cnn", "-p", "epochs", "1"], capsys)
    assert code == 2 and "\n" not in err
    assert str(read_only_dir / "study") in err and "writable --out" in err


def test_a_study_redoes_an_unreadable_record_and_ignores_a_broken_study_file(synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    first = run_study(synthetic_ptbxl, out, architectures=["cnn"], parameters=TINY, aggregate=False)
    assert len(first.completed) == 1
    (out / "cnn" / "seed-0" / RECORD_FILE).write_text("{}")
    (out / "study.json").write_text("")
    again = run_study(synthetic_ptbxl, out, architectures=["cnn"], parameters=TINY, aggregate=False)
    assert [path.parent.name for path in again.completed] == ["cnn"] and load_run(out / "cnn" / "seed-0")
    described = json.loads((out / "study.json").read_text())
    assert [group["runs"] for group in described["configurations"]] == [["cnn/seed-0"]]
