"""A tuning worker: claims trials of each architecture under the tuning folder's lock and trains them
until every budget, or its shard's share, is spent.

A claim fails and requeues trials whose worker died (their run lock is free; their staging folder is
removed), counts the budget spent (complete, pruned and failed trials, and those running elsewhere),
asks Optuna for a trial, samples it and takes the trial folder's run lock; so the budget is exact, no
trial is trained twice at once, and a rerun continues the same studies without retraining finished
trials. The sampler is TPE, seeded per trial from the sampler seed and the trial's position, so
sequential tuning is reproducible and parallel workers never draw the same values.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.trial import TrialState

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.prepare import load_dataset
from ecgkeras.runs.record import discard_staging
from ecgkeras.schema import Search
from ecgkeras.study.locks import RunLocked, lock_owner, run_lock, study_lock
from ecgkeras.tuning.layout import FAILED, PRUNED, trial_folder, tuning_dir, write_trial_file
from ecgkeras.tuning.settings import TuningSettings, load_study, make_sampler, open_storage, read_settings
from ecgkeras.tuning.space import architecture_space, suggest

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines; the summary says what happened

SHARD_ATTRIBUTE = "shard"  # user attribute: the `--shard I/N` that claimed a trial

REQUEUED = "requeued"  # user attribute of a trial failed because its worker died (not counted)


def _spent(trials: Iterable[optuna.trial.FrozenTrial], shard: str | None = None) -> int:
    """Trials that count against the budget (of `shard` alone, if given): finished (but requeued ones)
    and running."""
    return sum(1 for trial in trials
               if (shard is None or trial.user_attrs.get(SHARD_ATTRIBUTE) == shard)
               and (trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
                    or (trial.state == TrialState.FAIL and not trial.user_attrs.get(REQUEUED))))


def shard_quota(trials: int, shard: tuple[int, int]) -> int:
    """Shard I of N's share of a budget of `trials`: the N shares differ by at most one and add up to it."""
    index, count = shard
    return trials // count + (index <= trials % count)


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial, reason: str, run_dir: Path) -> None:
    """Fail `trial` without counting it and queue its values again for the next worker."""
    trial_id = trial._trial_id
    study._storage.set_trial_user_attr(trial_id, REQUEUED, reason)
    study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    write_trial_file(run_dir, {"number": trial.number, "state": FAILED, "reason": f"{reason}; requeued",
                               "params": trial.params})


def _claim(study_dir: Path, settings: TuningSettings, storage, architecture: str, stack: ExitStack,
           shard: tuple[int, int] | None):
    """(study, trial, values, run folder) of a new trial of `architecture` holding its run lock, or None once
    its budget (or the shard's share of it) is spent."""
    with study_lock(tuning_dir(study_dir)):
        study = load_study(settings, storage, architecture)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_dir = trial_folder(study_dir, architecture, trial.number)
            if lock_owner(run_dir) is None:
                log.warning("trial %d of %s was left running by a worker that died: requeued", trial.number,
                            architecture)
                _requeue(study, trial, "its worker died", run_dir)
                discard_staging(run_dir)
        trials = study.get_trials(deepcopy=False)
        label = f"{shard[0]}/{shard[1]}" if shard else None
        if _spent(trials) >= settings.trials or (shard and _spent(trials, label) >= shard_quota(settings.trials, shard)):
            return None
        study.sampler = make_sampler(settings, len(trials))
        trial = study.ask()
        if label:
            trial.set_user_attr(SHARD_ATTRIBUTE, label)
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


def work(study_dir: Path, architectures: list[str], env: dict[str, str] | None = None,
         shard: tuple[int, int] | None = None) -> None:
    """One worker: claims and trains trials of `architectures` in turn until every budget (or, with `shard`
    (I, N), shard I's share of each) is spent."""
    os.environ.update(env or {})
    settings = read_settings(study_dir)
    storage = open_storage(study_dir, settings.storage)
    data = load_dataset(RunConfig.from_parameters(**settings.trial_parameters(architectures[0], {})), progress=False)
    while True:
        progressed = False
        for architecture in architectures:
            with ExitStack() as stack:
                try:
                    claim = _claim(study_dir, settings, storage, architecture, stack, shard)
                except RunLocked as exc:  # a trial folder of another storage's study: leave it be
                    raise EcgkerasError(f"{exc}: tune into another --out") from None
                if claim is None:
                    continue
                progressed = True
                _run_claimed(*claim, settings, architecture, data)
        if not progressed:
            return


def worker_process(study_dir: Path, architectures: list[str], env: dict[str, str] | None = None,
                   shard: tuple[int, int] | None = None) -> None:
    """`work` as a process of its own (a local worker or a SLURM task): an error is one line on standard
    error and exit status 2, Ctrl-C exit status 130 (its trial requeued), never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        work(study_dir, architectures, env, shard)
    except EcgkerasError as exc:
        print(f"ecgkeras tune worker: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
