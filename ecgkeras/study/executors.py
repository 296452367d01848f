"""Executors of a study's runs: each executes the training notebook for one run folder.

- `execute_run`: one run, in this process: takes the run's lock, skips it if complete, then
  papermill executes the notebook in a kernel whose environment carries the run's device slot.
- `run_local`: a pool of worker threads on this machine, one device slot each; Ctrl-C interrupts
  and shuts down the running kernels within seconds (their runs stay incomplete).
- `submit_slurm` / `wait_slurm`: one SLURM job array (submitit) whose tasks call `execute_run`.
The grid, shards and each run's status live here too, so every executor sees the same runs.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import papermill
from jupyter_client.manager import AsyncKernelManager

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.study.locks import RunLocked, lock_owner, run_lock
from ecgkeras.study.devices import EXECUTOR_VARIABLE
from ecgkeras.quiet import is_quiet, kernel_arguments
from ecgkeras.runs.record import is_complete

log = logging.getLogger(__name__)

GRID_FILE = "grid.json"  # every run id a study command asked for, so `status` can name missing ones
SLURM_DIR = "slurm"  # submitit's job files and logs, inside the study folder
SLURM_JOBS_FILE = "jobs.json"  # run id -> SLURM job id and log, written at submission
INTERRUPT_GRACE_S = 2.0  # after an interrupt, a kernel that has not stopped is killed


@dataclass
class Outcomes:
    """What executing a set of runs did, by run folder."""

    completed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # complete before this execution
    locked: dict[Path, str] = field(default_factory=dict)  # run folder -> the owner running it
    failed: dict[Path, str] = field(default_factory=dict)  # run folder -> reason and where to look


class RunFailed(Exception):
    """The run's notebook raised, or its kernel died, or it ended without a complete record."""


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the study once its running kernels were stopped (runs left incomplete)."""


# -- the grid ------------------------------------------------------------------------------

def run_id(study_dir: Path, run_dir: Path) -> str:
    """A run's id inside its study: '<architecture>/seed-<k>'."""
    return run_dir.relative_to(study_dir).as_posix()


def grid(study_dir: Path, architectures: Iterable[str], seeds: Iterable[int]) -> list[Path]:
    """The run folders of architectures x seeds, in a fixed order (architecture-major), each once."""
    seeds = list(dict.fromkeys(seeds))
    return [study_dir / architecture / f"seed-{seed}" for architecture in dict.fromkeys(architectures)
            for seed in seeds]


def parse_shard(value: str) -> tuple[int, int]:
    """'I/N' (1 <= I <= N) to (I, N), or a one-line error."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise EcgkerasError(f"--shard {value!r}: give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return index, count


def shard(runs: list[Path], index: int, count: int) -> list[Path]:
    """Shard `index` of `count` (1-based): every count-th run of the full grid, so concurrent shards
    never overlap and their union is the grid, whatever has completed meanwhile."""
    return runs[index - 1::count]


def _read_json(path: Path, valid: Callable[[Any], bool], default: Any, regenerated_by: str) -> Any:
    """A study's bookkeeping file, `default` when absent, or a one-line error when damaged."""
    if not path.is_file():
        return default
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        readable = valid(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        readable = False
    if not readable:
        raise EcgkerasError(f"{path} is damaged (not what ecgkeras wrote there): delete it, then {regenerated_by}")
    return content


def known_grid(study_dir: Path) -> list[str]:
    """The run ids in the study's grid file (the union of what its commands asked for)."""
    return _read_json(study_dir / GRID_FILE, lambda ids: isinstance(ids, list) and all(
        isinstance(rid, str) for rid in ids), [], "rerun the study command (runs already complete are kept)")


def remember_grid(study_dir: Path, runs: list[Path]) -> None:
    """Add `runs` to the study's grid file."""
    known = known_grid(study_dir)
    ids = known + [r for r in (run_id(study_dir, run) for run in runs) if r not in known]
    if ids != known:
        atomic_write_text(study_dir / GRID_FILE, json.dumps(ids, indent=1))


# -- one run ---------------------------------------------------------------------------------

class _KernelManager(AsyncKernelManager):
    """A kernel started with extra environment variables (the run's device slot), registered in
    KERNELS while it lives; `for_run` makes one class per run for nbclient to instantiate (and own)."""

    run_env: dict[str, str] = {}

    @classmethod
    def for_run(cls, env: dict[str, str]) -> type["_KernelManager"]:
        return type("RunKernelManager", (cls,), {"run_env": dict(env)})

    async def start_kernel(self, **kwargs: Any) -> None:
        kwargs["env"] = {**os.environ, **kwargs.get("env", {}), **self.run_env}
        if is_quiet():  # the kernel's own chatter (e.g. asyncio's at shutdown); cell errors stay in the notebook
            kwargs.setdefault("stderr", subprocess.DEVNULL)
        KERNELS.add(self)
        await super().start_kernel(**kwargs)


class _Kernels:
    """The kernels this process is running, so Ctrl-C can interrupt and stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._managers: set[_KernelManager] = set()

    def add(self, km: _KernelManager) -> None:
        with self._lock:
            self._managers.add(km)

    def discard(self, manager_class: type[_KernelManager]) -> None:
        with self._lock:
            self._managers = {km for km in self._managers if not isinstance(km, manager_class)}

    def stop_all(self) -> None:
        """SIGINT every kernel's process group, then SIGKILL those still alive after a grace period."""
        with self._lock:
            groups = [pgid for km in self._managers if (pgid := _process_group(km))]
        for sig, wait in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, 0)):
            for pgid in groups:
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while groups and time.monotonic() < deadline:
                groups = [pgid for pgid in groups if _group_alive(pgid)]
                time.sleep(0.1)


