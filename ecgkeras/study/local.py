"""The local executor: a study's runs executed on this machine, one worker thread per device slot.

- `execute_run`: one run, in this process: takes the run's lock, skips it if complete, then
  papermill executes the notebook in a kernel whose environment carries the run's device slot.
- `run_local`: a pool of worker threads on this machine, one device slot each; Ctrl-C interrupts
  and shuts down the running kernels within seconds (their runs stay incomplete).
The SLURM executor (`ecgkeras.study.slurm`) calls `execute_run` in each task of its job array.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import papermill

from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.provenance import EXECUTOR_VARIABLE
from ecgkeras.runs.record import is_complete
from ecgkeras.study.locks import RunLocked, run_lock
from ecgkeras.study.notebooks import INTERRUPT_GRACE_S, KERNELS, execute_notebook, train_parameters

log = logging.getLogger(__name__)


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


def execute_run(notebook: Path, run_dir: Path, config: RunConfig, env: dict[str, str] | None = None,
                executor: str = "local", log_output: bool = False) -> bool:
    """Execute the training notebook for the run `config` into `run_dir` under its lock; False if it was
    already complete.

    Raises RunLocked when another process is running it, RunFailed when it did not complete.
    """
    with run_lock(run_dir):
        if is_complete(run_dir):  # completed by someone else since the caller looked
            return False
        run_dir.mkdir(parents=True, exist_ok=True)
        output = run_dir / notebook.name  # the executed notebook, beside the record
        _keep_earlier_attempt(output)
        try:
            execute_notebook(notebook, output, train_parameters(config, run_dir),
                             {**(env or {}), EXECUTOR_VARIABLE: executor}, log_output)
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


def run_local(notebook: Path, runs: dict[Path, RunConfig], slots: list[dict[str, str]],
              log_output: bool = False, on_done: Callable[[], None] = lambda: None,
              executor: str = "local") -> Outcomes:
    """Execute `runs` (run folder -> its planned configuration) on this machine, one worker thread per
    device slot in `slots`.

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
                ran = execute_run(notebook, run_dir, runs[run_dir], env, executor, log_output)
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


