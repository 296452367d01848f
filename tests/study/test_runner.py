"""ecgkeras.study.runner: Ctrl-C stops a study in seconds, a study of other parameters beside its planned run is
refused, the next invocation resumes only the missing runs, and the execution options are checked before
anything is written."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, ecgkeras, finish, refused, study_args, tiny_args

from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import find_runs, is_complete
from ecgkeras.study.layout import STUDY_FILE, grid
from ecgkeras.study.locks import lock_owner, lock_path


def _kernels_of(pid: int) -> list[int]:
    """Processes started by `pid`'s kernel managers (their environment names it as JPY_PARENT_PID)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"JPY_PARENT_PID={pid}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_ctrl_c_stops_a_study_in_seconds_its_planned_run_refuses_other_parameters_and_a_rerun_resumes_it(
        tiny_study_copy, synthetic_ptbxl, capsys):
    out = tiny_study_copy
    (out / "cnn-gru" / "seed-0" / "metrics.json").unlink()  # as if an older version was killed mid-write
    complete, missing = grid(out, ["cnn", "cnn-gru"], [0])
    kept = (complete / "metrics.json").stat().st_mtime_ns
    study = ecgkeras(*study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru"))
    deadline = time.monotonic() + 300
    while not lock_path(missing).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert study.poll() is None, "the study ended before its missing run started"
    time.sleep(3)  # the missing run's kernel is starting or training
    signalled = time.monotonic()
    study.send_signal(signal.SIGINT)
    rc, _, stderr = finish(study, timeout=60)
    assert time.monotonic() - signalled < 10, stderr  # a run takes longer; the kernel was stopped, not awaited
    assert rc == 130
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("ecgkeras: interrupted")
    assert not _kernels_of(study.pid)
    assert lock_owner(missing) is None and not is_complete(missing)
    assert (complete / "metrics.json").stat().st_mtime_ns == kept
    # the run stays planned (study.json) but not complete: a study of other parameters there is refused
    other = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn-gru",
             *tiny_args(learning_rate=0.002)]
    described = (out / STUDY_FILE).read_bytes()
    refused(other, capsys, "different configuration", "planned by another study")
    refused([*other, "--allow-mixed"], capsys, "cnn-gru/seed-0", "another --out")
    assert (out / STUDY_FILE).read_bytes() == described
    result = run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY,
                       aggregate=False)  # the next invocation
    assert result.completed == [missing] and result.skipped == [complete]
    assert (complete / "metrics.json").stat().st_mtime_ns == kept and is_complete(missing)
    assert len(find_runs(out)) == 2


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
