"""`ecgkeras tune`: one Optuna study per architecture, each with the same budget (trials), the same
sampler seed and the same pruner, all in one storage (the tuning folder's journal file, or a database
given by URL) that any number of workers share.

A worker claims a trial under the tuning folder's lock (`study_lock`): it fails and requeues trials
whose worker died (their run lock is free), counts the budget spent (complete, pruned and failed trials,
and those running elsewhere), asks Optuna for a trial, samples it and takes the trial folder's run lock;
so the budget is exact, no trial is trained twice at once, and a rerun continues the same studies
without retraining finished trials. The sampler is TPE, seeded per trial from the sampler seed and the
trial's position, so sequential tuning is reproducible and parallel workers never draw the same values.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.trial import TrialState

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.models import get_architecture
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.prepare import load_dataset
from ecgkeras.schema import Search
from ecgkeras.study.devices import device_slots
from ecgkeras.study.locks import RunLocked, lock_owner, run_lock, study_lock
from ecgkeras.study.plan import RUNNER_OWNED, plan_study
from ecgkeras.training import TrainingConfig
from ecgkeras.tuning.analysis import plot_studies
from ecgkeras.tuning.layout import (COMPLETE, FAILED, HISTORY_PLOT, IMPORTANCE_PLOT, PRUNED, SETTINGS_FILE,
                                    SUMMARY_FILE, TRIAL_FILE, journal_url, make_tuning_dir, study_name, trial_folder,
                                    tuning_dir, write_trial_file)
from ecgkeras.tuning.space import architecture_space, load_space, space_to_json, suggest

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines; the summary says what happened

PRUNERS = ("median", "hyperband", "none")
TRIAL_DEFAULTS = {"bootstrap_resamples": 0}  # a trial is never compared on the test fold: no intervals
TRIAL_SEED = 0  # the run seed of every trial (the sampler seed is separate)
REQUEUED = "requeued"  # user attribute of a trial failed because its worker died (not counted)
_STATES = {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED, TrialState.FAIL: FAILED}


@dataclass
class TuningSettings:
    """What every architecture's study shares; `tuning.json` records it, a rerun must match it (but for
    `trials`, which may grow, and `architectures`, which may be added)."""

    data_dir: str
    architectures: list[str]
    trials: int
    sampler_seed: int
    pruner: str
    space: dict[str, dict[str, Any]]
    parameters: dict[str, Any]  # fixed run parameters (-p), the same for every trial
    storage: str  # journal:PATH or a SQLAlchemy URL

    def trial_parameters(self, architecture: str, values: dict[str, Any]) -> dict[str, Any]:
        """The run parameters of a trial of `architecture` with the sampled `values`."""
        return {**TRIAL_DEFAULTS, **self.parameters, **values, "architecture": architecture, "seed": TRIAL_SEED,
                "data_dir": self.data_dir}


def read_settings(study_dir: Path) -> TuningSettings:
    """The tuning settings of `study_dir`, or a one-line error when it holds no tuning."""
    path = tuning_dir(study_dir) / SETTINGS_FILE
    try:
        return TuningSettings(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise EcgkerasError(f"{study_dir} holds no tuning ({path} is missing): run `ecgkeras tune --out "
                            f"{study_dir}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise EcgkerasError(f"{path} is damaged (not what ecgkeras wrote there): restore it, or tune into "
                            "another --out") from None


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """The Optuna storage `spec` names: 'journal:PATH' (a journal file) or a SQLAlchemy database URL."""
    if spec.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(spec.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    try:
        return optuna.storages.RDBStorage(spec)
    except Exception as exc:  # SQLAlchemy's errors: unknown dialect, unreachable server, missing driver
        raise EcgkerasError(f"--storage {spec}: cannot open it ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0]})") from None


def make_pruner(settings: TuningSettings) -> optuna.pruners.BasePruner:
    """The pruner every architecture shares; the median pruner starts once a fifth of the budget finished."""
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, settings.trials // 5), n_warmup_steps=0)
    if settings.pruner == "hyperband":
        epochs = settings.parameters.get("epochs", TrainingConfig.epochs)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _sampler(settings: TuningSettings, position: int) -> optuna.samplers.BaseSampler:
    """TPE seeded from the sampler seed and the trial's position; random for the first quarter of the budget."""
    return optuna.samplers.TPESampler(seed=settings.sampler_seed * 100_003 + position,
                                      n_startup_trials=max(2, settings.trials // 4))


def _load_study(settings: TuningSettings, storage, architecture: str) -> optuna.Study:
    return optuna.create_study(study_name=study_name(architecture), storage=storage, direction="maximize",
                               pruner=make_pruner(settings), load_if_exists=True)


def _spent(trials: Iterable[optuna.trial.FrozenTrial]) -> int:
    """Trials that count against the budget: finished (but requeued ones) and running."""
    return sum(1 for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (trial.state == TrialState.FAIL and not trial.user_attrs.get(REQUEUED)))


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial, reason: str, run_dir: Path) -> None:
    """Fail `trial` without counting it and queue its values again for the next worker."""
    trial_id = trial._trial_id
    study._storage.set_trial_user_attr(trial_id, REQUEUED, reason)
    study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    write_trial_file(run_dir, {"number": trial.number, "state": FAILED, "reason": f"{reason}; requeued",
                               "params": trial.params})


def _claim(study_dir: Path, settings: TuningSettings, storage, architecture: str, stack: ExitStack):
    """(study, trial, values, run folder) of a new trial of `architecture` holding its run lock, or None once
    its budget is spent."""
    with study_lock(tuning_dir(study_dir)):
        study = _load_study(settings, storage, architecture)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_dir = trial_folder(study_dir, architecture, trial.number)
            if lock_owner(run_dir) is None:
                log.warning("trial %d of %s was left running by a worker that died: requeued", trial.number,
                            architecture)
                _requeue(study, trial, "its worker died", run_dir)
        trials = study.get_trials(deepcopy=False)
        if _spent(trials) >= settings.trials:
            return None
        study.sampler = _sampler(settings, len(trials))
        trial = study.ask()
        values = suggest(trial, architecture_space(_space(settings), architecture, settings.parameters))
        run_dir = trial_folder(study_dir, architecture, trial.number)
        stack.enter_context(run_lock(run_dir))
        return study, trial, values, run_dir


def _space(settings: TuningSettings) -> dict[str, Search]:
    """The settings' recorded space as `Search` values."""
    return {name: Search(**{key: tuple(value) if key == "choices" else value for key, value in entry.items()})
            for name, entry in settings.space.items()}


def _run_claimed(study: optuna.Study, trial: optuna.Trial, values: dict[str, Any], run_dir: Path,
                 settings: TuningSettings, architecture: str, data) -> None:
    """Train a claimed trial and tell Optuna how it ended: complete, pruned or failed; Ctrl-C requeues it."""
    from ecgkeras.tuning.trials import run_trial  # TensorFlow only where a trial trains

    try:
        config = RunConfig.from_parameters(**settings.trial_parameters(architecture, values))
        state, value = run_trial(trial, config, run_dir, data)
    except KeyboardInterrupt:
        _requeue(study, trial, "interrupted", run_dir)
        raise
    except Exception as exc:  # the configuration diverged or could not be built: the trial failed
        log.warning("trial %d of %s failed: %s", trial.number, architecture, exc)
        write_trial_file(run_dir, {"number": trial.number, "state": FAILED, "reason": str(exc), "params": values})
        study.tell(trial, state=TrialState.FAIL)
        return
    if state == PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, value)


