"""`ecgkeras tune`: one Optuna study per architecture, each with the same budget (trials), the same
sampler seed and the same pruner, all in one storage (the tuning folder's journal file, or a database
given by URL) that any number of workers share.

The workers (`worker`) run here, in local processes, or as a SLURM job array (`slurm`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from optuna.trial import TrialState

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.models import get_architecture
from ecgkeras.study.devices import device_slots
from ecgkeras.study.plan import RUNNER_OWNED, plan_study
from ecgkeras.study.runner import Execution
from ecgkeras.study.slurm import check_slurm
from ecgkeras.tuning.analysis import plot_studies
from ecgkeras.tuning.layout import (COMPLETE, DEFAULT_STORAGE, FAILED, HISTORY_PLOT, IMPORTANCE_PLOT, PRUNED,
                                    SETTINGS_FILE, SUMMARY_FILE, TRIAL_FILE, make_tuning_dir, trial_folder, tuning_dir)
from ecgkeras.tuning.settings import (PRUNERS, TRIAL_DEFAULTS, TRIAL_SEED, TuningSettings, check_settings,
                                      load_study, open_storage, read_settings)
from ecgkeras.tuning.slurm import run_slurm_workers
from ecgkeras.tuning.space import load_space, space_to_json
from ecgkeras.tuning.worker import REQUEUED, work, worker_process

log = logging.getLogger(__name__)

_STATES = {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED, TrialState.FAIL: FAILED}


def tune(data_dir: str | Path, study_dir: str | Path, architectures: Iterable[str], trials: int,
         parameters: dict[str, Any] | None = None, space_file: Path | None = None, storage: str | None = None,
         sampler_seed: int = 0, pruner: str = "median", jobs: int = 1, execution: Execution | None = None) -> dict:
    """Tune every architecture with the same budget into `study_dir/tuning/`; returns the tuning summary.

    Everything is checked before anything is written: the options, the space file, the fixed run
    parameters, the data and each architecture's model. `jobs` workers share the storage: local processes,
    each on a device slot, or (`execution.executor` "slurm") one job array; with `execution.shard` (I, N)
    they spend only shard I's share of each budget. More workers may join with another `tune` into the folder.
    """
    study_dir = Path(study_dir).resolve()
    execution = execution or Execution()
    started = time.perf_counter()
    if trials < 1 or jobs < 1 or sampler_seed < 0:
        raise EcgkerasError(f"--trials {trials}, --jobs {jobs}, --sampler-seed {sampler_seed}: give trials and "
                            "jobs of at least 1 and a sampler seed >= 0")
    if pruner not in PRUNERS:
        raise EcgkerasError(f"--pruner {pruner}: choose one of {', '.join(PRUNERS)}")
    parameters = dict(parameters or {})
    if owned := sorted(set(parameters) & set(RUNNER_OWNED)):
        raise EcgkerasError(f"parameter(s) {owned} are set by tune itself: use "
                            + ", ".join(RUNNER_OWNED[name] for name in owned))
    architectures = list(dict.fromkeys(get_architecture(name).name for name in architectures))
    space = load_space(space_file)
    if execution.executor == "slurm":
        check_slurm()
    backend = open_storage(study_dir, storage) if storage else None  # a database is reached before the data is read
    plan = plan_study(data_dir, study_dir, architectures, [TRIAL_SEED], {**TRIAL_DEFAULTS, **parameters})
    slots = device_slots(execution.gpus, execution.runs_per_gpu) if execution.executor == "local" else [{}]
    settings = TuningSettings(next(iter(plan.configs.values())).data_dir, architectures, trials, sampler_seed, pruner,
                              space_to_json(space), parameters, storage or DEFAULT_STORAGE)
    check_settings(study_dir, settings)
    make_tuning_dir(study_dir)
    if (tuning_dir(study_dir) / SETTINGS_FILE).is_file():
        settings.architectures = list(dict.fromkeys([*read_settings(study_dir).architectures, *architectures]))
    atomic_write_text(tuning_dir(study_dir) / SETTINGS_FILE, json.dumps(asdict(settings), indent=2))
    backend = backend or open_storage(study_dir, settings.storage)
    for architecture in architectures:
        load_study(settings, backend, architecture)
    slurm = None
    if execution.executor == "slurm":
        job, submitted = run_slurm_workers(study_dir, architectures, execution.shard, execution.slurm, jobs,
                                           execution.wait)
        slurm = {"job": job, "submitted": submitted, "waited": execution.wait}
    else:
        _run_workers(study_dir, architectures, [slots[i % len(slots)] for i in range(jobs)], execution.shard)
    return {**write_summary(study_dir, time.perf_counter() - started), "slurm": slurm}


def _run_workers(study_dir: Path, architectures: list[str], slots: list[dict[str, str]],
                 shard: tuple[int, int] | None) -> None:
    """`work` once per slot: the first in this process when it needs no device pinning (TensorFlow is
    loaded here already), the others in fresh processes (spawned: TensorFlow is not fork-safe), each with
    its slot's environment; a worker that fails leaves its trial to be requeued by the next claim."""
    here = not slots[0]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker_process, args=(study_dir, architectures, env, shard),
                               name=f"tune-worker-{i}")
               for i, env in enumerate(slots[1:] if here else slots, start=int(here))]
    for worker in workers:
        worker.start()
    try:
        if here:
            work(study_dir, architectures, shard=shard)
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: they requeue their trials and stop
        for worker in workers:
            worker.join(10)
        raise
    if failed := [worker.name for worker in workers if worker.exitcode != 0]:
        log.warning("%s ended with an error; rerun the command to finish their trials", ", ".join(failed))