def _process_group(km: AsyncKernelManager) -> int | None:
    provisioner = km.provisioner
    return getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None) if provisioner else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


KERNELS = _Kernels()


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], env: dict[str, str] | None = None,
                     log_output: bool = False) -> None:
    """papermill executes `notebook` into `output` in a kernel with `env` added, which Ctrl-C stops."""
    manager_class = _KernelManager.for_run(env or {})
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                                   progress_bar=False, log_output=log_output, cwd=str(Path.cwd()),
                                   kernel_manager_class=manager_class, extra_arguments=kernel_arguments())
    except KeyboardInterrupt:  # Ctrl-C in this (main) thread: the kernel must not outlive the command
        KERNELS.stop_all()
        raise
    finally:
        KERNELS.discard(manager_class)


def execute_run(notebook: Path, run_dir: Path, parameters: dict[str, Any], env: dict[str, str] | None = None,
                executor: str = "local", log_output: bool = False) -> bool:
    """Execute the training notebook for `run_dir` under its lock; False if it was already complete.

    Raises RunLocked when another process is running it, RunFailed when it did not complete.
    """
    with run_lock(run_dir):
        if is_complete(run_dir):  # completed by someone else since the caller looked
            return False
        run_dir.mkdir(parents=True, exist_ok=True)
        output = run_dir / notebook.name  # the executed notebook, beside the record
        _keep_earlier_attempt(output)
        try:
            execute_notebook(notebook, output, parameters, {**(env or {}), EXECUTOR_VARIABLE: executor},
                             log_output)
        except papermill.PapermillExecutionError as exc:  # a cell raised
            raise RunFailed(f"{exc.ename}: {exc.evalue} (see {output})") from None
        except Exception as exc:  # the kernel died or could not start
            raise RunFailed(f"{type(exc).__name__}: {exc} (see {output})") from None
        if not is_complete(run_dir):
            raise RunFailed(f"notebook finished without a complete run record (see {output})")
    return True


def _keep_earlier_attempt(output: Path) -> None:
    """Rename an executed notebook of an earlier attempt to `<name>.attempt-<k>.ipynb` (k = 1, 2, ...),
    so a rerun never overwrites the evidence of why the earlier one failed."""
    if not output.exists():
        return
    attempt = 1
    while (earlier := output.with_name(f"{output.stem}.attempt-{attempt}{output.suffix}")).exists():
        attempt += 1
    os.replace(output, earlier)