def work(study_dir: Path, architectures: list[str], env: dict[str, str] | None = None) -> None:
    """One worker: claims and trains trials of `architectures` in turn until every budget is spent."""
    os.environ.update(env or {})
    settings = read_settings(study_dir)
    storage = open_storage(settings.storage)
    data = load_dataset(RunConfig.from_parameters(**settings.trial_parameters(architectures[0], {})), progress=False)
    while True:
        progressed = False
        for architecture in architectures:
            with ExitStack() as stack:
                try:
                    claim = _claim(study_dir, settings, storage, architecture, stack)
                except RunLocked as exc:  # a trial folder of another storage's study: leave it be
                    raise EcgkerasError(f"{exc}: tune into another --out") from None
                if claim is None:
                    continue
                progressed = True
                _run_claimed(*claim, settings, architecture, data)
        if not progressed:
            return


def _check_settings(study_dir: Path, settings: TuningSettings) -> None:
    """Refuse a tuning folder whose earlier settings differ (budgets compared must be equal)."""
    if not (tuning_dir(study_dir) / SETTINGS_FILE).is_file():
        return
    earlier = read_settings(study_dir)
    for name in ("data_dir", "sampler_seed", "pruner", "space", "parameters", "storage"):
        if getattr(earlier, name) != getattr(settings, name):
            raise EcgkerasError(f"{study_dir} was tuned with another {name} ({getattr(earlier, name)!r}, now "
                                f"{getattr(settings, name)!r}): every architecture must share one, so give the same "
                                "settings to continue, or use another --out")