def _trial_file(study_dir: Path, architecture: str, number: int) -> dict[str, Any]:
    try:
        return json.loads((trial_folder(study_dir, architecture, number) / TRIAL_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_summary(study_dir: Path, command_seconds: float | None = None) -> dict:
    """The budget spent and the best trial of every architecture, from the storage; written to summary.json,
    with each architecture's optimization history and parameter importances (`analysis`)."""
    settings = read_settings(study_dir)
    storage = open_storage(study_dir, settings.storage)
    studies = {architecture: load_study(settings, storage, architecture) for architecture in settings.architectures}
    summary: dict[str, Any] = {"budget": {"trials": settings.trials, "sampler_seed": settings.sampler_seed,
                                          "pruner": settings.pruner},
                               "command_seconds": command_seconds, "architectures": {}}
    for architecture, study in studies.items():
        trials = [trial for trial in study.get_trials(deepcopy=False) if not trial.user_attrs.get(REQUEUED)]
        files = {trial.number: _trial_file(study_dir, architecture, trial.number) for trial in trials}
        counts = {name: sum(1 for trial in trials if _STATES.get(trial.state) == name) for name in _STATES.values()}
        complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
        best = max(complete, key=lambda trial: trial.value, default=None)
        pruned = [files[trial.number] for trial in trials if trial.state == TrialState.PRUNED]
        summary["architectures"][architecture] = {
            "trials": counts, "finished": sum(counts.values()) >= settings.trials,
            "epochs_run": sum(content.get("epochs_run", 0) for content in files.values()),
            "epochs_saved_by_pruning": sum(content.get("epoch_cap", 0) - content.get("epochs_run", 0)
                                           for content in pruned),
            "trial_seconds": sum((trial.datetime_complete - trial.datetime_start).total_seconds()
                                 for trial in trials if trial.datetime_complete and trial.datetime_start),
            "best": None if best is None else {
                "trial": best.number, "validation_macro_auprc": best.value, "params": best.params,
                "run_dir": str(trial_folder(study_dir, architecture, best.number))}}
    plot_studies(study_dir, studies)
    atomic_write_text(tuning_dir(study_dir) / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def tuned_configurations(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Architecture -> the run parameters of its best trial (fixed ones and tuned values; not its seed or
    data), for `study --from-tuning`; a one-line error while a budget is not spent or no trial completed."""
    settings = read_settings(study_dir)
    summary = write_summary(study_dir)
    configurations = {}
    for architecture, result in summary["architectures"].items():
        if not result["finished"] or result["best"] is None:
            raise EcgkerasError(f"{architecture} in {study_dir} has not finished its {settings.trials} trials with "
                                "a complete one: rerun `ecgkeras tune` into it first")
        configurations[architecture] = {**settings.parameters, **result["best"]["params"]}
    return configurations


def tuned_recipes(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Architecture -> {"recipe": "tuned, N trials", "parameters": its chosen values} from the study folder's
    tuning summary ({} without a tuning), for the study's tables."""
    path = tuning_dir(Path(study_dir)) / SUMMARY_FILE
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text(encoding="utf-8"))
    trials = summary["budget"]["trials"]
    return {architecture: {"recipe": f"tuned, {trials} trials", "parameters": result["best"]["params"],
                           "validation_macro_auprc": result["best"]["validation_macro_auprc"]}
            for architecture, result in summary["architectures"].items() if result["best"]}


def tuned_plots(study_dir: Path) -> list[Path]:
    """The optimization history and importance plots of every tuned architecture in the study folder."""
    folder = tuning_dir(Path(study_dir))
    return sorted(path for architecture in tuned_recipes(study_dir) for plot in (HISTORY_PLOT, IMPORTANCE_PLOT)
                  if (path := folder / architecture / plot).is_file())
