"""`ecgkeras study --external DIR ...`: every complete run of the study validated on other labelled datasets
(`ecgkeras.runs.external`), so that the summary shows internal and external results side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ecgkeras.data.challenge import is_challenge_dir
from ecgkeras.data.ptbxl import DATABASE_CSV
from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.record import find_runs


def check_external(data_dirs: Iterable[Path]) -> None:
    """Before anything is written: each --external folder holds Challenge-format records or PTB-XL."""
    for data_dir in map(Path, data_dirs):
        if not data_dir.is_dir() or not ((data_dir / DATABASE_CSV).is_file() or is_challenge_dir(data_dir)):
            raise EcgkerasError(f"--external {data_dir}: not a folder of Challenge-format records (.hea with #Dx) "
                                f"nor a PTB-XL folder ({DATABASE_CSV}): give one of those")


def evaluate_externally(study_dir: Path, data_dirs: Iterable[Path]) -> list[Path]:
    """Each complete run of the study on each dataset, once: an evaluation already on disk is kept."""
    from ecgkeras.runs.external import evaluate_external, external_path, write_external  # TensorFlow

    written = []
    for run in find_runs(study_dir):
        for data_dir in data_dirs:
            if not (path := external_path(run.run_dir, data_dir)).is_file():
                written.append(write_external(evaluate_external(run.run_dir, data_dir, progress=False), path))
    return written
