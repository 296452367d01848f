"""The study runner: one papermill execution of the training notebook per (architecture, seed).

Layout of a study folder:
  study.json                         each configuration in the folder with its runs, complete or planned
  <architecture>/seed-<k>/           one run record + its executed notebook
  summary/                           tables, figures and the executed aggregation notebook
A rerun skips complete runs and redoes incomplete ones; a failed run is reported with the
path of its executed notebook and does not stop the others. Runs execute on this machine
(threads, one GPU slot each) or as a SLURM job array (ecgkeras.study.executors); a run being
executed anywhere holds its lock (ecgkeras.study.locks), so no run is trained twice at once, and a
study registers its plan in study.json under the folder's lock, so a run folder takes one configuration.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import jupytext
import papermill
from tqdm import tqdm

from ecgkeras.study import executors
from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text, check_replaceable, replaced_folder
from ecgkeras.study.locks import study_lock
from ecgkeras.models import PAPER_ARCHITECTURES, get_architecture
from ecgkeras.study.devices import device_slots
from ecgkeras.runs.record import RECORD_FILE, RunConfig, RunRecord, checked_parts, find_runs, is_complete, load_dataset, \
    load_run
from ecgkeras.schema import check_parameter
from ecgkeras.report.site import REPORT_DIR, REPORT_KIND, SUMMARY_DIR, write_site

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

NOTEBOOK_SOURCES = resources.files("ecgkeras") / "notebooks"  # package data: the jupytext .py sources
TRAIN_NOTEBOOK = "02_train_architecture"
AGGREGATE_NOTEBOOK = "03_aggregate_results"
STUDY_FILE = "study.json"
SUMMARY_KIND = "summary"  # kinds of folder `ecgkeras.files.replaced_folder` replaces
PUBLISHED_KIND = "published-summary"
PUBLISHED_SUFFIXES = {".md", ".csv", ".tex", ".png", ".pdf"}  # what a published summary holds
STUDY_FORMAT = 2  # 2: the configurations in the folder, each with its runs
RUNNER_OWNED = {"architecture": "--architectures", "seed": "--seeds", "data_dir": "--data-dir"}


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
    summary_dir: Path | None = None


@dataclass
class Execution:
    """How a study executes its runs: where, on which devices, and which share of the grid."""

    executor: str = "local"  # local or slurm
    gpus: list[str] | None = None  # None: detect; []: CPU only
    runs_per_gpu: int = 1
    shard: tuple[int, int] | None = None  # (I, N): only every N-th run of the grid, from the I-th
    slurm: executors.SlurmOptions = field(default_factory=executors.SlurmOptions)
    wait: bool = True  # slurm: wait for the array, then aggregate


def notebook_source(name: str) -> Traversable:
    """The jupytext source of notebook `name` (e.g. '02_train_architecture'), shipped in the package."""
    source = NOTEBOOK_SOURCES / f"{name}.py"
    if not source.is_file():
        raise EcgkerasError(f"notebook {name} is missing from the installed package ({source}): "
                            f"reinstall ecgkeras")
    return source


def to_ipynb(name: str, out_dir: Path) -> Path:
    """Convert the jupytext source of notebook `name` into `out_dir/<name>.ipynb`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    notebook = jupytext.reads(notebook_source(name).read_text(encoding="utf-8"), fmt="py:percent")
    atomic_write_text(target, jupytext.writes(notebook, fmt="ipynb"))
    return target


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The notebook's `parameters` cell as {name: default value}."""
    return {name: ast.literal_eval(spec["default"])
            for name, spec in papermill.inspect_notebook(str(notebook)).items()}


def _literal(value: str) -> Any:
    """Parse a command-line value as JSON (numbers, lists, null, true/false), else keep the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_parameters(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs to a dict, values parsed as JSON where possible (checked by the schema later);
    a name given twice is refused, never silently the last."""
    parameters: dict[str, Any] = {}
    for name, value in pairs:
        if name in parameters:
            raise EcgkerasError(f"-p {name} is given twice ({parameters[name]!r} and {_literal(value)!r}): "
                                "give each parameter once")
        parameters[name] = _literal(value)
    return parameters


