"""`ecgkeras study`, `status` and `--list-runs` check every value before anything is written, plan the
same runs, and keep a study folder to one configuration, also when studies start at once."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from test_notebooks import TINY
from test_study_execution import ecgkeras, fake_gpus, finish

from ecgkeras.cli import main
from ecgkeras.quiet import QUIET_ENV
from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import RunConfig
from ecgkeras.study.layout import GRID_FILE, SLURM_DIR, SLURM_JOBS_FILE, STUDY_FILE
from ecgkeras.study.local import execute_run
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, to_ipynb


def tiny_args(**changes) -> list[str]:
    """`-p NAME VALUE` for the TINY settings, with `changes`."""
    return [arg for name, value in {**TINY, **changes}.items() for arg in ("-p", name, json.dumps(value))]


TINY_ARGS = tiny_args()


@pytest.fixture(autouse=True)
def undo_quiet_setting(monkeypatch):
    """main() makes the process quiet through an environment variable: undone after each test."""
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.delenv("PTBXL_DIR", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def cli(args, capsys) -> tuple[int, str, str]:
    """Run `ecgkeras ARGS` in-process: exit code, stdout, stderr (code 0 when it returns)."""
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(args, capsys, *fragments: str) -> str:
    code, _, err = cli(args, capsys)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()  # before the error: the data's warnings and the cache's progress bar
    assert lines[-1].startswith("ecgkeras: error:") and sum("error" in line for line in lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tiny_study(synthetic_ptbxl, tmp_path_factory) -> Path:
    """A study folder with one complete CNN run (seed 0) of the TINY configuration."""
    out = tmp_path_factory.mktemp("study") / "study"
    result = run_study(synthetic_ptbxl, out, architectures=["cnn"], parameters=TINY, aggregate=False)
    assert len(result.completed) == 1
    return out


# -- 1: a run folder takes one configuration --------------------------------------------------

@pytest.mark.slow
def test_allow_mixed_never_reports_success_for_runs_of_another_configuration(tiny_study, synthetic_ptbxl, capsys):
    before = listing(tiny_study)
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", tiny_study, "--architectures", "cnn", *tiny_args(learning_rate=0.002),
             "--allow-mixed"], capsys, "cnn/seed-0", "learning_rate 0.001 there, 0.002 now", "another --out")
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", tiny_study, "--architectures", "cnn", *tiny_args(learning_rate=0.002)],
            capsys, "different configuration", "--allow-mixed")
    assert listing(tiny_study) == before


# -- 2: studies started at once into one folder -------------------------------------------------

@pytest.mark.slow
def test_a_study_started_beside_a_planned_one_with_other_parameters_is_refused(synthetic_ptbxl, tmp_path, capsys):
    out = tmp_path / "study"
    first = ecgkeras("study", "--data-dir", str(synthetic_ptbxl), "--out", str(out), "--architectures", "cnn",
                     *tiny_args(epochs=3))
    deadline = time.monotonic() + 120
    while not (out / STUDY_FILE).is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    other = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn",
             *tiny_args(learning_rate=0.002)]
    try:
        described = (out / STUDY_FILE).read_bytes()
        refused(other, capsys, "different configuration", "planned by another study")
        refused([*other, "--allow-mixed"], capsys, "cnn/seed-0", "another --out")
        assert (out / STUDY_FILE).read_bytes() == described
    finally:
        first.send_signal(signal.SIGINT)
        finish(first, timeout=120)
    # --allow-mixed trains its own free runs only, and study.json tells the two configurations apart
    code, stdout, err = cli(["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn",
                             "--seeds", "1", *tiny_args(learning_rate=0.002), "--allow-mixed"], capsys)
    assert code == 0 and "1 run(s) completed" in stdout, err
    groups = json.loads((out / STUDY_FILE).read_text())["configurations"]
    assert sorted((group["parameters"]["learning_rate"], group["parameters"]["epochs"], group["runs"])
                  for group in groups) == [(0.001, 3, ["cnn/seed-0"]), (0.002, 1, ["cnn/seed-1"])]


# -- 3, 4, 6: one planner, each value once, --list-runs checks like the study --------------------

def test_list_runs_and_shards_use_the_studys_planner(capsys):
    base = ["study", "--architectures", "cnn", "cnn-gru", "cnn", "--seeds", "0", "0", "--list-runs"]
    assert cli(base, capsys)[1].split() == ["cnn/seed-0", "cnn-gru/seed-0"]
    assert cli([*base, "--shard", "1/2"], capsys)[1].split() == ["cnn/seed-0"]
    assert cli([*base, "--shard", "2/2"], capsys)[1].split() == ["cnn-gru/seed-0"]


@pytest.mark.parametrize("extra, fragment", [
    (["-p", "batch_size", "16", "-p", "batch_size", "32"], "-p batch_size is given twice"),
    (["-p", "epochs", "2", "--epochs", "1"], "epochs is given twice"),
    (["-p", "sampling_rate", "100", "--sampling-rate", "500"], "sampling_rate is given twice"),
    (["-p", "epochs", "abc"], "epochs='abc': expected an integer"),
    (["--data-dir", "/nonexistent"], "PTB-XL folder not found: /nonexistent"),
    (["--shard", "0/2"], "--shard '0/2'"),
    (["--shard", "3/2"], "--shard '3/2'"),
    (["--shard", "a/b"], "--shard 'a/b'"),
    (["--seeds", "-1"], "--seeds -1"),
    (["--architectures", "unknown"], "unknown architecture 'unknown'"),
])
def test_list_runs_refuses_what_the_study_refuses(extra, fragment, capsys, tmp_path):
    refused(["study", "--out", tmp_path / "study", "--list-runs", *extra], capsys, fragment)
    assert not (tmp_path / "study").exists()


def test_a_parameter_given_twice_is_refused_by_the_study(synthetic_ptbxl, tmp_path, capsys):
    for extra in (["-p", "batch_size", "16", "-p", "batch_size", "32"], ["-p", "epochs", "2", "--epochs", "1"]):
        refused(["study", "--data-dir", synthetic_ptbxl, "--out", tmp_path / "study", *extra], capsys, "given twice")
    assert not (tmp_path / "study").exists()


# -- 5: the data's checks come before anything is written -------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    (["-p", "crop_length", "100000"], "crop_length=100000 does not fit records of 1000 samples"),
    (["-p", "depth", "2"], "depth=2 does not apply to 'cnn'"),
    (["-p", "filters", "[8,8,8,8,8,8,8,8,8,8,8]", "-p", "kernel_sizes", "[3,3,3,3,3,3,3,3,3,3,3]"],
     "too few for the front-end"),
    (["-p", "crop_length", "8"], "8 time steps are too few"),
])
def test_checks_that_need_the_data_run_before_anything_is_written(extra, fragment, synthetic_ptbxl, tmp_path,
                                                                  capsys):
    out = tmp_path / "study"
    args = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", *extra]
    refused(args, capsys, fragment)
    assert not out.exists()
    refused([*args, "--list-runs"], capsys, fragment)  # --list-runs with --data-dir checks them too


# -- 7: PTBXL_DIR ------------------------------------------------------------------------------

def test_the_data_folder_defaults_to_ptbxl_dir(synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTBXL_DIR", str(tmp_path / "nowhere"))
    refused(["study", "--out", tmp_path / "study"], capsys, f"PTB-XL folder not found: {tmp_path / 'nowhere'}")
    monkeypatch.setenv("PTBXL_DIR", str(synthetic_ptbxl))
    refused(["study", "--out", tmp_path / "study", "--architectures", "cnn", "-p", "crop_length", "100000",
             "--list-runs"], capsys, "crop_length=100000")  # the data was found there, and checked
    assert not (tmp_path / "study").exists()


# -- 8: --gpus names GPUs that exist -------------------------------------------------------------

def test_gpus_that_this_machine_lacks_are_refused(synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    out = tmp_path / "study"
    args = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", "--gpus", "7"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi
    refused(args, capsys, "--gpus 7: no GPU found", "--gpus none")
    monkeypatch.setenv("PATH", fake_gpus(tmp_path / "bin", 2))
    refused(args, capsys, "no GPU 7 here", "nvidia-smi -L lists 0, 1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    refused([*args[:-1], "0,1"], capsys, "no GPU 0 here", "CUDA_VISIBLE_DEVICES=1")
    assert not out.exists()


# -- 9: damaged bookkeeping files ----------------------------------------------------------------

@pytest.mark.parametrize("content", ["[broken", "", '{"a": 1}', "[1, 2]"])
def test_a_damaged_grid_file_is_a_one_line_error(content, synthetic_ptbxl, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    (study / GRID_FILE).write_text(content)
    before = listing(study)
    refused(["status", study], capsys, str(study / GRID_FILE), "delete it")
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", study, "--architectures", "cnn"], capsys,
            str(study / GRID_FILE), "delete it")
    assert listing(study) == before


@pytest.mark.parametrize("content", ["garbage", '{"cnn/seed-0": 3}', '{"cnn/seed-0": {"job_id": 1}}', "[]"])
def test_a_damaged_slurm_jobs_file_is_a_one_line_error(content, tmp_path, capsys):
    study = tmp_path / "study"
    (study / SLURM_DIR).mkdir(parents=True)
    (study / GRID_FILE).write_text('["cnn/seed-0"]')
    (study / SLURM_DIR / SLURM_JOBS_FILE).write_text(content)
    refused(["status", study], capsys, str(study / SLURM_DIR / SLURM_JOBS_FILE), "delete it")


# -- 10: a failed rerun keeps the earlier attempt's notebook ---------------------------------------

@pytest.mark.slow
def test_a_failed_rerun_keeps_the_executed_notebook_of_the_earlier_attempt(tmp_path, capsys):
    notebook = to_ipynb(TRAIN_NOTEBOOK, tmp_path / "nb")
    run_dir = tmp_path / "study" / "cnn" / "seed-0"
    executed = run_dir / f"{TRAIN_NOTEBOOK}.ipynb"
    parameters = {**RunConfig.from_parameters(data_dir=str(tmp_path / "nowhere"), architecture="cnn",
                                              **TINY).parameters(), "output_dir": str(run_dir)}
    attempts = []
    for _ in range(2):
        with pytest.raises(Exception, match=str(executed)):
            execute_run(notebook, run_dir, parameters)
        attempts.append(executed.read_bytes())
    assert (run_dir / f"{TRAIN_NOTEBOOK}.attempt-1.ipynb").read_bytes() == attempts[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [f"{TRAIN_NOTEBOOK}.attempt-1.ipynb", executed.name]
    (tmp_path / "study" / GRID_FILE).write_text('["cnn/seed-0"]')
    code, out, _ = cli(["status", tmp_path / "study"], capsys)
    assert code == 0 and f"failed    see {executed}" in out


# -- more hostile input ----------------------------------------------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    (["--jobs", "0"], "--jobs 0"),
    (["--runs-per-gpu", "0"], "--runs-per-gpu 0"),
])
def test_execution_options_are_checked_before_anything_is_written(extra, fragment, synthetic_ptbxl, tmp_path,
                                                                  capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv's tools: no sbatch, no nvidia-smi
    out = tmp_path / "study"
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", *extra], capsys,
            fragment)
    assert not out.exists()


def test_slurm_without_sbatch_is_refused_before_anything_is_written(synthetic_ptbxl, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # in a child: importing submitit here
    out = tmp_path / "study"                                       # upsets pytest's capture
    rc, _, err = finish(ecgkeras("study", "--data-dir", str(synthetic_ptbxl), "--out", str(out),
                                 "--architectures", "cnn", "--executor", "slurm"), timeout=120)
    assert rc == 2 and err.strip().splitlines()[-1].startswith("ecgkeras: error: --executor slurm")
    assert "Traceback" not in err and not out.exists()


def test_an_out_that_is_a_file_is_refused(synthetic_ptbxl, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("mine\n")
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", target, "--architectures", "cnn"], capsys,
            "is a file")
    assert target.read_text() == "mine\n"


@pytest.mark.slow
def test_an_out_inside_a_run_or_study_folder_is_refused(tiny_study, synthetic_ptbxl, capsys):
    before = listing(tiny_study)
    for inside, kind in ((tiny_study / "cnn" / "seed-0", "run"), (tiny_study / "cnn" / "seed-0" / "x", "run"),
                         (tiny_study / "cnn", "study")):
        refused(["study", "--data-dir", synthetic_ptbxl, "--out", inside, "--architectures", "cnn", *TINY_ARGS],
                capsys, f"inside the {kind} folder")
    assert listing(tiny_study) == before
