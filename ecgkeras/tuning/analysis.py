"""Per architecture, Optuna's optimization history and parameter importances (fANOVA), drawn with
matplotlib to PNG in the architecture's tuning folder, so the report stays a static site."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from ecgkeras.tuning.layout import HISTORY_PLOT, IMPORTANCE_PLOT, tuning_dir  # noqa: E402

MIN_TRIALS_FOR_IMPORTANCE = 2  # fANOVA needs complete trials that differ


def plot_study(study: optuna.Study, folder: Path, title: str) -> list[Path]:
    """history.png (each trial's objective, pruned ones at their last report, the best so far) and, with
    enough complete trials, importances.png; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in complete], [t.value for t in complete], label="complete")
    ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
               marker="x", label="pruned (last epoch reported)")
    best, running = [], float("-inf")
    for trial in sorted(complete, key=lambda t: t.number):
        running = max(running, trial.value)
        best.append((trial.number, running))
    if best:
        ax.step(*zip(*best), where="post", label="best so far")
    ax.set(xlabel="trial", ylabel="validation macro-AUPRC", title=f"{title}: optimization history")
    ax.legend(fontsize="small")
    written = [folder / HISTORY_PLOT]
    fig.tight_layout()
    fig.savefig(written[0], dpi=120)
    plt.close(fig)
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE and len({repr(t.params) for t in complete}) > 1:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(importances) + 1.2))
        names = list(importances)[::-1]
        ax.barh(names, [importances[name] for name in names])
        ax.set(xlabel="importance (fANOVA, normalized)", title=f"{title}: parameter importances")
        fig.tight_layout()
        fig.savefig(folder / IMPORTANCE_PLOT, dpi=120)
        plt.close(fig)
        written.append(folder / IMPORTANCE_PLOT)
    return written


def plot_studies(study_dir: Path, studies: dict[str, optuna.Study]) -> list[Path]:
    """`plot_study` for every architecture's study into tuning/<architecture>/."""
    return [path for architecture, study in studies.items()
            for path in plot_study(study, tuning_dir(study_dir) / architecture, architecture)]
