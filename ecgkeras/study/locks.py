"""Run locks: a run folder is trained by one process at a time, across studies, shards and clusters.

The lock is an OS lock (`fcntl.flock`) on `<run folder>.lock` beside the run folder, so it dies
with its owner: a crashed study, a killed SLURM job or a rebooted host never leaves a run locked
forever. The file also holds its owner (host, pid, SLURM job, start time) for messages; an owner's
description found in a file nobody holds anymore is a stale lock, taken over with a warning.
The study folder has one too (`study_lock`), held while a study checks and registers its
configuration, so studies started at once into one folder never mix configurations unasked.
On a shared file system flock must reach the server (NFSv4 and Lustre/GPFS do).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ecgkeras.runs.provenance import execution_context

log = logging.getLogger(__name__)

STUDY_LOCK = ".study.lock"  # in the study folder: held while a study registers its configuration


class RunLocked(Exception):
    """Another live process holds the run's lock; `owner` describes it."""

    def __init__(self, run_dir: Path, owner: str) -> None:
        super().__init__(f"{run_dir} is being run by {owner}")
        self.run_dir, self.owner = run_dir, owner


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run folder: beside it, so replacing the folder keeps the lock."""
    return run_dir.with_name(run_dir.name + ".lock")


def describe_owner(text: str) -> str:
    """A lock file's owner as 'host H, pid P (SLURM job J), since T'."""
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return "an unknown process"
    job = f" (SLURM job {owner['slurm_job_id']})" if owner.get("slurm_job_id") else ""
    return f"host {owner.get('host')}, pid {owner.get('pid')}{job}, since {owner.get('started')}"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the lock of `run_dir` for the block, or raise RunLocked at once if a live owner has it."""
    try:
        fd = _locked(lock_path(run_dir), blocking=False)
    except BlockingIOError as exc:
        raise RunLocked(run_dir, describe_owner(exc.args[-1])) from None
    try:
        if previous := _read(fd):
            log.warning("taking over the stale lock of %s (%s is gone)", run_dir, describe_owner(previous))
        context = execution_context()
        owner = {"host": context["host"], "pid": context["pid"], "slurm_job_id": context["slurm_job_id"],
                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        yield
    finally:
        _release(lock_path(run_dir), fd)


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Hold the study folder's lock for the block, waiting for another process that holds it.

    Studies hold it only while they check and register their configuration in the study file,
    so two studies started at once into one folder see each other's plans.
    """
    path = study_dir / STUDY_LOCK
    fd = _locked(path, blocking=True)
    try:
        yield
    finally:
        _release(path, fd)


def _locked(path: Path, blocking: bool) -> int:
    """An open descriptor of `path` holding its exclusive flock; BlockingIOError(owner text) if taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = _read(fd)
            os.close(fd)
            raise BlockingIOError(owner) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)  # the previous owner removed the file after we opened it: lock the new one


def _release(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)  # while still locked: a waiter that opened it retries on the new file
    os.close(fd)


def lock_owner(run_dir: Path) -> str | None:
    """The owner of a held lock of `run_dir`, or None when no live process holds it."""
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_owner(_read(fd))
    finally:
        os.close(fd)
    return None


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()
