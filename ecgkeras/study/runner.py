"""The study runner: every planned (architecture, seed) run executed (`execute_study`).

Aggregating the records into a summary and report is `ecgkeras.report.aggregate`, whose
`run_study` executes a study and then aggregates it.

A rerun skips complete runs and redoes incomplete ones; a failed run is reported with the path of
its executed notebook and does not stop the others. Runs execute on this machine (`local`: threads,
one device slot each) or as a SLURM job array (`slurm`); a run being executed anywhere holds its
lock (`locks`), so no run is trained twice at once, and a study registers its plan under the
folder's lock (`plan`), so a run folder takes one configuration. The folder's layout: `layout`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from ecgkeras.errors import EcgkerasError
from ecgkeras.models import PAPER_ARCHITECTURES
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.record import is_complete
from ecgkeras.study.devices import device_slots
from ecgkeras.study.layout import SLURM_DIR, run_id
from ecgkeras.study.local import run_local
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, to_ipynb
from ecgkeras.study.plan import plan_study, register_plan
from ecgkeras.study.slurm import SlurmOptions, check_slurm, queued_runs, submit_slurm, wait_slurm
from ecgkeras.study.status import run_status

log = logging.getLogger(__name__)



@dataclass
class StudyResult:
    """What a study execution did."""

    study_dir: Path
    completed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)  # run folder -> executed notebook / reason
    locked: dict[Path, str] = field(default_factory=dict)  # run folder -> who is running it elsewhere
    submitted: list[Path] = field(default_factory=list)  # left queued on SLURM (--no-wait)
    slurm_job: str | None = None
    ready_to_aggregate: bool = False  # every run of the grid is complete or failed here
    bootstrap_resamples: int = 0  # the planned configuration's, for the aggregation
    summary_dir: Path | None = None  # set once aggregated
    published: Path | None = None  # set once its summary was published (the demo's --publish)


@dataclass
class Execution:
    """How a study executes its runs: where, on which devices, and which share of the grid."""

    executor: str = "local"  # local or slurm
    gpus: list[str] | None = None  # None: detect; []: CPU only
    runs_per_gpu: int = 1
    shard: tuple[int, int] | None = None  # (I, N): only every N-th run of the grid, from the I-th
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    wait: bool = True  # slurm: wait for the array, then aggregate


def execute_study(data_dir: str | Path, study_dir: str | Path,
                  architectures: Iterable[str] = PAPER_ARCHITECTURES, seeds: Iterable[int] = (0,),
                  parameters: dict[str, Any] | None = None, jobs: int = 1, allow_mixed: bool = False,
                  log_output: bool = False, execution: Execution | None = None,
                  crossed: dict[str, list[Any]] | None = None) -> StudyResult:
    """Run the training notebook for every (architecture, seed) missing in `study_dir`, in every cell of
    the `crossed` parameters (`--grid`) when given.

    `parameters` are run parameters (epochs, sampling_rate, ...; see `ecgkeras parameters`), shared
    by all runs. Every parameter, the data folder and the study folder's existing runs are checked
    before anything is written. The result is ready to aggregate once every run of the grid is complete
    or failed here: not while some run executes elsewhere, is queued on SLURM, or belongs to another
    shard (`ecgkeras aggregate` then).
    """
    execution = execution or Execution()
    study_dir = Path(study_dir).resolve()
    if jobs < 1:
        raise EcgkerasError(f"--jobs {jobs}: give at least 1")
    slots = _slots(execution, jobs) if execution.executor == "local" else []  # checks --gpus, --runs-per-gpu
    if execution.executor == "slurm":
        check_slurm()
    plan = plan_study(data_dir, study_dir, architectures, seeds, parameters or {}, execution.shard, crossed)
    register_plan(study_dir, plan.configs, allow_mixed)
    first = next(iter(plan.configs.values()))
    with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
        result = _run_all(to_ipynb(TRAIN_NOTEBOOK, Path(tmp)), study_dir,
                          {run_dir: plan.configs[run_dir] for run_dir in plan.runs}, jobs, slots, log_output, execution)
    result.ready_to_aggregate = (not execution.shard and bool(result.completed or result.skipped)
                                 and not result.locked and not result.submitted)
    result.bootstrap_resamples = first.bootstrap_resamples
    return result


def _run_all(train_notebook: Path, study_dir: Path, runs: dict[Path, RunConfig], jobs: int,
             slots: list[dict[str, str]], log_output: bool, execution: Execution) -> StudyResult:
    """Execute the incomplete runs of `runs` with the chosen executor; complete ones are skipped."""
    result = StudyResult(study_dir)
    pending = {}
    for run_dir, config in runs.items():
        if is_complete(run_dir):
            result.skipped.append(run_dir)
        else:
            pending[run_dir] = config
    if result.skipped:
        log.warning("skipping %d complete run(s) already in %s", len(result.skipped), study_dir)
    if not pending:
        return result
    if execution.executor == "slurm":
        return _run_slurm(train_notebook, study_dir, pending, jobs, execution, result)
    with tqdm(total=len(pending), desc="study runs", unit="run") as progress:
        outcomes = run_local(train_notebook, pending, slots, log_output, on_done=progress.update,
                             executor=execution.executor)
    result.completed, result.failed, result.locked = outcomes.completed, outcomes.failed, outcomes.locked
    result.skipped += outcomes.skipped
    return result


def _run_slurm(train_notebook: Path, study_dir: Path, pending: dict[Path, RunConfig], jobs: int,
               execution: Execution, result: StudyResult) -> StudyResult:
    """Submit the runs not already queued from an earlier submission; wait for all unless --no-wait."""
    queued = queued_runs(study_dir, list(pending))
    if queued:
        log.warning("%d run(s) already queued or running on SLURM from an earlier submission", len(queued))
    submit = {run_dir: config for run_dir, config in pending.items() if run_dir not in queued}
    if submit:
        result.slurm_job = submit_slurm(train_notebook, study_dir, submit, execution.slurm, jobs)
        log.warning("submitted %d run(s) as SLURM job array %s; logs in %s", len(submit), result.slurm_job,
                    study_dir / SLURM_DIR)
    if not execution.wait:
        result.submitted, result.locked = list(submit), queued
        return result
    with tqdm(total=len(pending), desc="study runs (SLURM)", unit="run") as progress:
        wait_slurm(study_dir, list(pending), on_done=progress.update)
    _collect_slurm(study_dir, list(pending), result)
    return result


def _slots(execution: Execution, jobs: int) -> list[dict[str, str]]:
    """One kernel environment per concurrent run: the same one for all without GPU pinning."""
    slots = device_slots(execution.gpus, execution.runs_per_gpu)
    if "TF_FORCE_GPU_ALLOW_GROWTH" not in slots[0]:
        return slots[:1] * jobs
    if jobs > len(slots):
        log.warning("--jobs %d but %d GPU slot(s): %d run(s) at a time (--runs-per-gpu shares a GPU)",
                    jobs, len(slots), len(slots))
    return slots[:jobs]


def _collect_slurm(study_dir: Path, runs: list[Path], result: StudyResult) -> None:
    """After the array ended: complete runs, and failed ones with their executed notebook or job log."""
    status = {run_id: (state, detail) for run_id, state, detail in run_status(study_dir)}
    for run_dir in runs:
        state, detail = status[run_id(study_dir, run_dir)]
        if state == "complete":
            result.completed.append(run_dir)
        elif state == "running":
            result.locked[run_dir] = detail
        else:
            result.failed[run_dir] = detail or "the job ended without a complete run record"
