"""One run (architecture, data, seed, hyperparameters) end to end, and its record on disk.

A run folder holds:
  metrics.json     the run record: configuration, data provenance, library versions, timings,
                   all metrics, per-class tables, standardization and thresholds
  predictions.npz  validation and test probabilities, labels, ecg_ids and class names
  history.csv      one row per epoch (Keras CSVLogger)
  model.keras      the best model (by validation macro-AUPRC)
A run trains into a staging folder beside its run folder and replaces it only once complete,
so a folder with a record is always a complete run and a failed rerun keeps the previous one.
`RunRecord` is the one reader of a run folder, and `RunRecord.load` the one definition of a
complete run: its record, predictions and model all read back (`is_complete`, `find_runs`).
Field by field documentation: results/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ecgkeras import __version__
from ecgkeras.data.ptbxl import PTBXL, Part, Standardizer
from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write, atomic_write_text
from ecgkeras.models import get_architecture
from ecgkeras.runs.config import POLICIES, SPLITS, TUNED, RunConfig
from ecgkeras.runs.provenance import data_provenance, execution_context, library_versions
from ecgkeras.training import HISTORY_FILE, MODEL_FILE, convergence, cpu_features, cpu_model

RECORD_FILE = "metrics.json"
EXTERNAL_DIR = "external"  # <run>/external/<dataset>.json: `ecgkeras evaluate` of the run on another dataset
APART_MARKER = ".runs-apart"  # a folder holding it keeps its runs out of `find_runs` of the folders above it
PREDICTIONS_FILE = "predictions.npz"
RUN_FILES = (RECORD_FILE, PREDICTIONS_FILE, HISTORY_FILE, MODEL_FILE)
RECORD_FORMAT = 3  # 2 added the data provenance and the full model configuration; 3 keeps epochs under convergence only
EPOCH_FIELDS = ("epochs_run", "best_epoch")  # under timings up to format 2, under convergence since
PREDICTION_ARRAYS = ("classes", *(f"{split}_{kind}" for split in ("val", "test") for kind in ("ecg_ids", "true", "prob")))
MODEL_ENTRIES = ("config.json", "model.weights.h5")  # what Keras' .keras zip must hold to load


# --------------------------------------------------------------------------- the record


_REQUIRED = ("config", "architecture", "classes", "data", "n_parameters", "timings", "standardizer",
             "thresholds", "metrics", "per_class", "versions")


@dataclass(frozen=True)
class RunRecord:
    """A complete run folder, read back from disk: the only reader of its files."""

    run_dir: Path
    record: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunRecord":
        """Read a complete run folder, or a one-line error saying what to do."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise EcgkerasError(f"run folder not found: {run_dir}")
        if run_dir.name.startswith(".") and run_dir.name.endswith((".staging", ".previous")):
            raise EcgkerasError(f"{run_dir} is the working folder of a run being (re)trained or interrupted, "
                                f"not a run: give its run folder {_run_beside(run_dir)}")
        if missing := [name for name in RUN_FILES if not (run_dir / name).is_file()]:
            if runs := sorted(path.parent for path in run_dir.glob(f"*/*/{RECORD_FILE}")):
                raise EcgkerasError(f"{run_dir} is a study folder, not a run: give a run folder such as {runs[0]} "
                                    f"(it holds {', '.join(path.relative_to(run_dir).as_posix() for path in runs)})")
            raise EcgkerasError(f"run folder {run_dir} is incomplete ({', '.join(missing)} missing; interrupted or "
                                "failed): rerun it, e.g. with `ecgkeras study` which redoes incomplete runs")
        path = run_dir / RECORD_FILE
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EcgkerasError(f"{path} is not valid JSON ({exc}): rerun this run") from None
        missing = [key for key in _REQUIRED if key not in record] if isinstance(record, dict) else list(_REQUIRED)
        if missing:
            raise EcgkerasError(f"{path} is not a complete run record (missing {', '.join(missing)}): rerun this run")
        if record.get("format", 1) > RECORD_FORMAT:
            raise EcgkerasError(f"{path} has record format {record['format']}, newer than this ecgkeras "
                                f"({__version__}) reads: upgrade ecgkeras")
        run = cls(run_dir, record)
        try:
            run.config  # noqa: B018 -- checks the stored configuration once, here
        except EcgkerasError as exc:
            raise EcgkerasError(f"{path} holds an invalid configuration ({exc}): rerun this run") from None
        run._check_predictions()
        run._check_model()
        return run

    def _check_predictions(self) -> None:
        """predictions.npz reads back (zip CRCs included) with every array, consistent with the record."""
        path = self.run_dir / PREDICTIONS_FILE
        try:
            predictions = self.predictions
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # 0-byte, truncated, garbage
            raise EcgkerasError(f"cannot read {path} ({type(exc).__name__}: {exc}): the file is damaged; "
                                "rerun this run") from None
        if missing := [name for name in PREDICTION_ARRAYS if name not in predictions]:
            raise EcgkerasError(f"{path} lacks the arrays {', '.join(missing)}: rerun this run")
        n_classes = len(self.classes)
        if list(predictions["classes"]) != self.classes or any(
                predictions[f"{split}_{kind}"].shape != (len(predictions[f"{split}_ecg_ids"]), n_classes)
                for split in SPLITS for kind in ("true", "prob")):
            raise EcgkerasError(f"{path} does not match the classes of {self.run_dir / RECORD_FILE}: rerun this run")

    def _check_model(self) -> None:
        """model.keras is a whole zip (every CRC checks) holding Keras' configuration and weights; no TensorFlow."""
        try:
            with zipfile.ZipFile(self.model_path) as archive:
                damaged = archive.testzip()
                missing = [name for name in MODEL_ENTRIES if name not in archive.namelist()]
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise EcgkerasError(f"cannot read {self.model_path} ({type(exc).__name__}: {exc}): the file is "
                                "damaged; rerun this run") from None
        if damaged or missing:
            problem = f"{damaged} fails its CRC" if damaged else f"{', '.join(missing)} missing"
            raise EcgkerasError(f"{self.model_path} is damaged ({problem}): rerun this run")

    @cached_property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.record["config"])

    @property
    def architecture(self) -> str:
        """Registry name, e.g. 'cnn-bilstm'."""
        return self.config.architecture

    @property
    def display_name(self) -> str:
        """Name in tables and figures, e.g. 'CNN-BiLSTM'."""
        return self.record["architecture"]["display_name"]

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def classes(self) -> list[str]:
        return self.record["classes"]

    @property
    def n_parameters(self) -> int:
        return int(self.record["n_parameters"])

    @property
    def data(self) -> dict[str, Any]:
        """Record counts per split, records dropped, model input shape, folds of each split."""
        return {key: value for key, value in self.record["data"].items() if key != "provenance"}

    @property
    def provenance(self) -> dict[str, Any]:
        """`synthetic`, `data_dir` and `database_sha256` at training time (None in records before format 2)."""
        return self.record["data"].get("provenance") or {"synthetic": None, "data_dir": self.config.data_dir,
                                                         "database_sha256": None}

    @property
    def timings(self) -> dict[str, float]:
        """seconds_per_epoch, first_epoch_seconds (its excess over an epoch is tracing), training_seconds,
        inference_ms_per_ecg, bootstrap_seconds and, since this release, the fixed costs: process_seconds
        (kernel start and imports before the run began), data_seconds (opening and checking the data),
        fit_seconds (importing Keras where the process had not yet, building and fitting the model),
        evaluation_seconds (predictions, thresholds, metrics, bootstrap). The epochs are in `convergence`."""
        return {name: value for name, value in self.record["timings"].items() if name not in EPOCH_FIELDS}

    @property
    def parent(self) -> dict[str, Any] | None:
        """The run this one was fine-tuned from (`ecgkeras finetune`): its folder, classes, new_head,
        freeze_epochs; None for a run trained from scratch."""
        return self.record.get("parent")

    @property
    def versions(self) -> dict[str, str]:
        return self.record["versions"]

    @property
    def convergence(self) -> dict[str, Any]:
        """Why training stopped and whether it converged (`ecgkeras.training.convergence`); older
        records without it are judged from their history."""
        return self.record.get("convergence") or convergence(self.history, self.config.training)

    @property
    def execution(self) -> dict[str, Any]:
        """Where the run trained: host, pid, executor, CUDA_VISIBLE_DEVICES, SLURM job (empty in older records)."""
        return self.record.get("execution", {})

    @property
    def started(self) -> str:
        """UTC time the run started training (ISO 8601)."""
        return self.record.get("started", "")

    @property
    def finished(self) -> str:
        """UTC time its record was written (ISO 8601)."""
        return self.record.get("finished", "")

    def metrics(self, split: str = "test", policy: str = TUNED) -> dict[str, float]:
        """Every metric of `split` ('val' or 'test') under threshold `policy` ('tuned' or 'fixed')."""
        values = self._lookup("metrics", split, policy)
        return {name: value for name, value in values.items() if name != "ci95"}

    def intervals(self, policy: str = TUNED) -> dict[str, tuple[float, float]]:
        """Bootstrap 95% intervals of the test-fold headline metrics (empty without resamples)."""
        return {name: (low, high) for name, (low, high) in self._lookup("metrics", "test", policy)
                .get("ci95", {}).items()}

    def per_class(self, split: str = "test", policy: str = TUNED) -> pd.DataFrame:
        """Per-class table (support, precision, recall, F1, AUPRC, AUROC, threshold)."""
        return pd.DataFrame(self._lookup("per_class", split, policy)).set_index("class")

    def thresholds(self, policy: str = TUNED) -> np.ndarray:
        if policy not in POLICIES:
            raise EcgkerasError(f"unknown threshold policy {policy!r}: choose one of {', '.join(POLICIES)}")
        return np.asarray(self.record["thresholds"][policy], dtype=float)

    @property
    def standardizer(self) -> Standardizer:
        return Standardizer.from_dict(self.record["standardizer"])

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        """classes, {val,test}_ecg_ids, {val,test}_true, {val,test}_prob."""
        path = self.run_dir / PREDICTIONS_FILE
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # numpy: "damaged"
            raise EcgkerasError(f"cannot read {path} ({type(exc).__name__}): the file is damaged; "
                                "rerun this run") from None

    def external_evaluations(self) -> dict[str, dict[str, Any]]:
        """Dataset folder name -> the run's external validation on it (`ecgkeras.runs.external`), if any."""
        found = {}
        for path in sorted((self.run_dir / EXTERNAL_DIR).glob("*.json")):
            try:
                found[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise EcgkerasError(f"cannot read {path} ({type(exc).__name__}): delete it and rerun "
                                    "`ecgkeras evaluate`") from None
        return found

    @cached_property
    def history(self) -> pd.DataFrame:
        """One row per epoch (`loss`, `val_auprc`, ...), or a one-line error if the file is damaged."""
        path = self.run_dir / HISTORY_FILE
        try:
            history = pd.read_csv(path)
        except (OSError, ValueError) as exc:  # pandas: EmptyDataError, ParserError; UnicodeDecodeError
            raise EcgkerasError(f"cannot read {path} ({type(exc).__name__}): the file is damaged; "
                                "rerun this run") from None
        if history.empty or "loss" not in history:
            raise EcgkerasError(f"{path} holds no epoch with a loss: the file is damaged; rerun this run")
        return history

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE

    def load_model(self):
        """The trained keras.Model (uncompiled), or a one-line error if the file is damaged."""
        from importlib import import_module

        import keras

        for module in ("ecgkeras.models.builders", "ecgkeras.training.fit"):  # register the package's own
            import_module(module)  # layers and losses with Keras

        try:
            return keras.models.load_model(self.model_path, compile=False)
        except Exception as exc:  # keras reports a truncated zip as e.g. "File not found"
            raise EcgkerasError(f"cannot load {self.model_path} ({type(exc).__name__}): the file is damaged; "
                                "rerun this run") from None

    def _lookup(self, section: str, split: str, policy: str) -> Any:
        if split not in SPLITS:
            raise EcgkerasError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        if policy not in POLICIES:
            raise EcgkerasError(f"unknown threshold policy {policy!r}: choose one of {', '.join(POLICIES)}")
        return self.record[section][split][policy]


def is_complete(run_dir: str | Path) -> bool:
    """Whether `run_dir` is a complete run: its record, predictions and model read back (`RunRecord.load`)."""
    try:
        RunRecord.load(run_dir)
    except EcgkerasError:
        return False
    return True


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a complete run folder (see `RunRecord.load`)."""
    return RunRecord.load(run_dir)


def find_runs(study_dir: str | Path) -> list[RunRecord]:
    """Every run folder under `study_dir` (a folder holding a record), sorted by path, each complete.

    A run folder that does not read back (`RunRecord.load`) is a one-line error rather than left out:
    results aggregated without it would silently change.
    """
    runs = []
    study_dir = Path(study_dir)
    for path in sorted(study_dir.rglob(RECORD_FILE)):
        if path.parent.name.startswith("."):  # staging or previous folders of runs being replaced
            continue
        if any((folder / APART_MARKER).exists() for folder in path.parents[1:]
               if folder != study_dir and folder.is_relative_to(study_dir)):  # e.g. tuning trials
            continue
        try:
            runs.append(RunRecord.load(path.parent))
        except EcgkerasError as exc:
            raise EcgkerasError(f"{exc}; `ecgkeras study` with the same options retrains it, or move "
                                f"{path.parent} out of {study_dir} to leave it out") from None
    return runs


# --------------------------------------------------------------------------- staging


def _beside(run_dir: Path, role: str) -> Path:
    return run_dir.with_name(f".{run_dir.name}.{role}")


def discard_staging(run_dir: Path) -> None:
    """Remove what a process killed while training `run_dir` left in its staging folder (call it only
    while nobody holds the run's lock); the run folder itself is left as it is."""
    shutil.rmtree(_beside(run_dir, "staging"), ignore_errors=True)


def _run_beside(folder: Path) -> Path:
    """The run folder whose staging or previous folder `folder` is (inverse of `_beside`)."""
    return folder.with_name(folder.name[1:].rsplit(".", 1)[0])


def _finish_replacement(run_dir: Path) -> None:
    """Finish replacing `run_dir` by a new run, also after an interruption: nothing else is lost.

    Files of the previous run folder that the new one lacks (the executed notebook, a user's
    notes) move into it; only the previous run's own files are removed. Interrupted between
    the two renames, this brings the previous complete run back.
    """
    previous = _beside(run_dir, "previous")
    if not previous.is_dir():
        return
    run_dir.mkdir(exist_ok=True)
    replaced = is_complete(run_dir)
    for path in previous.iterdir():
        if not (run_dir / path.name).exists() and not (replaced and path.name in RUN_FILES):
            os.replace(path, run_dir / path.name)
    shutil.rmtree(previous)


@contextlib.contextmanager
def staged_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """A fresh staging folder beside `run_dir` that replaces it when the block succeeds.

    On an exception `run_dir` is left as it was and the staging folder is removed. Files
    written into the old `run_dir` while staging (e.g. the executed notebook) are kept.
    """
    run_dir = Path(run_dir)
    staging = _beside(run_dir, "staging")
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _finish_replacement(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise EcgkerasError(f"cannot write the run folder {run_dir} ({exc.strerror}): choose a writable "
                            "output folder") from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if run_dir.exists():
        previous = _beside(run_dir, "previous")
        os.replace(run_dir, previous)
        os.replace(staging, run_dir)
        _finish_replacement(run_dir)
    else:
        os.replace(staging, run_dir)


# --------------------------------------------------------------------------- one run, step by step


@dataclass
class Evaluation:
    """Probabilities, thresholds and metrics of one trained model on validation and test."""

    val_prob: np.ndarray
    test_prob: np.ndarray
    thresholds: dict[str, np.ndarray]
    inference_ms_per_ecg: float
    metrics: dict[str, dict[str, dict[str, Any]]]
    per_class: dict[str, dict[str, list[dict]]]
    bootstrap_seconds: float = 0.0


def write_record(out_dir: Path, config: RunConfig, data: PTBXL, splits: dict[str, Part], model,
                 history: pd.DataFrame, evaluation: Evaluation, standardizer: Standardizer,
                 started: datetime, stages: dict[str, float | None] | None = None,
                 parent: dict[str, Any] | None = None) -> None:
    """Write the predictions, then the record (last: its presence marks a complete run); `stages` are the
    run's fixed costs in seconds (`ecgkeras.runs.experiment.run_experiment`), kept under timings; `parent`
    names the run a fine-tuned run started from (`RunRecord.parent`)."""
    val, test = splits["val"], splits["test"]

    def save_predictions(handle) -> None:
        np.savez_compressed(handle, classes=np.asarray(data.classes),
                            val_ecg_ids=val.ecg_ids, val_true=val.Y, val_prob=evaluation.val_prob,
                            test_ecg_ids=test.ecg_ids, test_true=test.Y, test_prob=evaluation.test_prob)

    atomic_write(out_dir / PREDICTIONS_FILE, save_predictions)
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
        # host, pid, executor, CUDA_VISIBLE_DEVICES, SLURM job, devices; the dtype policy and the CPU's features
        "execution": {**execution_context(devices=True), "precision": model.dtype_policy.name,
                      "cpu_model": cpu_model(), "cpu_features": cpu_features()},
        "classes": data.classes,
        "data": {**{f"n_{name}": len(part.X) for name, part in splits.items()},
                 "n_dropped": data.n_dropped, "input_shape": list(model.input_shape[1:]),
                 "split_folds": {name: list(folds) for name, folds in data.split_folds.items()},
                 "provenance": data_provenance(data.data_dir)},
        "n_parameters": int(model.count_params()),
        "timings": {"seconds_per_epoch": float(np.median(epoch_seconds[1:] if len(epoch_seconds) > 1
                                                         else epoch_seconds)),
                    "first_epoch_seconds": float(epoch_seconds[0]),
                    "training_seconds": float(epoch_seconds.sum()),
                    "inference_ms_per_ecg": evaluation.inference_ms_per_ecg,
                    "bootstrap_seconds": evaluation.bootstrap_seconds, **(stages or {})},
        "convergence": convergence(history, config.training),
        "standardizer": standardizer.to_dict(),
        "thresholds": {policy: values.tolist() for policy, values in evaluation.thresholds.items()},
        "metrics": evaluation.metrics,
        "per_class": evaluation.per_class,
        **({"parent": parent} if parent else {}),
    }
    atomic_write_text(out_dir / RECORD_FILE, json.dumps(record, indent=2))


