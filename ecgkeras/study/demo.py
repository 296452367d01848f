"""The demo study: the paper's seven architectures on a synthetic PTB-XL, with short settings, made
and kept inside its study folder; `--publish DIR` copies its summary only when the study is the
demo's own (its grid and settings), so a trial run never overwrites a published demo summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import check_replaceable
from ecgkeras.study.layout import PUBLISHED_KIND, grid
from ecgkeras.study.request import StudyRequest

DEMO_DATA = "synthetic-ptbxl"  # inside the demo's study folder, unless --data-dir is given
DEMO_STUDY = Path("runs/demo")
DEMO_RECORDS = 800
DEMO_SEEDS = [0]
# Two runs at a time: one trains while the other starts its kernel, evaluates and writes (single-threaded).
DEMO_JOBS = min(2, os.cpu_count() or 1)
# Short settings so the seven paper architectures train in about 5 minutes on 2 CPU cores: 5 s random
# crops of the 10 s records (evaluated on sliding windows of the whole record), 15 epochs at most.
DEMO_PARAMETERS = {"epochs": 15, "batch_size": 32, "patience": 5, "crop_length": 500, "bootstrap_resamples": 200}


def demo_request(data_dir: Path | None, study_dir: Path | None, parameters: dict[str, Any] | None = None,
                 **inputs: Any) -> StudyRequest:
    """The demo's request: its study folder and data inside it unless given, its settings under `parameters`."""
    study_dir = study_dir or DEMO_STUDY
    return StudyRequest(data_dir or study_dir / DEMO_DATA, study_dir,
                        parameters={**DEMO_PARAMETERS, **(parameters or {})}, demo=True,
                        **{"jobs": DEMO_JOBS, **inputs})


def _results(parameters: dict[str, Any]) -> dict[str, Any]:
    from ecgkeras.runs.config import RunConfig

    return RunConfig.from_parameters(**{**parameters, "data_dir": "."}).shared_parameters(results_only=True)


def check_publish(request: StudyRequest) -> None:
    """Before anything is made: --publish takes only the demo's own study, into a folder it may replace."""
    from ecgkeras.models import PAPER_ARCHITECTURES, expand_architectures
    from ecgkeras.runs.record import find_runs

    option = f"--publish {request.publish}"
    if not request.demo:
        raise EcgkerasError(f"{option}: only the demo study is published: `ecgkeras study --demo --publish DIR`")
    demo, requested = _results(DEMO_PARAMETERS), _results(request.parameters)
    differing = [f"{name} {requested[name]} (the demo's: {demo[name]})" for name in sorted(demo)
                 if demo[name] != requested[name]]
    architectures = expand_architectures(request.architectures)
    differing += [flag for flag, differs in (
        ("--architectures", architectures != list(PAPER_ARCHITECTURES)), ("--seeds", request.seeds != DEMO_SEEDS),
        ("--allow-mixed", request.allow_mixed), ("--grid", bool(request.grid)), ("--shard", request.execution and request.execution.shard))
        if differs]
    if differing:
        raise EcgkerasError(f"{option}: only the demo's own study is published (`ecgkeras study --demo "
                            f"--publish DIR`), this one differs in {', '.join(differing)}: drop them, or drop --publish")
    study_dir = request.study_dir.resolve()
    demo_grid = set(grid(study_dir, PAPER_ARCHITECTURES, DEMO_SEEDS))
    if study_dir.is_dir() and (others := [run.run_dir for run in find_runs(study_dir) if run.run_dir not in demo_grid]):
        raise EcgkerasError(f"{option}: {request.study_dir} also holds runs outside the demo's grid "
                            f"({others[0]}, ...), which its summary would include: use another --out")
    check_replaceable(request.publish.resolve(), PUBLISHED_KIND, "--publish")


def prepare_demo(request: StudyRequest) -> None:
    """Check the demo's parameters and --publish, then make its synthetic data (nothing made before)."""
    from ecgkeras.data.synthetic import make_synthetic_ptbxl
    from ecgkeras.study.plan import plan_study

    plan_study(None, request.study_dir.resolve(), request.architectures, request.seeds, request.parameters,
               crossed=request.grid)
    if request.publish:
        check_publish(request)
    request.data_dir = make_synthetic_ptbxl(request.data_dir, n_records=DEMO_RECORDS, seed=0)
