"""Executing a study on this machine: concurrency, locks, shards, GPU slots and Ctrl-C, for real
(papermill kernels training tiny models on the synthetic PTB-XL)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_notebooks import TINY

from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import is_complete, load_run
from ecgkeras.study.layout import grid, shard_runs
from ecgkeras.study.locks import RunLocked, lock_owner, lock_path, run_lock
from ecgkeras.study.runner import Execution

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = [arg for name, value in TINY.items() for arg in ("-p", name, json.dumps(value))]


def ecgkeras(*args: str, **kwargs) -> subprocess.Popen:
    """Start the `ecgkeras` command line in a child process (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ecgkeras.cli", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def study_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["study", "--data-dir", str(data), "--out", str(out), *TINY_ARGS, *extra]


def finish(process: subprocess.Popen, timeout: float = 400) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def completed_count(stdout: str) -> int:
    return int(re.search(r"(\d+) run\(s\) completed", stdout).group(1))


def test_a_run_lock_excludes_others_and_a_dead_owners_lock_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "cnn" / "seed-0"
    with run_lock(run_dir):
        assert "pid" in lock_owner(run_dir)
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            with run_lock(run_dir):
                pass
    assert lock_owner(run_dir) is None and not lock_path(run_dir).exists()
    # a killed owner leaves its description behind, but its OS lock died with it
    lock_path(run_dir).write_text(json.dumps({"host": "gone-host", "pid": 1234, "started": "yesterday"}))
    assert lock_owner(run_dir) is None
    with caplog.at_level(logging.WARNING), run_lock(run_dir):
        pass
    assert "taking over the stale lock" in caplog.text and "gone-host" in caplog.text


def test_shards_partition_the_grid():
    runs = list(grid(Path("/s"), ["cnn", "cnn-gru", "cnn-lstm"], [0, 1, 2]))
    shards = [shard_runs(runs, i, 4) for i in range(1, 5)]
    assert sorted(sum(shards, [])) == sorted(runs)
    assert shards == [shard_runs(runs, i, 4) for i in range(1, 5)]  # deterministic


def test_two_studies_at_once_train_each_run_exactly_once(synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru", "--seeds", "0", "1",
                      "--jobs", "2")
    first, second = ecgkeras(*args), ecgkeras(*args)
    results = [finish(first), finish(second)]
    assert all(rc == 0 for rc, _, _ in results), results
    assert sum(completed_count(stdout) for _, stdout, _ in results) == 4, results  # no run trained twice
    runs = grid(out, ["cnn", "cnn-gru"], [0, 1])
    assert all(is_complete(run_dir) for run_dir in runs)
    if not (out / "summary").is_dir():  # each skipped runs the other was training: rerun to aggregate
        assert any("running elsewhere" in stdout for _, stdout, _ in results)
        rc, stdout, _ = finish(ecgkeras(*args))
        assert rc == 0 and "4 already complete" in stdout
    assert "CNN-GRU" in (out / "summary" / "results_tuned.md").read_text()


def test_concurrent_shards_cover_the_grid_once(synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru")
    shards = [ecgkeras(*args, "--shard", f"{i}/2") for i in (1, 2)]
    results = [finish(process) for process in shards]
    assert [completed_count(stdout) for _, stdout, _ in results] == [1, 1], results
    assert all(is_complete(run_dir) for run_dir in grid(out, ["cnn", "cnn-gru"], [0]))
    assert not (out / "summary").exists()  # shards leave aggregation to `ecgkeras aggregate`
    rc, stdout, _ = finish(ecgkeras("status", str(out)))
    assert rc == 0 and "2 complete" in stdout


def fake_gpus(folder: Path, count: int) -> str:
    """A PATH whose `nvidia-smi -L` lists `count` GPUs: device pinning tested on a machine without any."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: Fake GPU (UUID: GPU-{i})'\n" for i in range(count)))
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_each_concurrent_run_gets_its_own_gpu_slot(synthetic_ptbxl, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_gpus(tmp_path / "bin", 2))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = run_study(synthetic_ptbxl, tmp_path / "s", architectures=["cnn"], seeds=[0, 1], parameters=TINY,
                       jobs=2, aggregate=False, execution=Execution(gpus=["0", "1"]))
    assert len(result.completed) == 2
    contexts = [load_run(run_dir).execution for run_dir in result.completed]
    assert sorted(context["cuda_visible_devices"] for context in contexts) == ["0", "1"]
    assert all(context["executor"] == "local" and context["host"] and context["gpus"] == [] for context in contexts)
    assert all(context["devices"] == ["/device:CPU:0"] and context["gpu_names"] == [] for context in contexts)


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


def test_ctrl_c_stops_a_study_in_seconds_and_the_next_invocation_finishes_it(synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "--seeds", "0", "1", "-p", "epochs", "2")
    study = ecgkeras(*args)
    first, second = grid(out, ["cnn"], [0, 1])
    deadline = time.monotonic() + 300
    while not (is_complete(first) and lock_path(second).exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert study.poll() is None, "the study ended before the second run started"
    time.sleep(3)  # the second run's kernel is starting or training
    kept = (first / "metrics.json").stat().st_mtime_ns
    signalled = time.monotonic()
    study.send_signal(signal.SIGINT)
    rc, _, stderr = finish(study, timeout=60)
    assert time.monotonic() - signalled < 10, stderr  # a run takes longer; the kernel was stopped, not awaited
    assert rc == 130
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("ecgkeras: interrupted")
    assert not _kernels_of(study.pid)
    assert lock_owner(second) is None and not is_complete(second)
    assert (first / "metrics.json").stat().st_mtime_ns == kept
    result = run_study(synthetic_ptbxl, out, architectures=["cnn"], seeds=[0, 1], parameters={**TINY, "epochs": 2},
                       aggregate=False)  # the next invocation
    assert result.completed == [second] and result.skipped == [first]
    assert (first / "metrics.json").stat().st_mtime_ns == kept and is_complete(second)
