"""The `ecgkeras` command: listings, dataset commands, notebooks, quiet output, one-line errors (exit 2)."""

import os
import subprocess
import sys

import nbformat
import pytest

from ecgkeras.cli import build_parser, main
from ecgkeras.models import ARCHITECTURES
from ecgkeras.quiet import QUIET_ENV

# What TensorFlow 2.21 writes to standard error while it is imported on a machine without a GPU
TENSORFLOW_START_UP = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers")


@pytest.fixture(autouse=True)
def undo_quiet_setting(monkeypatch):
    """main() makes the process quiet through an environment variable its kernels inherit: undone after."""
    monkeypatch.delenv(QUIET_ENV, raising=False)


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err.strip()


def test_architectures_lists_every_registered_name_with_parameters(capsys):
    main(["architectures"])
    out = capsys.readouterr().out
    for name, arch in ARCHITECTURES.items():
        assert name in out and arch.display_name in out
    assert "235,799" in out  # CNN-BiLSTM at 100 Hz, 23 classes


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
                      "04_explain_predictions.ipynb"]
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


def test_standard_error_holds_no_tensorflow_start_up_lines_unless_verbose(tmp_path):
    # `aggregate` loads TensorFlow (through the model registry) before it finds no run to aggregate
    quiet, verbose = _cli_process("aggregate", str(tmp_path)), _cli_process("--verbose", "aggregate", str(tmp_path))
    assert quiet.returncode == verbose.returncode == 2
    assert quiet.stderr.startswith("ecgkeras: error: no complete run") and quiet.stderr.count("\n") == 1
    # the same command with --verbose shows what was held back (else this test could not fail)
    assert any(line in verbose.stderr for line in TENSORFLOW_START_UP), verbose.stderr
