"""ecgkeras.cli: the `ecgkeras` command: listings, dataset commands, notebooks, quiet output, one-line errors
(exit 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import ROOT, listing, refused, run_cli, run_cli_one_line, write_run

from ecgkeras import cli
from ecgkeras.cli import build_parser, main
from ecgkeras.files import FOLDER_MARKER
from ecgkeras.models import ARCHITECTURES
from ecgkeras.quiet import QUIET_ENV
from ecgkeras.report.aggregate import PUBLISHED_SUFFIXES
from ecgkeras.runs import find_runs
from ecgkeras.study import demo as demo_study
from ecgkeras.study.layout import PUBLISHED_KIND, REPORT_KIND, SUMMARY_KIND


# What TensorFlow 2.21 writes to standard error while it is imported on a machine without a GPU
TENSORFLOW_START_UP = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers")


def test_architectures_lists_every_registered_name_with_parameters(capsys):
    main(["architectures"])
    out = capsys.readouterr().out
    for name, arch in ARCHITECTURES.items():
        assert name in out and arch.display_name in out
    assert "235,799" in out  # CNN-BiLSTM at 100 Hz, 23 classes
    assert re.search(r"xresnet1d101 +XResNet1D-101 +benchmark +33,654,679", out)
    assert re.search(r"cnn-transformer +CNN-Transformer +temporal +352,535", out)


def test_synth_writes_a_dataset_and_prints_its_summary(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path / "synth"), "--records", "40", "--seed", "3"])
    out = capsys.readouterr().out
    assert "23 classes" in out and (tmp_path / "synth" / "ptbxl_database.csv").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["synth", "--out", "{tmp}/s", "--records", "5"], "n_records"),
    (["study", "--data-dir", "{tmp}/missing", "--out", "{tmp}/study"], "PTB-XL folder not found"),
    (["study", "--out", "{tmp}/study"], "--data-dir"),
    (["aggregate", "{tmp}"], "no complete run"),
    (["download", "--dest", "{tmp}/d", "--url", "http://127.0.0.1:9/ptbxl.zip"], "127.0.0.1:9"),
])
def test_bad_input_is_a_one_line_error_with_exit_status_2(args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PTBXL_DIR", raising=False)  # else `study` reads its data folder from there
    code, err = run_cli([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    assert err.startswith("ecgkeras: error:") and fragment in err and "\n" not in err


def test_notebooks_copies_them_out_as_ipynb_or_py_and_keeps_a_users_edits(tmp_path, capsys):
    main(["notebooks", str(tmp_path / "course")])
    copied = sorted(p.name for p in (tmp_path / "course").iterdir())
    assert copied == ["01_ptbxl_tour.ipynb", "02_train_architecture.ipynb", "03_aggregate_results.ipynb",
                      "04_explain_predictions.ipynb", "05_tune.ipynb", "06_your_own_ecg.ipynb"]
    tour = nbformat.read(tmp_path / "course" / "01_ptbxl_tour.ipynb", as_version=4)
    assert any("parameters" in cell.metadata.get("tags", []) for cell in tour.cells)

    (tmp_path / "course" / "01_ptbxl_tour.ipynb").write_text("my edits")
    code, err = run_cli(["notebooks", str(tmp_path / "course")], capsys)
    assert code == 2 and "01_ptbxl_tour.ipynb" in err and "--force" in err and "\n" not in err
    assert (tmp_path / "course" / "01_ptbxl_tour.ipynb").read_text() == "my edits"
    main(["notebooks", str(tmp_path / "course"), "--force"])
    assert nbformat.read(tmp_path / "course" / "01_ptbxl_tour.ipynb", as_version=4).cells

    main(["notebooks", str(tmp_path / "sources"), "--format", "py"])
    assert "# %% tags=[\"parameters\"]" in (tmp_path / "sources" / "02_train_architecture.py").read_text()


@pytest.mark.parametrize("args", [["--verbose", "study", "--demo"], ["study", "--demo", "--verbose"]])
def test_verbose_is_one_flag_before_or_after_the_command(args):
    assert build_parser().parse_args(args).verbose is True
    assert not hasattr(build_parser().parse_args(["study", "--demo"]), "verbose")


def _cli_process(*args):
    """`python -m ecgkeras ARGS` in a subprocess, with no quiet setting inherited from this one."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", QUIET_ENV)}
    return subprocess.run([sys.executable, "-m", "ecgkeras", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_python_m_ecgkeras_is_the_ecgkeras_command():
    done = _cli_process("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: ecgkeras")


@pytest.mark.slow
def test_standard_error_holds_no_tensorflow_start_up_lines_unless_verbose(tiny_run, synthetic_ptbxl):
    # `predict` loads the run's model, so TensorFlow starts
    ecg = next((synthetic_ptbxl / "records100").rglob("*.hea"))
    args = ("predict", "--run", str(tiny_run.run_dir), str(ecg))
    quiet, verbose = _cli_process(*args), _cli_process("--verbose", *args)
    assert quiet.returncode == verbose.returncode == 0 and "conversions:" in quiet.stdout
    assert quiet.stderr == ""
    # the same command with --verbose shows what was held back (else this test could not fail)
    assert any(line in verbose.stderr for line in TENSORFLOW_START_UP), verbose.stderr


@pytest.mark.parametrize("top", ["0", "-3", "two"])
def test_predict_top_must_be_a_positive_integer(tmp_path, capsys, top):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--run", str(tmp_path), "--top", top, "record"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--top" in err and "positive integer" in err and top in err


@pytest.mark.parametrize("value", ["abc", "1.5", "true"])
def test_a_bad_study_parameter_is_refused_before_the_folder_is_touched(synthetic_ptbxl, tmp_path, capsys, value):
    out = tmp_path / "study"
    code, err = run_cli(["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn",
                         "-p", "epochs", value], capsys)
    assert code == 2 and err.startswith("ecgkeras: error: epochs=") and "expected an integer" in err
    assert "\n" not in err and not out.exists()


def test_a_parameter_given_twice_is_refused_by_the_study(synthetic_ptbxl, tmp_path, capsys):
    for extra in (["-p", "batch_size", "16", "-p", "batch_size", "32"], ["-p", "epochs", "2", "--epochs", "1"]):
        refused(["study", "--data-dir", synthetic_ptbxl, "--out", tmp_path / "study", *extra], capsys, "given twice")
    assert not (tmp_path / "study").exists()


def test_the_data_folder_defaults_to_ptbxl_dir(synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTBXL_DIR", str(tmp_path / "nowhere"))
    refused(["study", "--out", tmp_path / "study"], capsys, f"PTB-XL folder not found: {tmp_path / 'nowhere'}")
    monkeypatch.setenv("PTBXL_DIR", str(synthetic_ptbxl))
    refused(["study", "--out", tmp_path / "study", "--architectures", "cnn", "-p", "crop_length", "100000",
             "--list-runs"], capsys, "crop_length=100000")  # the data was found there, and checked
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "1"], "differs in epochs 1"), (["--architectures", "cnn"], "differs in --architectures"),
    (["--seeds", "0", "1"], "differs in --seeds"), (["-p", "learning_rate", "0.1"], "differs in learning_rate"),
    (["--allow-mixed"], "differs in --allow-mixed")])
