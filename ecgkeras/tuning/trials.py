"""One tuning trial as a run: the configuration Optuna suggests, trained in-process by `run_experiment`
(staging, record, provenance as for any run) with a callback that reports each epoch's validation
macro-AUPRC to Optuna and stops a trial its pruner prunes; the objective is the run's validation
macro-AUPRC, never a test-fold number."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from ecgkeras.data.ptbxl import PTBXL
from ecgkeras.runs.config import TUNED, RunConfig
from ecgkeras.runs.experiment import run_experiment
from ecgkeras.training import MONITOR
from ecgkeras.tuning.layout import COMPLETE, PRUNED, write_trial_file

OBJECTIVE = "macro_auprc"  # of the validation fold (`RunRecord.metrics("val")`)


class PruningCallback(keras.callbacks.Callback):
    """Reports `MONITOR` to the Optuna trial after each epoch; stops training once the pruner prunes it
    (the run still finishes its record, so a pruned trial is a run too)."""

    def __init__(self, trial) -> None:
        super().__init__()
        self.trial, self.pruned_at = trial, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


def run_trial(trial, config: RunConfig, run_dir: Path, data: PTBXL) -> tuple[str, float]:
    """Train trial `trial` (an `optuna.Trial`) with `config` into `run_dir`; returns (state, objective) and
    writes `trial.json` beside its record."""
    pruning = PruningCallback(trial)
    started = time.perf_counter()
    run = run_experiment(config, run_dir, dataset=data, progress=False, callbacks=[pruning])
    value = run.metrics("val", TUNED)[OBJECTIVE]
    state = PRUNED if pruning.pruned_at else COMPLETE
    write_trial_file(run_dir, {"number": trial.number, "state": state, "value": value, "params": trial.params,
                               "pruned_at_epoch": pruning.pruned_at, "epochs_run": run.convergence["epochs_run"],
                               "epoch_cap": run.convergence["epoch_cap"], "seconds": time.perf_counter() - started})
    return state, value
