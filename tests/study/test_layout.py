"""ecgkeras.study.layout: the grid, its shards and the study's bookkeeping files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import listing, refused

from ecgkeras.study.layout import GRID_FILE, grid, shard_runs


def test_shards_partition_the_grid():
    runs = list(grid(Path("/s"), ["cnn", "cnn-gru", "cnn-lstm"], [0, 1, 2]))
    shards = [shard_runs(runs, i, 4) for i in range(1, 5)]
    assert sorted(sum(shards, [])) == sorted(runs)
    assert shards == [shard_runs(runs, i, 4) for i in range(1, 5)]  # deterministic


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