def run_parameters(shared: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The notebook parameters of one run: the study's shared ones plus architecture, seed, output."""
    return {**shared, "architecture": run_dir.parent.name, "seed": int(run_dir.name.removeprefix("seed-")),
            "output_dir": str(run_dir)}


# -- local executor --------------------------------------------------------------------------

def run_local(notebook: Path, runs: list[Path], shared: dict[str, Any], slots: list[dict[str, str]],
              log_output: bool = False, on_done: Callable[[], None] = lambda: None,
              executor: str = "local") -> Outcomes:
    """Execute `runs` on this machine, one worker thread per device slot in `slots`.

    Ctrl-C: no further run starts, running kernels are interrupted then killed, and
    StudyInterrupted is raised once their threads have finished (seconds).
    """
    outcomes = Outcomes()
    work: queue.Queue[Path] = queue.Queue()
    for run_dir in runs:
        work.put(run_dir)
    stop = threading.Event()

    def worker(env: dict[str, str]) -> None:
        while not stop.is_set():
            try:
                run_dir = work.get_nowait()
            except queue.Empty:
                return
            try:
                ran = execute_run(notebook, run_dir, run_parameters(shared, run_dir), env, executor, log_output)
                (outcomes.completed if ran else outcomes.skipped).append(run_dir)
            except RunLocked as exc:
                outcomes.locked[run_dir] = exc.owner
                log.warning("skipping %s: %s", run_dir, exc)
            except RunFailed as exc:
                outcomes.failed[run_dir] = "interrupted" if stop.is_set() else str(exc)
            on_done()

    threads = [threading.Thread(target=worker, args=(env,), daemon=True, name=f"run-slot-{i}")
               for i, env in enumerate(slots[:max(1, len(runs))])]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        try:
            stop.set()
            KERNELS.stop_all()
            for thread in threads:
                thread.join(INTERRUPT_GRACE_S)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise StudyInterrupted() from None
    return outcomes


# -- SLURM executor --------------------------------------------------------------------------

@dataclass
class SlurmOptions:
    """What each array task asks SLURM for; `extra` passes any other sbatch option through."""

    partition: str | None = None
    account: str | None = None
    time_min: int = 240
    mem_gb: float | None = None
    cpus_per_run: int = 2
    gpus_per_run: int = 0
    retries: int = 2  # requeues after preemption or the time limit
    extra: dict[str, str] = field(default_factory=dict)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise EcgkerasError("--executor slurm needs submitit: pip install 'ecgkeras[slurm]' "
                            "(or pip install submitit)") from None
    return submitit


def check_slurm():
    """submitit, once it and `sbatch` are found; a one-line error otherwise (checked before a study writes)."""
    submitit = _submitit()
    if shutil.which("sbatch") is None:
        raise EcgkerasError("--executor slurm: sbatch not found on PATH; run on a SLURM login node")
    return submitit


class SlurmRun:
    """The callable of one array task: execute one run folder; requeued on preemption/timeout."""

    def __init__(self, notebook: Path, shared: dict[str, Any], retries: int, attempt: int = 0) -> None:
        self.notebook, self.shared, self.retries, self.attempt = notebook, shared, retries, attempt

    def __call__(self, run_dir: Path) -> str:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        try:
            # SLURM already restricts CUDA_VISIBLE_DEVICES to the task's GPUs (--gpus-per-run)
            ran = execute_run(self.notebook, run_dir, run_parameters(self.shared, run_dir),
                              {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}, executor="slurm", log_output=True)
        except RunLocked as exc:
            return f"skipped: {exc}"
        except RunFailed as exc:  # reported, not retried: a failed notebook fails the same way again
            raise RuntimeError(f"run {run_dir} failed: {exc}") from None
        return "completed" if ran else "skipped: already complete"

    def checkpoint(self, run_dir: Path) -> Any:
        """Called by submitit on preemption or timeout: requeue from scratch, up to `retries` times."""
        if self.attempt >= self.retries:
            return None
        return _submitit().helpers.DelayedSubmission(
            SlurmRun(self.notebook, self.shared, self.retries, self.attempt + 1), run_dir)


def submit_slurm(notebook: Path, study_dir: Path, runs: list[Path], shared: dict[str, Any],
                 options: SlurmOptions, jobs: int) -> str:
    """Submit `runs` as one job array (at most `jobs` at a time); returns the array's job id."""
    submitit = check_slurm()
    folder = study_dir / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    kept_notebook = folder / notebook.name  # the tasks read it after the submitter's temporary copy is gone
    shutil.copyfile(notebook, kept_notebook)
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=options.retries)
    parameters: dict[str, Any] = {"job_name": f"ecgkeras-{study_dir.name}", "time": options.time_min,
                                  "cpus_per_task": options.cpus_per_run, "ntasks_per_node": 1,
                                  "array_parallelism": jobs, "additional_parameters": dict(options.extra)}
    if options.partition:
        parameters["partition"] = options.partition
    if options.account:
        parameters["account"] = options.account
    if options.mem_gb:
        parameters["mem"] = f"{int(options.mem_gb * 1024)}M"
    if options.gpus_per_run:
        parameters["gpus_per_task"] = options.gpus_per_run
    executor.update_parameters(**parameters)
    try:
        submitted = executor.map_array(SlurmRun(kept_notebook, shared, options.retries), runs)
    except Exception as exc:  # sbatch refused (bad partition, account, limits): say what it said
        raise EcgkerasError(f"SLURM refused the job array: {' '.join(str(exc).split())[:500]}") from None
    jobs_file = folder / SLURM_JOBS_FILE
    known = slurm_jobs(study_dir)
    for run_dir, job in zip(runs, submitted):
        known[run_id(study_dir, run_dir)] = {"job_id": job.job_id, "log": str(job.paths.stderr)}
    atomic_write_text(jobs_file, json.dumps(known, indent=1))
    return submitted[0].job_id.split("_")[0]


