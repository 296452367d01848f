"""One run (architecture, data, seed, hyperparameters) end to end, and its record on disk.

A run folder holds:
  metrics.json     configuration, library versions, timings, all metrics, per-class tables,
                   standardization and thresholds; written last, so it marks a complete run
  predictions.npz  validation and test probabilities, labels, ecg_ids and class names
  history.csv      one row per epoch (Keras CSVLogger)
  model.keras      the best model (by validation macro-AUPRC)
Field by field documentation: results/README.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgkeras import __version__
from ecgkeras.data import DEFAULT_FOLDS, PTBXL, Standardizer, load_ptbxl
from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write, atomic_write_text
from ecgkeras.evaluation import all_metrics, bootstrap_intervals, per_class_table, tune_thresholds
from ecgkeras.models import build_model, get_architecture
from ecgkeras.training import TrainingConfig, convergence, predict_probabilities, set_seed, train_model

RECORD_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
RECORD_FORMAT = 1
MODEL_PARAMETERS = tuple(name for name, p in inspect.signature(build_model).parameters.items()
                         if p.kind is p.KEYWORD_ONLY and name != "sampling_rate")
TRAINING_PARAMETERS = tuple(f.name for f in dataclasses.fields(TrainingConfig))


@dataclass
class RunConfig:
    """Everything that defines a run; `from_parameters` accepts the flat notebook parameters."""

    data_dir: str
    architecture: str = "cnn-bilstm"
    sampling_rate: int = 100
    label_level: str = "subclass"
    seed: int = 0
    train_folds: tuple[int, ...] = DEFAULT_FOLDS["train"]
    val_folds: tuple[int, ...] = DEFAULT_FOLDS["val"]
    test_folds: tuple[int, ...] = DEFAULT_FOLDS["test"]
    bootstrap_resamples: int = 1000
    cache_dir: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        get_architecture(self.architecture)
        if unknown := set(self.model) - set(MODEL_PARAMETERS):
            raise EcgkerasError(f"unknown model parameter(s) {sorted(unknown)}: "
                                f"use {', '.join(MODEL_PARAMETERS)}")

    @classmethod
    def from_parameters(cls, **params: Any) -> "RunConfig":
        """Build from flat parameters (run, model and training names mixed, as in the notebook)."""
        run_names = {f.name for f in dataclasses.fields(cls)} - {"model", "training"}
        unknown = set(params) - run_names - set(MODEL_PARAMETERS) - set(TRAINING_PARAMETERS)
        if unknown:
            raise EcgkerasError(f"unknown parameter(s) {sorted(unknown)}: valid names are "
                                f"{', '.join(sorted(run_names | set(MODEL_PARAMETERS) | set(TRAINING_PARAMETERS)))}")
        model = {k: v for k, v in params.items() if k in MODEL_PARAMETERS and v is not None}
        training = TrainingConfig(**{k: v for k, v in params.items() if k in TRAINING_PARAMETERS})
        run = {k: tuple(v) if k.endswith("_folds") else v for k, v in params.items() if k in run_names}
        return cls(**run, model=model, training=training)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        values = dict(values)
        values["training"] = TrainingConfig(**values["training"])
        for key in ("train_folds", "val_folds", "test_folds"):
            values[key] = tuple(values[key])
        return cls(**values)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results, plus the devices used."""
    import keras
    import sklearn
    import tensorflow as tf
    import wfdb

    return {"ecgkeras": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "wfdb": wfdb.__version__,
            "gpus": ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none"}


@dataclass
class RunRecord:
    """A complete run folder, read back from disk."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.metrics["config"])

    @property
    def classes(self) -> list[str]:
        return self.metrics["classes"]

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        with np.load(self.run_dir / PREDICTIONS_FILE, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}

    @cached_property
    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / "history.csv")

    def per_class(self, split: str = "test", policy: str = "tuned") -> pd.DataFrame:
        """Per-class table (support, precision, recall, F1, AUPRC, AUROC, threshold)."""
        return pd.DataFrame(self.metrics["per_class"][split][policy]).set_index("class")

    def thresholds(self, policy: str = "tuned") -> np.ndarray:
        return np.asarray(self.metrics["thresholds"][policy], dtype=float)

    @property
    def standardizer(self) -> Standardizer:
        return Standardizer.from_dict(self.metrics["standardizer"])


def is_complete(run_dir: str | Path) -> bool:
    """A run counts as complete only once its record exists with every file it names."""
    run_dir = Path(run_dir)
    return (run_dir / RECORD_FILE).is_file() and all(
        (run_dir / name).is_file() for name in (PREDICTIONS_FILE, "history.csv", "model.keras"))


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a complete run folder, or a one-line error saying what to do."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EcgkerasError(f"run folder not found: {run_dir}")
    if not is_complete(run_dir):
        raise EcgkerasError(f"run folder {run_dir} is incomplete (interrupted or failed): rerun it, "
                            "e.g. with `ecgkeras study` which redoes incomplete runs")
    try:
        metrics = json.loads((run_dir / RECORD_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise EcgkerasError(f"{run_dir / RECORD_FILE} is not valid JSON ({exc}); rerun this run") from exc
    return RunRecord(run_dir, metrics)


def find_runs(study_dir: str | Path) -> list[RunRecord]:
    """Every complete run folder under `study_dir`, sorted by path."""
    return [load_run(path.parent) for path in sorted(Path(study_dir).rglob(RECORD_FILE))
            if is_complete(path.parent)]


def _split_metrics(y_true: np.ndarray, y_prob: np.ndarray, thresholds: dict[str, np.ndarray]
                   ) -> dict[str, dict[str, float]]:
    return {policy: all_metrics(y_true, y_prob, values) for policy, values in thresholds.items()}


def _per_class_records(y_true, y_prob, thresholds, classes) -> dict[str, list[dict]]:
    return {policy: per_class_table(y_true, y_prob, values, classes).reset_index().to_dict("records")
            for policy, values in thresholds.items()}


def run_experiment(config: RunConfig, run_dir: str | Path, dataset: PTBXL | None = None,
                   progress: bool = True) -> RunRecord:
    """Load data, train, evaluate on validation and test, and write the run record.

    Thresholds are tuned on the validation fold only. Pass `dataset` to reuse a loaded PTB-XL.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD_FILE).unlink(missing_ok=True)  # a rerun is incomplete until it finishes
    started = datetime.now(timezone.utc)
    data = dataset or load_ptbxl(config.data_dir, config.sampling_rate, config.label_level,
                                 config.train_folds, config.val_folds, config.test_folds,
                                 cache_dir=config.cache_dir, progress=progress)
    train, val, test = data.train, data.val, data.test
    for name, part in (("train", train), ("val", val), ("test", test)):
        if len(part.X) == 0:
            raise EcgkerasError(f"the {name} split of {config.data_dir} is empty: check the folds "
                                f"{data.split_folds[name]} exist in ptbxl_database.csv")
    crop = config.training.crop_length
    if crop is not None and not 0 < crop <= train.X.shape[1]:
        raise EcgkerasError(f"crop_length={crop} does not fit records of {train.X.shape[1]} samples: "
                            "give a length between 1 and the record length, or None")
    standardizer = Standardizer.fit(train.X)
    train, val, test = (part._replace(X=standardizer.transform(part.X)) for part in (train, val, test))

    input_length = config.training.crop_length or train.X.shape[1]
    set_seed(config.seed, config.training.deterministic)  # before building: initial weights are random too
    model = build_model(config.architecture, (input_length, train.X.shape[2]), len(data.classes),
                        sampling_rate=config.sampling_rate, **config.model)
    history = train_model(model, train, val, run_dir, config.training, seed=config.seed)

    crop = {"crop_length": config.training.crop_length, "window_stride": config.training.window_stride}
    val_prob = predict_probabilities(model, val.X, **crop)  # also traces predict, so the test timing is warm
    started_test = time.perf_counter()
    test_prob = predict_probabilities(model, test.X, **crop)
    inference_ms_per_ecg = (time.perf_counter() - started_test) * 1000 / len(test.X)
    thresholds = {"fixed": np.full(len(data.classes), 0.5), "tuned": tune_thresholds(val.Y, val_prob)}
    test_metrics = _split_metrics(test.Y, test_prob, thresholds)
    intervals = bootstrap_intervals(test.Y, test_prob, thresholds, config.bootstrap_resamples, seed=config.seed)
    for policy in thresholds:
        test_metrics[policy]["ci95"] = intervals.get(policy, {})

    def save_predictions(handle) -> None:
        np.savez_compressed(handle, classes=np.asarray(data.classes),
                            val_ecg_ids=val.ecg_ids, val_true=val.Y, val_prob=val_prob,
                            test_ecg_ids=test.ecg_ids, test_true=test.Y, test_prob=test_prob)

    atomic_write(run_dir / PREDICTIONS_FILE, save_predictions)
    epoch_seconds = history["epoch_seconds"].to_numpy()
    record = {
        "format": RECORD_FORMAT,
        "status": "complete",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "architecture": {"name": config.architecture,
                         "display_name": get_architecture(config.architecture).display_name},
        "versions": library_versions(),
        "classes": data.classes,
        "data": {"n_train": len(train.X), "n_val": len(val.X), "n_test": len(test.X),
                 "n_dropped": data.n_dropped, "input_shape": list(model.input_shape[1:]),
                 "split_folds": {k: list(v) for k, v in data.split_folds.items()}},
        "n_parameters": int(model.count_params()),
        "timings": {"epochs_run": len(history),
                    "best_epoch": int(history["val_auprc"].idxmax()) + 1,
                    "seconds_per_epoch": float(np.median(epoch_seconds[1:] if len(epoch_seconds) > 1
                                                         else epoch_seconds)),
                    "first_epoch_seconds": float(epoch_seconds[0]),
                    "training_seconds": float(epoch_seconds.sum()),
                    "inference_ms_per_ecg": inference_ms_per_ecg},
        "convergence": convergence(history, config.training),
        "standardizer": standardizer.to_dict(),
        "thresholds": {policy: values.tolist() for policy, values in thresholds.items()},
        "metrics": {"val": _split_metrics(val.Y, val_prob, thresholds), "test": test_metrics},
        "per_class": {"val": _per_class_records(val.Y, val_prob, thresholds, data.classes),
                      "test": _per_class_records(test.Y, test_prob, thresholds, data.classes)},
    }
    atomic_write_text(run_dir / RECORD_FILE, json.dumps(record, indent=2))
    return load_run(run_dir)


def predict_record(run_dir: str | Path, record: str | Path) -> pd.DataFrame:
    """Probabilities of one WFDB record under a run's model, standardization and tuned thresholds.

    Rows are sorted by probability; `predicted` marks probabilities at or above the threshold.
    """
    import keras

    from ecgkeras.data import read_record

    run = load_run(run_dir)
    config = run.config
    signal = read_record(Path(record).with_suffix(""), config.sampling_rate)
    expected = run.metrics["data"]["input_shape"]
    crop = config.training.crop_length
    if not crop and list(signal.shape) != expected:
        raise EcgkerasError(f"record {record} has shape {signal.shape}, the model of {run_dir} expects "
                            f"{tuple(expected)}")
    model = keras.models.load_model(run.run_dir / "model.keras", compile=False)
    X = run.standardizer.transform(signal[np.newaxis])
    probs = predict_probabilities(model, X, crop_length=crop, window_stride=config.training.window_stride)[0]
    thresholds = run.thresholds("tuned")
    table = pd.DataFrame({"class": run.classes, "probability": probs, "threshold": thresholds,
                          "predicted": probs >= thresholds})
    return table.sort_values("probability", ascending=False, ignore_index=True)
