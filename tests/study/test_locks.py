"""ecgkeras.study.locks: a run is trained by one process at a time, also by two studies at once."""

from __future__ import annotations

import json
import logging
import os

import pytest
from helpers import completed_count, ecgkeras, finish, study_args

from ecgkeras.runs import is_complete
from ecgkeras.study.layout import grid
from ecgkeras.study.locks import RunLocked, lock_owner, lock_path, run_lock


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


@pytest.mark.slow
def test_two_studies_at_once_train_each_run_exactly_once(synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru", "--jobs", "2")
    first, second = ecgkeras(*args), ecgkeras(*args)
    results = [finish(first), finish(second)]
    assert all(rc == 0 for rc, _, _ in results), results
    assert sum(completed_count(stdout) for _, stdout, _ in results) == 2, results  # no run trained twice
    runs = grid(out, ["cnn", "cnn-gru"], [0])
    assert all(is_complete(run_dir) for run_dir in runs)
    if not (out / "summary").is_dir():  # each skipped runs the other was training: rerun to aggregate
        assert any("running elsewhere" in stdout for _, stdout, _ in results)
        rc, stdout, _ = finish(ecgkeras(*args))
        assert rc == 0 and "2 already complete" in stdout
    assert "CNN-GRU" in (out / "summary" / "results_tuned.md").read_text()
