"""The SLURM executor: a study's pending runs as one job array (submitit), requeued on preemption,
followed through squeue and cancelled on Ctrl-C."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.runs.config import RunConfig
from ecgkeras.study.layout import SLURM_DIR, SLURM_JOBS_FILE, read_bookkeeping, run_id
from ecgkeras.study.local import RunFailed, StudyInterrupted, execute_run
from ecgkeras.study.locks import RunLocked


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


def parse_sbatch(options: list[str]) -> dict[str, str | None]:
    """`--sbatch NAME=VALUE` options (any other sbatch option) as {name: value}; NAME alone is a flag."""
    extra: dict[str, str | None] = {}
    for option in options:
        name, _, value = option.lstrip("-").partition("=")
        if not name:
            raise EcgkerasError(f"--sbatch {option!r}: give an sbatch option as NAME=VALUE, e.g. qos=high")
        extra[name] = value or None
    return extra


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise EcgkerasError("--executor slurm needs submitit: pip install 'ecgkeras[slurm]' "
                            "(or pip install submitit)") from None
    return submitit


def check_slurm():
    """submitit, once it and `sbatch` are found; a one-line error otherwise (checked before a study writes)."""
    submitit = import_submitit()
    if shutil.which("sbatch") is None:
        raise EcgkerasError("--executor slurm: sbatch not found on PATH; run on a SLURM login node")
    return submitit


class SlurmRun:
    """The callable of one array task: execute one run folder; requeued on preemption/timeout."""

    def __init__(self, notebook: Path, retries: int, attempt: int = 0) -> None:
        self.notebook, self.retries, self.attempt = notebook, retries, attempt

    def __call__(self, run_dir: Path, config: RunConfig) -> str:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        try:
            # SLURM already restricts CUDA_VISIBLE_DEVICES to the task's GPUs (--gpus-per-run)
            ran = execute_run(self.notebook, run_dir, config,
                              {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}, executor="slurm", log_output=True)
        except RunLocked as exc:
            return f"skipped: {exc}"
        except RunFailed as exc:  # reported, not retried: a failed notebook fails the same way again
            raise RuntimeError(f"run {run_dir} failed: {exc}") from None
        return "completed" if ran else "skipped: already complete"

    def checkpoint(self, run_dir: Path, config: RunConfig) -> Any:
        """Called by submitit on preemption or timeout: requeue from scratch, up to `retries` times."""
        if self.attempt >= self.retries:
            return None
        return import_submitit().helpers.DelayedSubmission(
            SlurmRun(self.notebook, self.retries, self.attempt + 1), run_dir, config)


def slurm_executor(folder: Path, job_name: str, options: SlurmOptions, jobs: int):
    """A submitit executor for job arrays of at most `jobs` tasks at a time, logging under `folder`/<job id>."""
    submitit = check_slurm()
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=options.retries)
    parameters: dict[str, Any] = {"job_name": job_name, "time": options.time_min,
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
    return executor


def submit_array(executor, function: Callable, *arguments: list) -> list:
    """`executor.map_array(function, *arguments)`: one array task per element; sbatch's refusal as one line."""
    try:
        return executor.map_array(function, *arguments)
    except Exception as exc:  # sbatch refused (bad partition, account, limits): say what it said
        raise EcgkerasError(f"SLURM refused the job array: {' '.join(str(exc).split())[:500]}") from None


def submit_slurm(notebook: Path, study_dir: Path, runs: dict[Path, RunConfig], options: SlurmOptions,
                 jobs: int) -> str:
    """Submit `runs` (run folder -> its planned configuration) as one job array (at most `jobs` at a time); returns the array's job id."""
    folder = study_dir / SLURM_DIR
    executor = slurm_executor(folder, f"ecgkeras-{study_dir.name}", options, jobs)
    kept_notebook = folder / notebook.name  # the tasks read it after the submitter's temporary copy is gone
    shutil.copyfile(notebook, kept_notebook)
    submitted = submit_array(executor, SlurmRun(kept_notebook, options.retries), list(runs), list(runs.values()))
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
    return read_bookkeeping(study_dir / SLURM_DIR / SLURM_JOBS_FILE, lambda jobs: isinstance(jobs, dict) and all(
        isinstance(job, dict) and isinstance(job.get("job_id"), str) and isinstance(job.get("log"), str)
        for job in jobs.values()), {}, "rerun the study command to resubmit the runs that are not complete")


def queued_runs(study_dir: Path, runs: list[Path]) -> dict[Path, str]:
    """Those of `runs` whose SLURM task (from an earlier submission) still waits in the queue."""
    jobs = {run_dir: job["job_id"] for run_dir in runs if (job := slurm_jobs(study_dir).get(run_id(study_dir, run_dir)))}
    states = queued_jobs(jobs.values())
    return {run_dir: f"SLURM job {job_id} ({states[job_id].lower()})" for run_dir, job_id in jobs.items()
            if job_id in states}


def wait_jobs(job_ids: list[str], on_done: Callable[[], None] = lambda: None, poll_s: float = 2.0) -> None:
    """Wait until none of the SLURM `job_ids` is queued or running (`on_done` once per job that left the
    queue); Ctrl-C cancels them."""
    finished: set[str] = set()
    try:
        while True:
            in_queue = queued_jobs(job_ids)
            for job_id in job_ids:
                if job_id not in in_queue and job_id not in finished:
                    finished.add(job_id)
                    on_done()
            if not in_queue:
                return
            time.sleep(poll_s)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        subprocess.run(["scancel", *sorted({job_id.split("_")[0] for job_id in job_ids})], capture_output=True)
        raise StudyInterrupted() from None


def wait_slurm(study_dir: Path, runs: list[Path], on_done: Callable[[], None] = lambda: None,
               poll_s: float = 2.0) -> None:
    """Wait until none of `runs`' SLURM tasks is queued or running; Ctrl-C cancels them."""
    jobs = slurm_jobs(study_dir)
    wait_jobs([jobs[run_id(study_dir, run_dir)]["job_id"] for run_dir in runs], on_done, poll_s)