def tune(data_dir: str | Path, study_dir: str | Path, architectures: Iterable[str], trials: int,
         parameters: dict[str, Any] | None = None, space_file: Path | None = None, storage: str | None = None,
         sampler_seed: int = 0, pruner: str = "median", jobs: int = 1, gpus: list[str] | None = None) -> dict:
    """Tune every architecture with the same budget into `study_dir/tuning/`; returns the tuning summary.

    Everything is checked before anything is written: the options, the space file, the fixed run
    parameters, the data and each architecture's model. `jobs` workers share the storage (`_run_workers`,
    each on a device slot); more workers may join with another `tune` into the folder.
    """
    study_dir = Path(study_dir).resolve()
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
    backend = open_storage(storage) if storage else None  # a database URL is reached before the data is read
    plan = plan_study(data_dir, study_dir, architectures, [TRIAL_SEED], {**TRIAL_DEFAULTS, **parameters})
    slots = device_slots(gpus, 1)
    settings = TuningSettings(next(iter(plan.configs.values())).data_dir, architectures, trials, sampler_seed, pruner,
                              space_to_json(space), parameters, storage or journal_url(study_dir))
    _check_settings(study_dir, settings)
    make_tuning_dir(study_dir)
    if (tuning_dir(study_dir) / SETTINGS_FILE).is_file():
        settings.architectures = list(dict.fromkeys([*read_settings(study_dir).architectures, *architectures]))
    atomic_write_text(tuning_dir(study_dir) / SETTINGS_FILE, json.dumps(asdict(settings), indent=2))
    backend = backend or open_storage(settings.storage)
    for architecture in architectures:
        _load_study(settings, backend, architecture)
    _run_workers(study_dir, architectures, [slots[i % len(slots)] for i in range(jobs)])
    return write_summary(study_dir, time.perf_counter() - started)


def _run_workers(study_dir: Path, architectures: list[str], slots: list[dict[str, str]]) -> None:
    """`work` once per slot: the first in this process when it needs no device pinning (TensorFlow is
    loaded here already), the others in fresh processes (spawned: TensorFlow is not fork-safe), each with
    its slot's environment; a worker that fails leaves its trial to be requeued by the next claim."""
    here = not slots[0]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=work, args=(study_dir, architectures, env), name=f"tune-worker-{i}")
               for i, env in enumerate(slots[1:] if here else slots, start=int(here))]
    for worker in workers:
        worker.start()
    try:
        if here:
            work(study_dir, architectures)
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
    storage = open_storage(settings.storage)
    studies = {architecture: _load_study(settings, storage, architecture) for architecture in settings.architectures}
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