def queued_jobs(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM state (PENDING, RUNNING, ...) of those of `job_ids` still in the queue."""
    ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not ids or shutil.which("squeue") is None:
        return {}
    listing = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i %T"],
                             capture_output=True, text=True)
    return dict(line.split() for line in listing.stdout.splitlines() if len(line.split()) == 2)


def slurm_jobs(study_dir: Path) -> dict[str, dict[str, str]]:
    """Run id -> {'job_id', 'log'} of the study's SLURM submissions (latest per run)."""
    return _read_json(study_dir / SLURM_DIR / SLURM_JOBS_FILE, lambda jobs: isinstance(jobs, dict) and all(
        isinstance(job, dict) and isinstance(job.get("job_id"), str) and isinstance(job.get("log"), str)
        for job in jobs.values()), {}, "rerun the study command to resubmit the runs that are not complete")


def queued_runs(study_dir: Path, runs: list[Path]) -> dict[Path, str]:
    """Those of `runs` whose SLURM task (from an earlier submission) still waits in the queue."""
    jobs = {run_dir: job["job_id"] for run_dir in runs if (job := slurm_jobs(study_dir).get(run_id(study_dir, run_dir)))}
    states = queued_jobs(jobs.values())
    return {run_dir: f"SLURM job {job_id} ({states[job_id].lower()})" for run_dir, job_id in jobs.items()
            if job_id in states}


def wait_slurm(study_dir: Path, runs: list[Path], on_done: Callable[[], None] = lambda: None,
               poll_s: float = 2.0) -> None:
    """Wait until none of `runs`' SLURM tasks is queued or running; Ctrl-C cancels them."""
    jobs = slurm_jobs(study_dir)
    ids = [jobs[run_id(study_dir, run_dir)]["job_id"] for run_dir in runs]
    finished: set[str] = set()
    try:
        while True:
            in_queue = queued_jobs(ids)
            for job_id in ids:
                if job_id not in in_queue and job_id not in finished:
                    finished.add(job_id)
                    on_done()
            if not in_queue:
                return
            time.sleep(poll_s)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        subprocess.run(["scancel", *sorted({job_id.split("_")[0] for job_id in ids})], capture_output=True)
        raise StudyInterrupted() from None


# -- status ----------------------------------------------------------------------------------

def run_status(study_dir: Path) -> list[tuple[str, str, str]]:
    """(run id, state, detail) for each run of the study: complete, running, queued, failed or missing."""
    from ecgkeras.study.runner import TRAIN_NOTEBOOK  # here: the study module imports this one

    executed = f"{TRAIN_NOTEBOOK}.ipynb"
    ids = known_grid(study_dir)
    ids += sorted(p.parent.relative_to(study_dir).as_posix() for p in study_dir.glob(f"*/seed-*/{executed}")
                  if p.parent.relative_to(study_dir).as_posix() not in ids)
    jobs = slurm_jobs(study_dir)
    queue_states = queued_jobs(job["job_id"] for job in jobs.values())
    rows = []
    for rid in ids:
        run_dir = study_dir / rid
        job = jobs.get(rid)
        if is_complete(run_dir):
            rows.append((rid, "complete", ""))
        elif owner := lock_owner(run_dir):
            rows.append((rid, "running", owner))
        elif job and queue_states.get(job["job_id"]) in {"PENDING", "CONFIGURING", "REQUEUED", "RUNNING"}:
            rows.append((rid, "queued", f"SLURM job {job['job_id']} {queue_states[job['job_id']].lower()}"))
        elif (run_dir / executed).is_file() or job:
            where = [str(run_dir / executed)] if (run_dir / executed).is_file() else []
            where += [job["log"]] if job else []
            rows.append((rid, "failed", "see " + " and ".join(where)))
        else:
            rows.append((rid, "missing", ""))
    return rows
