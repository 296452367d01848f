"""ecgkeras.study.runner: a study resumes the missing runs, shards cover the grid once, and the
execution options are checked before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import TINY, completed_count, ecgkeras, finish, refused, study_args

from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import find_runs, is_complete
from ecgkeras.study.layout import grid


@pytest.mark.slow
def test_interrupted_study_resumes_only_the_missing_runs(tiny_study_copy, synthetic_ptbxl):
    out = tiny_study_copy
    (out / "cnn-gru" / "seed-0" / "metrics.json").unlink()  # as if an older version was killed mid-write
    kept = (out / "cnn" / "seed-0" / "metrics.json").stat().st_mtime_ns
    result = run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY,
                       aggregate=False)
    assert [p.parent.name for p in result.completed] == ["cnn-gru"]
    assert [p.parent.name for p in result.skipped] == ["cnn"]
    assert (out / "cnn" / "seed-0" / "metrics.json").stat().st_mtime_ns == kept
    assert len(find_runs(out)) == 2


@pytest.mark.slow
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
