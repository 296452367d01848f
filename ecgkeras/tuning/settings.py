"""What every architecture's Optuna study shares: the settings recorded in `tuning.json`, the storage,
the pruner and the sampler."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ecgkeras.errors import EcgkerasError
from ecgkeras.training import TrainingConfig
from ecgkeras.tuning.layout import DEFAULT_STORAGE, SETTINGS_FILE, study_name, tuning_dir

PRUNERS = ("median", "hyperband", "none")
TRIAL_DEFAULTS = {"bootstrap_resamples": 0}  # a trial is never compared on the test fold: no intervals
TRIAL_SEED = 0  # the run seed of every trial (the sampler seed is separate)


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
    storage: str  # journal:PATH (relative to the tuning folder) or a SQLAlchemy URL

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


def open_storage(study_dir: Path, spec: str = DEFAULT_STORAGE) -> optuna.storages.BaseStorage:
    """The Optuna storage `spec` names: 'journal:PATH' (a journal file; a relative PATH is in the tuning
    folder, so the folder can move) or a SQLAlchemy database URL (postgresql:// uses psycopg 3 when
    psycopg2 is not installed)."""
    if spec.startswith("journal:"):
        path = tuning_dir(study_dir) / spec.removeprefix("journal:")
        try:  # the journal is replayed as it opens
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EcgkerasError(f"{path} is damaged (a line is cut short or not Optuna's): restore it from a "
                                "backup, or tune into another --out") from None
    url = spec
    if spec.startswith("postgresql://") and not importlib.util.find_spec("psycopg2") and importlib.util.find_spec("psycopg"):
        url = "postgresql+psycopg://" + spec.removeprefix("postgresql://")
    try:
        return optuna.storages.RDBStorage(url)
    except ModuleNotFoundError as exc:
        raise EcgkerasError(f"--storage {spec}: its database driver {exc.name} is not installed (for PostgreSQL: "
                            "pip install 'ecgkeras[postgresql]')") from None
    except Exception as exc:  # SQLAlchemy's errors: unknown dialect, unreachable server, wrong password
        raise EcgkerasError(f"--storage {spec}: cannot open it ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]})") from None


def make_pruner(settings: TuningSettings) -> optuna.pruners.BasePruner:
    """The pruner every architecture shares; the median pruner starts once a fifth of the budget finished."""
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, settings.trials // 5), n_warmup_steps=0)
    if settings.pruner == "hyperband":
        epochs = settings.parameters.get("epochs", TrainingConfig.epochs)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def make_sampler(settings: TuningSettings, position: int) -> optuna.samplers.BaseSampler:
    """TPE seeded from the sampler seed and the trial's position; random for the first quarter of the budget."""
    return optuna.samplers.TPESampler(seed=settings.sampler_seed * 100_003 + position,
                                      n_startup_trials=max(2, settings.trials // 4))


def load_study(settings: TuningSettings, storage, architecture: str) -> optuna.Study:
    """The Optuna study of `architecture` in `storage`, created on first use."""
    return optuna.create_study(study_name=study_name(architecture), storage=storage, direction="maximize",
                               pruner=make_pruner(settings), load_if_exists=True)


def check_settings(study_dir: Path, settings: TuningSettings) -> None:
    """Refuse a tuning folder whose earlier settings differ (budgets compared must be equal)."""
    if not (tuning_dir(study_dir) / SETTINGS_FILE).is_file():
        return
    earlier = read_settings(study_dir)
    for name in ("data_dir", "sampler_seed", "pruner", "space", "parameters", "storage"):
        if getattr(earlier, name) != getattr(settings, name):
            raise EcgkerasError(f"{study_dir} was tuned with another {name} ({getattr(earlier, name)!r}, now "
                                f"{getattr(settings, name)!r}): every architecture must share one, so give the same "
                                "settings to continue, or use another --out")
