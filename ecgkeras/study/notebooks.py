"""The package's notebooks: their jupytext sources, `.ipynb` conversion, and the one papermill call.

Every notebook execution goes through `execute_notebook`: its kernel gets the run's environment
(device slot, executor), is quiet unless --verbose, and is registered in KERNELS while it lives so
Ctrl-C can interrupt and stop it.
"""

from __future__ import annotations

import ast
import logging
import os
import signal
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jupytext
import papermill
from jupyter_client.manager import AsyncKernelManager

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.quiet import is_quiet, kernel_arguments
from ecgkeras.runs.config import RunConfig

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


log = logging.getLogger(__name__)

NOTEBOOK_SOURCES = resources.files("ecgkeras") / "notebooks"  # package data: the jupytext .py sources


TRAIN_NOTEBOOK = "02_train_architecture"
# Kernels started at the same moment on one host can race for the free ports jupyter_client picked and
# die before their first reply (nteract/papermill#239): such a start is retried, as no cell ran.
KERNEL_START_ATTEMPTS = 3
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond")


AGGREGATE_NOTEBOOK = "03_aggregate_results"


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


def copy_notebooks(folder: Path, fmt: str = "ipynb", force: bool = False) -> list[Path]:
    """Write every notebook into `folder` as `.ipynb` (or `fmt="py"`: its jupytext source); notebooks already
    there are refused unless `force`, so a student's edits are not lost."""
    names = sorted(source.name.removesuffix(".py") for source in NOTEBOOK_SOURCES.iterdir()
                   if source.name.endswith(".py"))
    targets = {name: folder / f"{name}.{fmt}" for name in names}
    if (existing := [target.name for target in targets.values() if target.exists()]) and not force:
        raise EcgkerasError(f"{folder} already holds {', '.join(existing)}: choose another folder, or add "
                            f"--force to overwrite them (edits made to them would be lost)")
    for name, target in targets.items():
        if fmt == "ipynb":
            to_ipynb(name, folder)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, notebook_source(name).read_text(encoding="utf-8"))
    return list(targets.values())


def train_parameters(config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The training notebook's parameters for one run: its whole planned configuration and its folder."""
    return {"parameters": config.parameters(), "output_dir": str(run_dir)}


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The notebook's `parameters` cell as {name: default value}."""
    return {name: ast.literal_eval(spec["default"])
            for name, spec in papermill.inspect_notebook(str(notebook)).items()}


INTERRUPT_GRACE_S = 2.0  # after an interrupt, a kernel that has not stopped is killed
KILL_WAIT_S = 10.0  # then its exit is awaited this long (a loaded machine can take seconds)


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
        """SIGINT every kernel's process group, SIGKILL those still alive after a grace period, and reap
        them: a killed kernel stays a zombie (its /proc entry too) until this process waits for it."""
        with self._lock:
            kernels = [process for km in self._managers if (process := _kernel_process(km))]
        for sig, wait in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, KILL_WAIT_S)):
            for process in kernels:
                try:
                    os.killpg(process.pid, sig)  # a kernel leads its own session and process group
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while kernels and time.monotonic() < deadline:
                kernels = [process for process in kernels if process.poll() is None]  # poll reaps
                time.sleep(0.1)


def _kernel_process(km: AsyncKernelManager) -> subprocess.Popen | None:
    return getattr(km.provisioner, "process", None) if km.provisioner else None


KERNELS = _Kernels()


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], env: dict[str, str] | None = None,
                     log_output: bool = False) -> None:
    """papermill executes `notebook` into `output` in a kernel with `env` added, which Ctrl-C stops."""
    manager_class = _KernelManager.for_run(env or {})
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                                           progress_bar=False, log_output=log_output, cwd=str(Path.cwd()),
                                           kernel_manager_class=manager_class, extra_arguments=kernel_arguments())
                return
            except RuntimeError as exc:  # no cell ran when the kernel did not start: start another
                if not str(exc).startswith(KERNEL_START_FAILURES) or attempt == KERNEL_START_ATTEMPTS:
                    raise
                log.warning("the kernel for %s did not start (%s): starting another", output, exc)
    except KeyboardInterrupt:  # Ctrl-C in this (main) thread: the kernel must not outlive the command
        KERNELS.stop_all()
        raise
    finally:
        KERNELS.discard(manager_class)
