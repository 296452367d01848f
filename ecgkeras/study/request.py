"""What one `ecgkeras study` command asks for, resolved before anything is written: the data folder
(`--data-dir`, else $PTBXL_DIR), the study folder, the grid, the run parameters (each given once,
by `-p` or by its own flag) and where the runs execute. The demo's defaults: `ecgkeras.study.demo`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ecgkeras.errors import EcgkerasError
from ecgkeras.study.layout import run_id

if TYPE_CHECKING:  # imported on use: the command line reads this module before any command runs
    from ecgkeras.study.runner import Execution

PTBXL_VARIABLE = "PTBXL_DIR"  # where `study` finds PTB-XL without --data-dir


@dataclass
class StudyRequest:
    """A study command's inputs, with the defaults resolved."""

    data_dir: Path | None
    study_dir: Path | None
    architectures: list[str] = field(default_factory=lambda: list(_paper_architectures()))
    seeds: list[int] = field(default_factory=lambda: [0])
    parameters: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)  # --grid: parameters crossed with the architectures
    jobs: int = 1
    allow_mixed: bool = False
    execution: Execution | None = None  # None: on this machine, the whole grid
    demo: bool = False
    publish: Path | None = None
    log_output: bool = False  # stream the notebooks' output (--verbose)
    from_tuning: Path | None = None  # train each architecture's best configuration of this tuning
    external: list[Path] = field(default_factory=list)  # --external: datasets every run is validated on


def _paper_architectures() -> tuple[str, ...]:
    from ecgkeras.models import PAPER_ARCHITECTURES

    return PAPER_ARCHITECTURES


def _literal(value: str) -> Any:
    """Parse a command-line value as JSON (numbers, lists, null, true/false), else keep the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_parameters(pairs: Iterable[tuple[str, str]], flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """`-p NAME VALUE` pairs plus the parameters given by their own flag (`--epochs`: {"epochs": ...}), values
    parsed as JSON where possible (checked by the schema later); a parameter given twice is refused."""
    parameters: dict[str, Any] = {}
    for name, value in pairs:
        if name in parameters:
            raise EcgkerasError(f"-p {name} is given twice ({parameters[name]!r} and {_literal(value)!r}): "
                                "give each parameter once")
        parameters[name] = _literal(value)
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name in parameters:
            raise EcgkerasError(f"{name} is given twice (-p {name} {parameters[name]!r} and "
                                f"--{name.replace('_', '-')} {value}): give it once")
        parameters[name] = value
    return parameters


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """`--grid NAME=V1,V2` items to {NAME: [V1, V2]}: values parsed as JSON where possible, or a JSON list
    (`--grid 'filters=[[8,8],[16,16]]'`) for values that hold commas; checked by the schema later."""
    crossed: dict[str, list[Any]] = {}
    for item in items:
        name, _, text = item.partition("=")
        if not name or not text:
            raise EcgkerasError(f"--grid {item!r}: give NAME=VALUE1,VALUE2, e.g. --grid rnn_readout=last,pool")
        values = _literal(text) if text.startswith("[") else [_literal(value) for value in text.split(",")]
        if not isinstance(values, list) or not values:
            raise EcgkerasError(f"--grid {item!r}: give the values as V1,V2 or a JSON list")
        if name in crossed:
            raise EcgkerasError(f"--grid {name} is given twice: give each parameter once, its values comma-separated")
        if len({json.dumps(value) for value in values}) < len(values):
            raise EcgkerasError(f"--grid {item!r} repeats a value: give each value once")
        crossed[name] = values
    return crossed


def study_request(data_dir: Path | None, study_dir: Path | None, **inputs: Any) -> StudyRequest:
    """The request with its defaults: the data folder from $PTBXL_DIR when not given (the demo's own
    request, whose data the study makes: `ecgkeras.study.demo.demo_request`)."""
    if data_dir is None and os.environ.get(PTBXL_VARIABLE):
        data_dir = Path(os.environ[PTBXL_VARIABLE])
    return StudyRequest(data_dir, study_dir, **inputs)


def require_folders(request: StudyRequest) -> None:
    """A study needs a data folder and a study folder (a study from a tuning has the tuning's)."""
    if request.from_tuning:
        return
    if request.data_dir is None or request.study_dir is None:
        raise EcgkerasError(f"study needs --data-dir DIR (or ${PTBXL_VARIABLE}) and --out STUDY_DIR (or --demo)")


def list_runs(request: StudyRequest) -> list[str]:
    """The run ids the request would execute, from the study's own planner and checks."""
    from ecgkeras.study.plan import plan_study

    data_dir = None if request.demo and not request.data_dir.exists() else request.data_dir  # the demo makes it
    study_dir = request.study_dir.resolve() if request.study_dir else Path("/")
    plan = plan_study(data_dir, study_dir, request.architectures, request.seeds, request.parameters,
                      request.execution.shard if request.execution else None, request.grid)
    return [run_id(study_dir, run_dir) for run_dir in plan.runs]
