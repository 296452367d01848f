"""ecgkeras.study.locks: a run is trained by one process at a time, also by shards and a study started at once."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from helpers import completed_count, ecgkeras, finish, run_main, study_args

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
def test_shards_and_a_whole_study_beside_them_train_each_run_exactly_once(synthetic_ptbxl, tmp_path, capsys):
    # Two shards start at once and each trains its run; the whole study (--jobs 2) starts beside them.
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru")
    runs = grid(out, ["cnn", "cnn-gru"], [0])
    shards = [ecgkeras(*args, "--shard", f"{i}/2") for i in (1, 2)]
    deadline = time.monotonic() + 300
    while not all(lock_path(run_dir).exists() or is_complete(run_dir) for run_dir in runs) \
            and all(shard.poll() is None for shard in shards) and time.monotonic() < deadline:
        time.sleep(0.2)
    whole = ecgkeras(*args, "--jobs", "2")
    *sharded, beside = results = [finish(process) for process in (*shards, whole)]
    assert all(rc == 0 for rc, _, _ in results), results
    assert [completed_count(stdout) for _, stdout, _ in sharded] == [1, 1], results
    assert completed_count(beside[1]) == 0, results  # no run trained twice
    assert all(is_complete(run_dir) for run_dir in runs)
    # shards leave aggregation to `ecgkeras aggregate`
    assert not any("summary (tables and figures)" in stdout for _, stdout, _ in sharded), results
    rc, stdout, _ = run_main(["status", out], capsys)
    assert rc == 0 and "2 complete" in stdout
    if not (out / "summary").is_dir():  # the whole study skipped runs the shards were training: rerun to aggregate
        assert "running elsewhere" in beside[1]
        rc, stdout, _ = finish(ecgkeras(*args))
        assert rc == 0 and "2 already complete" in stdout
    assert "CNN-GRU" in (out / "summary" / "results_tuned.md").read_text()
