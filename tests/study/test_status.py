"""ecgkeras.study.status: `ecgkeras status` calls complete only a complete run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgkeras.cli import main
from ecgkeras.runs import MODEL_FILE


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.slow
def test_status_does_not_call_a_truncated_model_complete(tiny_run_copy, capsys):
    from ecgkeras.study.notebooks import TRAIN_NOTEBOOK

    run_dir = tiny_run_copy / "cnn" / "seed-0"
    (run_dir / f"{TRAIN_NOTEBOOK}.ipynb").write_text("{}")
    main(["status", str(tiny_run_copy)])
    assert "complete" in capsys.readouterr().out.splitlines()[0]
    _truncate(run_dir / MODEL_FILE)
    main(["status", str(tiny_run_copy)])
    assert "complete" not in capsys.readouterr().out.splitlines()[0]
