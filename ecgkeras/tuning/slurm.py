"""`ecgkeras tune --executor slurm`: the tuning workers as one SLURM job array (submitit), all sharing the
tuning's storage; a task preempted or out of time is requeued and its trial requeued by the next claim.

The array's job ids are kept in `tuning/slurm/jobs.json`, so a second `tune` while the array is still
queued or running waits for it instead of submitting more workers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ecgkeras.files import atomic_write_text
from ecgkeras.runs.provenance import EXECUTOR_VARIABLE
from ecgkeras.study.layout import SLURM_DIR, SLURM_JOBS_FILE, read_bookkeeping
from ecgkeras.study.slurm import SlurmOptions, import_submitit, queued_jobs, slurm_executor, submit_array, wait_jobs
from ecgkeras.tuning.layout import tuning_dir

log = logging.getLogger(__name__)


class SlurmWorker:
    """The callable of one array task: a tuning worker (`work`); requeued on preemption or timeout."""

    def __init__(self, retries: int, attempt: int = 0) -> None:
        self.retries, self.attempt = retries, attempt

    def __call__(self, study_dir: Path, architectures: list[str], shard: tuple[int, int] | None) -> str:
        from ecgkeras.tuning.worker import work

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        # SLURM already restricts CUDA_VISIBLE_DEVICES to the task's GPUs (--gpus-per-run)
        work(study_dir, architectures, {"TF_FORCE_GPU_ALLOW_GROWTH": "true", EXECUTOR_VARIABLE: "slurm"}, shard)
        return "budget spent"

    def checkpoint(self, study_dir: Path, architectures: list[str], shard: tuple[int, int] | None) -> Any:
        """Called by submitit on preemption or timeout: the worker starts again, up to `retries` times."""
        if self.attempt >= self.retries:
            return None
        return import_submitit().helpers.DelayedSubmission(SlurmWorker(self.retries, self.attempt + 1), study_dir,
                                                     architectures, shard)


def _jobs_file(study_dir: Path) -> Path:
    return tuning_dir(study_dir) / SLURM_DIR / SLURM_JOBS_FILE


def known_jobs(study_dir: Path) -> list[str]:
    """The job ids of the tuning's latest SLURM array."""
    return read_bookkeeping(_jobs_file(study_dir), lambda ids: isinstance(ids, list) and all(isinstance(i, str) for i in ids),
                      [], "rerun the tune command to submit its workers again")


def run_slurm_workers(study_dir: Path, architectures: list[str], shard: tuple[int, int] | None,
                      options: SlurmOptions, jobs: int, wait: bool) -> tuple[str, bool]:
    """Submit `jobs` workers as one array, or follow the array still queued from an earlier call; wait for
    it unless not `wait`. Returns (the array's job id, whether it was submitted now)."""
    earlier = known_jobs(study_dir)
    submitted = not queued_jobs(earlier)
    if submitted:
        folder = tuning_dir(study_dir) / SLURM_DIR
        executor = slurm_executor(folder, f"ecgkeras-tune-{study_dir.name}", options, jobs)
        tasks = submit_array(executor, SlurmWorker(options.retries), [study_dir] * jobs, [architectures] * jobs,
                             [shard] * jobs)
        earlier = [task.job_id for task in tasks]
        atomic_write_text(_jobs_file(study_dir), json.dumps(earlier, indent=1))
    if wait:
        wait_jobs(earlier)
    return earlier[0].split("_")[0], submitted