def plan_runs(data_dir: str | Path, study_dir: Path, architectures: Iterable[str], seeds: Iterable[int],
              parameters: dict[str, Any]) -> dict[Path, RunConfig]:
    """The configuration of every (architecture, seed) run folder, each checked by the run schema."""
    if owned := sorted(set(parameters) & set(RUNNER_OWNED)):
        raise EcgkerasError(f"parameter(s) {owned} are set by the study itself: use "
                            + ", ".join(RUNNER_OWNED[name] for name in owned))
    shared = {**parameters, "data_dir": str(Path(data_dir).resolve())}
    RunConfig.from_parameters(**shared)  # the shared parameters' errors first, before per-run ones
    if negative := [seed for seed in seeds if seed < 0]:
        raise EcgkerasError(f"--seeds {' '.join(map(str, negative))}: give seeds >= 0")
    return {run_dir: RunConfig.from_parameters(**shared, architecture=run_dir.parent.name,
                                               seed=int(run_dir.name.removeprefix("seed-")))
            for run_dir in executors.grid(study_dir, architectures, seeds)}


@dataclass
class Plan:
    """What one study command asks for: the configuration of every run of its grid, and its share."""

    configs: dict[Path, RunConfig]  # the whole grid, each run once
    runs: list[Path]  # the runs this command executes: the grid, or its --shard


def plan_study(data_dir: str | Path | None, study_dir: Path, architectures: Iterable[str], seeds: Iterable[int],
               parameters: dict[str, Any], shard: tuple[int, int] | None = None) -> Plan:
    """The one planner of `ecgkeras study`, its `--shard` and its `--list-runs`, checking all that can
    be checked without writing: the study folder, every parameter and, given `data_dir`, the data
    and each run's model against it (None: the data is not checked, as `--list-runs` without it)."""
    _check_study_folder(study_dir)
    architectures = [get_architecture(name).name for name in architectures]
    seeds = list(seeds)
    configs = plan_runs(data_dir if data_dir is not None else ".", study_dir, architectures, seeds, parameters)
    if data_dir is not None:
        data = load_dataset(next(iter(configs.values())))  # builds the signal cache once, before runs read it
        for config in configs.values():
            checked_parts(config, data)
    runs = list(configs)
    return Plan(configs, executors.shard(runs, *shard) if shard else runs)


def _check_study_folder(study_dir: Path) -> None:
    """Refuse a study folder that is a file, a run folder, or inside another study's folder."""
    if study_dir.exists() and not study_dir.is_dir():
        raise EcgkerasError(f"--out {study_dir} is a file: give a folder for the study")
    for folder in (study_dir, *study_dir.parents):
        if (folder / RECORD_FILE).is_file():
            raise EcgkerasError(f"--out {study_dir} is inside the run folder {folder}: choose a folder outside it")
        if folder != study_dir and (folder / STUDY_FILE).is_file():
            raise EcgkerasError(f"--out {study_dir} is inside the study folder {folder}: choose a folder outside it")


def _complete_runs(run_dirs: Iterable[Path]) -> dict[Path, RunRecord]:
    """The readable complete runs among `run_dirs`; an unreadable record is redone, with a warning."""
    complete = {}
    for run_dir in run_dirs:
        if is_complete(run_dir):
            try:
                complete[run_dir] = load_run(run_dir)
            except EcgkerasError as exc:
                log.warning("%s; training it again", exc)
    return complete


