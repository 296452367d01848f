"""The one owner of a tuning folder's layout, `STUDY_DIR/tuning/`:

  tuning.json                the settings every architecture shares (budget, sampler seed, pruner, space,
                             fixed parameters, data, storage); a rerun into the folder must match them
  journal.log                the Optuna journal storage (unless --storage names a database)
  summary.json               the budget spent and the best trial per architecture, written after each tune
  <architecture>/trial-<k>/  one trial: a run record plus trial.json (its Optuna state and value)
  <architecture>/history.png, importances.png   the optimization history and parameter importances
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ecgkeras.files import atomic_write_text
from ecgkeras.runs.record import APART_MARKER

TUNING_DIR = "tuning"
SETTINGS_FILE = "tuning.json"
JOURNAL_FILE = "journal.log"
DEFAULT_STORAGE = f"journal:{JOURNAL_FILE}"  # the journal file in the tuning folder
SUMMARY_FILE = "summary.json"
TRIAL_FILE = "trial.json"
HISTORY_PLOT = "history.png"
IMPORTANCE_PLOT = "importances.png"
COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"  # a trial's state in its trial.json


def tuning_dir(study_dir: Path) -> Path:
    """The tuning folder of a study folder."""
    return study_dir / TUNING_DIR


def make_tuning_dir(study_dir: Path) -> Path:
    """Create the tuning folder, marked so its trials stay out of the study's own tables."""
    folder = tuning_dir(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / APART_MARKER).exists():
        atomic_write_text(folder / APART_MARKER, "trial run records of `ecgkeras tune`, not the study's runs\n")
    return folder


def trial_folder(study_dir: Path, architecture: str, number: int) -> Path:
    """The run folder of trial `number` of `architecture`."""
    return tuning_dir(study_dir) / architecture / f"trial-{number}"


def study_name(architecture: str) -> str:
    """The Optuna study of `architecture` in the storage."""
    return f"ecgkeras-{architecture}"


def write_trial_file(run_dir: Path, content: dict[str, Any]) -> None:
    """`trial.json` of a trial folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / TRIAL_FILE, json.dumps(content, indent=2))
