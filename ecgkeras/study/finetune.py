"""`ecgkeras finetune`: one fine-tuned run (`ecgkeras.runs.finetune`) under its run folder's lock, as any run of a study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.finetune import finetune_experiment
from ecgkeras.runs.record import RECORD_FILE, RunRecord
from ecgkeras.study.layout import GRID_FILE, STUDY_FILE
from ecgkeras.study.locks import RunLocked, run_lock


def check_run_folder(out: Path) -> None:
    """Before anything is written: --out is a new or empty folder, or a run folder to redo, outside any study
    folder and any other run (a run there would join that study's tables, or hide inside another run)."""
    if out.exists() and not out.is_dir():
        raise EcgkerasError(f"--out {out} is a file: give a folder for the fine-tuned run")
    for folder in (out, *out.parents):
        if folder != out and (folder / RECORD_FILE).is_file():
            raise EcgkerasError(f"--out {out} is inside the run folder {folder}: choose a folder outside it")
        if (folder / STUDY_FILE).is_file() or (folder / GRID_FILE).is_file():
            raise EcgkerasError(f"--out {out} is {'the' if folder == out else 'inside the'} study folder {folder}: "
                                "choose a folder outside it")
    if out.is_dir() and not (out / RECORD_FILE).is_file() and (others := sorted(p.name for p in out.iterdir())):
        raise EcgkerasError(f"--out {out} holds files that are not a run ({', '.join(others[:3])}): give a new or "
                            "empty folder, or a run folder to redo")


def finetune(parent_dir: str | Path, data_dir: str | Path, out: str | Path, parameters: dict[str, Any] | None = None,
             freeze_epochs: int = 0) -> RunRecord:
    """Fine-tune the run in `parent_dir` on `data_dir` into the run folder `out`, holding its lock."""
    out = Path(out)
    check_run_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(out):
            return finetune_experiment(parent_dir, data_dir, out, parameters, freeze_epochs)
    except RunLocked as exc:
        raise EcgkerasError(f"{exc}: wait for it to finish or choose another --out") from None