def test_publish_refuses_anything_but_the_demos_own_study_before_anything_is_made(tmp_path, capsys, extra, message):
    published = ROOT / "results" / "demo-synthetic"
    before = listing(published)
    code, err = run_cli_one_line(["study", "--demo", "--out", tmp_path / "study", "--publish", published, *extra], capsys)
    assert code == 2 and message in err and "--publish" in err
    assert listing(published) == before and not (tmp_path / "study").exists()


def test_publish_refuses_a_non_demo_study_a_users_folder_and_a_study_with_other_runs(fake_study_copy, tmp_path, capsys):
    write_run(fake_study_copy / "cnn" / "seed-1", "cnn", 1, tmp_path / "data")  # seed 1: not in the demo's grid
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = listing(tmp_path)
    for args, message in (
            (["--data-dir", tmp_path, "--out", tmp_path / "s", "--publish", tmp_path / "p"], "only the demo study is published"),
            (["--demo", "--out", tmp_path / "s", "--publish", mine], "no .ecgkeras marker"),
            (["--demo", "--out", fake_study_copy, "--publish", tmp_path / "p"], "runs outside the demo's grid")):
        code, err = run_cli_one_line(["study", *args], capsys)
        assert code == 2 and message in err
    assert listing(tmp_path) == before


def test_the_committed_demo_summary_is_marked_and_the_makefiles_demo_may_publish_it(tmp_path, monkeypatch):
    published = ROOT / "results" / "demo-synthetic"
    marker = json.loads((published / FOLDER_MARKER).read_text())
    assert marker["kind"] == PUBLISHED_KIND
    assert marker["entries"] == sorted(p.name for p in published.iterdir() if p.name != FOLDER_MARKER)
    assert {Path(name).suffix for name in marker["entries"]} <= PUBLISHED_SUFFIXES
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    command = re.search(r"^\t\$\(BIN\)/ecgkeras (.+)$", recipe, re.M).group(1)  # the recipe's ecgkeras line
    assert command == "study --demo --publish results/demo-synthetic"
    shutil.copytree(published, tmp_path / "results" / "demo-synthetic")
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(command.split())
    demo_study.check_publish(cli._study_request(args))  # accepted


@pytest.mark.slow
def test_the_demo_stays_inside_its_study_folder_and_nothing_trips_over_its_data(demo, capsys):
    assert sorted(p.name for p in demo.iterdir()) == ["tiny-demo"]  # no data/, results/ or runs/ beside it
    study = demo / "tiny-demo"
    assert (study / demo_study.DEMO_DATA / "ptbxl_database.csv").is_file()
    assert [run.run_dir for run in find_runs(study)] == [study / "cnn" / "seed-0"]
    main(["status", str(study)])
    assert capsys.readouterr().out.splitlines()[0].split() == ["cnn/seed-0", "complete"]
    for folder, kind in (("summary", SUMMARY_KIND), ("report", REPORT_KIND)):
        assert json.loads((study / folder / FOLDER_MARKER).read_text())["kind"] == kind
    notebooks = sorted(p.name for p in (study / "report" / "notebooks").iterdir())
    assert notebooks == ["cnn-seed-0-02_train_architecture.html", "summary-03_aggregate_results.html"]
    executed = (study / "summary" / "03_aggregate_results.ipynb").read_text()
    assert ".staging-" not in executed and str((study / "summary").resolve()) in executed
