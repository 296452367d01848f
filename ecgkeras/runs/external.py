"""External validation: a trained run scored on another labelled dataset (a folder of Challenge-format records,
or another PTB-XL copy) with the test fold's metrics, bootstrap intervals and per-class tables, over the
classes both share, at the thresholds the run tuned on its own validation fold (never on the external data)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ecgkeras.data.ptbxl import PTBXL
from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import all_metrics, bootstrap_intervals, per_class_table
from ecgkeras.files import atomic_write_text
from ecgkeras.runs.config import POLICIES
from ecgkeras.runs.inference import model_window, windows_note
from ecgkeras.runs.prepare import load_records
from ecgkeras.runs.record import EXTERNAL_DIR, RunRecord
from ecgkeras.training import predict_probabilities

ALL_FOLDS = tuple(range(1, 11))  # an external dataset is scored whole


def load_external(run: RunRecord, data_dir: str | Path, cache_dir: str | Path | None = None,
                  progress: bool = True) -> PTBXL:
    """Every record of `data_dir` at the run's rate and label level (Challenge format, or PTB-XL's layout)."""
    return load_records(data_dir, run.config.sampling_rate, run.config.label_level, (ALL_FOLDS, (), ()), cache_dir,
                        progress)


def input_conversions(run: RunRecord, data: PTBXL) -> dict[str, Any]:
    """What was done to the external records to reach the run's input (JSON-ready)."""
    rates = Counter(data.meta["fs"]) if "fs" in data.meta else Counter({float(data.sampling_rate): len(data.meta)})
    conversions: dict[str, Any] = {"source_rates": {f"{rate:g} Hz": count for rate, count in sorted(rates.items())},
                                   "sampling_rate": data.sampling_rate, "windows": windows_note(run, data.X.shape[1])}
    if set(rates) != {float(data.sampling_rate)}:
        conversions["resampling"] = f"to {data.sampling_rate} Hz with scipy.signal.resample_poly"
    if duration := getattr(data, "duration", None):  # Challenge format (ecgkeras.data.challenge)
        conversions["leads"] = "matched by name (any spelling and order), in mV"
        conversions["duration"] = f"first {duration:g} s of each record"
    return conversions


def evaluate_external(run_dir: str | Path, data_dir: str | Path, cache_dir: str | Path | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Score the run on every record of `data_dir`; returns the evaluation (JSON-ready, see README)."""
    run = RunRecord.load(run_dir)
    data = load_external(run, data_dir, cache_dir, progress)
    shared = [name for name in run.classes if name in data.classes]
    if not shared:
        raise EcgkerasError(f"{data_dir} shares no class with {run.run_dir} (its classes: {', '.join(data.classes)}; "
                            f"the run's: {', '.join(run.classes)})")
    window = model_window(run)
    if data.X.shape[1] < window:
        raise EcgkerasError(f"the records of {data_dir} have {data.X.shape[1]} samples at {data.sampling_rate} Hz, the "
                            f"model of {run.run_dir} reads windows of {window}")
    config = run.config
    probs = predict_probabilities(run.load_model(), data.X, crop_length=window,
                                  window_stride=config.training.window_stride, standardizer=run.standardizer)
    run_index = [run.classes.index(name) for name in shared]
    y_true = data.Y[:, [data.classes.index(name) for name in shared]]
    y_prob = probs[:, run_index]
    thresholds = {policy: run.thresholds(policy)[run_index] for policy in POLICIES}
    metrics = {policy: all_metrics(y_true, y_prob, values) for policy, values in thresholds.items()}
    intervals = bootstrap_intervals(y_true, y_prob, thresholds, config.bootstrap_resamples, seed=config.seed)
    for policy in POLICIES:
        metrics[policy]["ci95"] = intervals.get(policy, {})
    per_class = {policy: per_class_table(y_true, y_prob, values, shared).reset_index().to_dict("records")
                 for policy, values in thresholds.items()}
    return {"run_dir": str(run.run_dir), "data_dir": str(Path(data_dir).resolve()), "n_records": int(len(y_true)),
            "classes": shared, "classes_not_in_data": [name for name in run.classes if name not in shared],
            "thresholds": "tuned on the run's own validation fold", "metrics": metrics, "per_class": per_class,
            "conversions": input_conversions(run, data),
            "excluded": {reason: len(names) for reason, names in getattr(data, "excluded", {}).items()},
            "unmapped_codes": getattr(data, "unmapped", {}),
            "predictions": {"ecg_ids": [str(ecg_id) for ecg_id in data.ecg_ids], "prob": y_prob.tolist(),
                            "true": y_true.tolist()}}


def per_class_frame(evaluation: dict[str, Any], policy: str) -> pd.DataFrame:
    """The per-class table of one threshold policy, indexed by class."""
    return pd.DataFrame(evaluation["per_class"][policy]).set_index("class")


def external_path(run_dir: str | Path, data_dir: str | Path) -> Path:
    """Where `ecgkeras evaluate` writes its result by default: RUN_DIR/external/<data folder name>.json."""
    return Path(run_dir) / EXTERNAL_DIR / f"{Path(data_dir).resolve().name}.json"


def check_external_out(out: str | Path) -> None:
    """Before evaluating: the evaluation goes to a .json file, never onto a folder or another kind of file."""
    if Path(out).is_dir() or Path(out).suffix != ".json":
        raise EcgkerasError(f"--out {out}: give a .json file (not a folder) to write the evaluation to")


def write_external(evaluation: dict[str, Any], out: str | Path) -> Path:
    """Write the evaluation as JSON (atomically)."""
    out = Path(out)
    check_external_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(evaluation, indent=2))
    return out