def _registered_runs(study_dir: Path) -> dict[Path, dict[str, Any]]:
    """Run folder -> shared parameters of the configuration study.json registers it under (complete
    or only planned); a damaged study file is ignored with a warning (rewritten from the runs)."""
    path = study_dir / STUDY_FILE
    if not path.is_file():
        return {}
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
        registered = {study_dir / run: group["parameters"] for group in described["configurations"]
                      for run in group["runs"]}
        for parameters in registered.values():
            RunConfig.from_parameters(**parameters)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, EcgkerasError) as exc:
        log.warning("ignoring the damaged %s (%s); rewriting it from the complete runs", path, exc)
        return {}
    return registered


def _check_configurations(study_dir: Path, planned: dict[Path, RunConfig], existing: dict[Path, RunRecord],
                          registered: dict[Path, dict[str, Any]], allow_mixed: bool) -> None:
    """Refuse runs of another configuration in the folder (complete, or registered by another study),
    unless `allow_mixed`; even then a planned run folder cannot take a second configuration."""
    requested = next(iter(planned.values())).shared_parameters(results_only=True)
    theirs = {run_dir: RunConfig.from_parameters(**parameters).shared_parameters(results_only=True)
              for run_dir, parameters in registered.items()}
    theirs.update({run_dir: run.config.shared_parameters(results_only=True) for run_dir, run in existing.items()})
    conflicts = {run_dir: other for run_dir, other in sorted(theirs.items())
                 if other != requested and (run_dir in planned or not allow_mixed)}
    if not conflicts:
        return
    run_dir, other = next(iter(conflicts.items()))
    changes = ", ".join(f"{name} {other.get(name)!r} there, {requested.get(name)!r} now"
                        for name in sorted(set(requested) | set(other)) if requested.get(name) != other.get(name))
    only_planned = [str(path.relative_to(study_dir)) for path in conflicts if path not in existing]
    planned_note = (f"; {', '.join(only_planned)} planned by another study, not complete: if none runs there "
                    f"any more, delete {study_dir / STUDY_FILE} to plan afresh" if only_planned else "")
    if allow_mixed:
        raise EcgkerasError(f"run folder(s) {', '.join(str(path.relative_to(study_dir)) for path in conflicts)} of "
                            f"{study_dir} hold another configuration ({changes}{planned_note}), and a run folder "
                            "takes one: use another --out for this configuration")
    raise EcgkerasError(f"{study_dir} holds runs of a different configuration ({run_dir.relative_to(study_dir)}: "
                        f"{changes}{planned_note}): use another --out, or --allow-mixed to add runs beside them")


def _write_study_file(study_dir: Path, planned: dict[Path, RunConfig], existing: dict[Path, RunRecord],
                      registered: dict[Path, dict[str, Any]]) -> None:
    """`study.json`: each configuration in the folder with its runs: complete runs keep their own, planned
    runs take this study's, runs registered by other studies keep theirs."""
    groups: dict[str, dict[str, Any]] = {}
    for run_dir in sorted({*planned, *existing, *registered}):
        if run_dir in existing:
            shared = existing[run_dir].config.shared_parameters()
        elif run_dir in planned:
            shared = planned[run_dir].shared_parameters()
        else:
            shared = registered[run_dir]
        group = groups.setdefault(json.dumps(shared, sort_keys=True), {"parameters": shared, "runs": []})
        group["runs"].append(str(run_dir.relative_to(study_dir)))
    atomic_write_text(study_dir / STUDY_FILE, json.dumps({"format": STUDY_FORMAT,
                                                          "configurations": list(groups.values())}, indent=2))


