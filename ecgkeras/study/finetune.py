"""`ecgkeras finetune`: one fine-tuned run (`ecgkeras.runs.finetune`) under its run folder's lock, as any run of a study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.finetune import finetune_experiment
from ecgkeras.runs.record import RunRecord
from ecgkeras.study.locks import RunLocked, run_lock


def finetune(parent_dir: str | Path, data_dir: str | Path, out: str | Path, parameters: dict[str, Any] | None = None,
             freeze_epochs: int = 0) -> RunRecord:
    """Fine-tune the run in `parent_dir` on `data_dir` into the run folder `out`, holding its lock."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(out):
            return finetune_experiment(parent_dir, data_dir, out, parameters, freeze_epochs)
    except RunLocked as exc:
        raise EcgkerasError(f"{exc}: wait for it to finish or choose another --out") from None