def register_plan(study_dir: Path, planned: dict[Path, RunConfig], allow_mixed: bool) -> None:
    """Check the planned configuration against the folder and register it in study.json and the grid
    file, under the study folder's lock, so that studies started at once see each other's plans."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EcgkerasError(f"cannot write the study folder {study_dir} ({exc.strerror}): choose a writable "
                            "--out") from None
    with study_lock(study_dir):
        executors.known_grid(study_dir)  # a damaged grid file stops the study before anything is written
        registered = _registered_runs(study_dir)
        existing = _complete_runs(run_dir for run_dir in study_dir.glob("*/seed-*") if run_dir.is_dir())
        _check_configurations(study_dir, planned, existing, registered, allow_mixed)
        _write_study_file(study_dir, planned, existing, registered)
        executors.remember_grid(study_dir, list(planned))


def run_study(data_dir: str | Path, study_dir: str | Path,
              architectures: Iterable[str] = PAPER_ARCHITECTURES, seeds: Iterable[int] = (0,),
              parameters: dict[str, Any] | None = None, jobs: int = 1, allow_mixed: bool = False,
              aggregate: bool = True, log_output: bool = False, execution: Execution | None = None
              ) -> StudyResult:
    """Run the training notebook for every (architecture, seed) missing in `study_dir`, then aggregate.

    `parameters` are run parameters (epochs, sampling_rate, ...; see `ecgkeras parameters`), shared
    by all runs. Every parameter, the data folder and the study folder's existing runs are checked
    before anything is written. Aggregation waits until every run of the grid is complete or failed
    here: not while some run executes elsewhere, is queued on SLURM, or belongs to another shard
    (`ecgkeras aggregate` then).
    """
    execution = execution or Execution()
    study_dir = Path(study_dir).resolve()
    if jobs < 1:
        raise EcgkerasError(f"--jobs {jobs}: give at least 1")
    slots = _slots(execution, jobs) if execution.executor == "local" else []  # checks --gpus, --runs-per-gpu
    if execution.executor == "slurm":
        executors.check_slurm()
    plan = plan_study(data_dir, study_dir, architectures, seeds, parameters or {}, execution.shard)
    if aggregate and not execution.shard:  # before training: aggregation replaces these folders at the end
        check_replaceable(study_dir / SUMMARY_DIR, SUMMARY_KIND)
        check_replaceable(study_dir / REPORT_DIR, REPORT_KIND)
    register_plan(study_dir, plan.configs, allow_mixed)
    first = next(iter(plan.configs.values()))
    with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
        result = _run_all(to_ipynb(TRAIN_NOTEBOOK, Path(tmp)), study_dir, plan.runs, first.shared_parameters(),
                          jobs, slots, log_output, execution)
    if (aggregate and not execution.shard and (result.completed or result.skipped)
            and not result.locked and not result.submitted):
        result.summary_dir = aggregate_study(study_dir, bootstrap_resamples=first.bootstrap_resamples,
                                             log_output=log_output)
    return result


def _run_all(train_notebook: Path, study_dir: Path, runs: list[Path], shared: dict[str, Any], jobs: int,
             slots: list[dict[str, str]], log_output: bool, execution: Execution) -> StudyResult:
    """Execute the incomplete runs of `runs` with the chosen executor; complete ones are skipped."""
    result = StudyResult(study_dir)
    pending = []
    for run_dir in runs:
        (result.skipped if is_complete(run_dir) else pending).append(run_dir)
    if result.skipped:
        log.warning("skipping %d complete run(s) already in %s", len(result.skipped), study_dir)
    if not pending:
        return result
    if execution.executor == "slurm":
        return _run_slurm(train_notebook, study_dir, pending, shared, jobs, execution, result)
    with tqdm(total=len(pending), desc="study runs", unit="run") as progress:
        outcomes = executors.run_local(train_notebook, pending, shared, slots, log_output,
                                       on_done=progress.update, executor=execution.executor)
    result.completed, result.failed, result.locked = outcomes.completed, outcomes.failed, outcomes.locked
    result.skipped += outcomes.skipped
    return result


def _run_slurm(train_notebook: Path, study_dir: Path, pending: list[Path], shared: dict[str, Any], jobs: int,
               execution: Execution, result: StudyResult) -> StudyResult:
    """Submit the runs not already queued from an earlier submission; wait for all unless --no-wait."""
    queued = executors.queued_runs(study_dir, pending)
    if queued:
        log.warning("%d run(s) already queued or running on SLURM from an earlier submission", len(queued))
    submit = [run_dir for run_dir in pending if run_dir not in queued]
    if submit:
        result.slurm_job = executors.submit_slurm(train_notebook, study_dir, submit, shared, execution.slurm, jobs)
        log.warning("submitted %d run(s) as SLURM job array %s; logs in %s", len(submit), result.slurm_job,
                    study_dir / executors.SLURM_DIR)
    if not execution.wait:
        result.submitted, result.locked = submit, queued
        return result
    with tqdm(total=len(pending), desc="study runs (SLURM)", unit="run") as progress:
        executors.wait_slurm(study_dir, pending, on_done=progress.update)
    _collect_slurm(study_dir, pending, result)
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
    status = {run_id: (state, detail) for run_id, state, detail in executors.run_status(study_dir)}
    for run_dir in runs:
        state, detail = status[executors.run_id(study_dir, run_dir)]
        if state == "complete":
            result.completed.append(run_dir)
        elif state == "running":
            result.locked[run_dir] = detail
        else:
            result.failed[run_dir] = detail or "the job ended without a complete run record"


def aggregate_study(study_dir: str | Path, summary_dir: str | Path | None = None,
                    bootstrap_resamples: int = 1000, log_output: bool = False) -> Path:
    """Execute the aggregation notebook on `study_dir`, then write its HTML report; returns the summary folder.

    The summary is written into a staging folder that replaces `summary_dir` (default
    `<study_dir>/summary`) only once the notebook succeeded, so a failed or interrupted
    aggregation keeps the previous summary and report.
    """
    study_dir = Path(study_dir).resolve()
    check_parameter(RunConfig, "bootstrap_resamples", bootstrap_resamples)
    if not find_runs(study_dir):
        raise EcgkerasError(f"no complete run in {study_dir}: run `ecgkeras study` first")
    summary_dir = Path(summary_dir).resolve() if summary_dir else study_dir / SUMMARY_DIR
    check_replaceable(study_dir / REPORT_DIR, REPORT_KIND)  # written next, from the new summary
    with replaced_folder(summary_dir, SUMMARY_KIND, "--summary-dir") as staging:
        executed = staging / f"{AGGREGATE_NOTEBOOK}.ipynb"
        try:
            with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
                executors.execute_notebook(
                    to_ipynb(AGGREGATE_NOTEBOOK, Path(tmp)), executed,
                    {"study_dir": str(study_dir), "summary_dir": str(staging), "bootstrap_resamples": bootstrap_resamples},
                    log_output=log_output)
        except papermill.PapermillExecutionError as exc:
            cause = exc.evalue if exc.ename == EcgkerasError.__name__ else f"{exc.ename}: {exc.evalue}"
            raise EcgkerasError(f"aggregation failed ({cause}); the previous summary and report are kept") from None
        except Exception as exc:  # the kernel died or could not start
            raise EcgkerasError(f"aggregation failed ({type(exc).__name__}: {exc}); the previous summary and "
                                "report are kept") from None
        staged, final = (json.dumps(str(path))[1:-1] for path in (staging, summary_dir))
        atomic_write_text(executed, executed.read_text(encoding="utf-8").replace(staged, final))  # where it ends up
    write_site(study_dir, summary_dir=summary_dir)  # the HTML report, <study_dir>/report/index.html
    return summary_dir


def publish_summary(summary_dir: Path, target: Path) -> Path:
    """Copy a summary's tables and figures (not notebooks) to `target`, e.g. results/demo-synthetic.

    `target` is replaced whole, and only when missing, empty or published by ecgkeras before.
    """
    target = Path(target).resolve()
    with replaced_folder(target, PUBLISHED_KIND, "--publish") as staging:
        for path in summary_dir.iterdir():
            if path.suffix in PUBLISHED_SUFFIXES:
                shutil.copy2(path, staging / path.name)
    return target
