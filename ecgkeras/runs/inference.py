"""A trained run applied to one ECG from anywhere (`ecgkeras.data.records`): brought to the run's rate, leads
and units, standardized, predicted over sliding windows; the conversions are returned with the prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgkeras.data.records import ECG, read_record
from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.config import TUNED
from ecgkeras.runs.record import RunRecord
from ecgkeras.training import predict_probabilities, window_starts


def model_window(run: RunRecord) -> int:
    """Samples the run's model reads at a time: its training crop, else the records it was trained on.

    A longer record is read in sliding windows of this length (stride `window_stride`, default half a
    window) whose probabilities are averaged; a shorter one is refused (never padded).
    """
    return run.config.training.crop_length or run.data["input_shape"][0]


def windows_note(run: RunRecord, length: int) -> str:
    """How a record of `length` samples is read, for the conversions."""
    window = model_window(run)
    count = 1 if length <= window else len(window_starts(length, window, run.config.training.window_stride))
    return f"{count} window(s) of {window} samples ({window / run.config.sampling_rate:g} s), probabilities averaged"


def ecg_input(run: RunRecord, record: str | Path) -> tuple[ECG, np.ndarray]:
    """One record checked against a run: the `ECG` (signal in mV at the run's rate, conversions included)
    and the model input (1, time, 12), standardized. The one place that turns a record into model input."""
    from ecgkeras.data.ptbxl import record_name

    config = run.config
    if Path(record).is_dir():
        example = next(Path(record).rglob("*.hea"), None)
        raise EcgkerasError(f"record {record} is a folder: give one WFDB record in it"
                            + (f", such as {record_name(example)}" if example else " (it holds no .hea header)"))
    ecg = read_record(record_name(record), config.sampling_rate)
    window = model_window(run)
    if len(ecg.signal) < window:
        raise EcgkerasError(f"record {record} has {len(ecg.signal)} samples ({ecg.seconds:g} s) at "
                            f"{config.sampling_rate} Hz, the model of {run.run_dir} reads windows of {window} "
                            f"samples: give a record of at least {window} samples at {config.sampling_rate} Hz "
                            f"({window / config.sampling_rate:g} s); shorter records are not padded")
    ecg.conversions["windows"] = windows_note(run, len(ecg.signal))
    return ecg, run.standardizer.transform(ecg.signal[np.newaxis])


def predict_ecg(run_dir: str | Path, record: str | Path) -> pd.DataFrame:
    """Probabilities of one record under a run's model, standardization and tuned thresholds.

    Rows are sorted by probability; `predicted` marks probabilities at or above the threshold. The
    conversions applied to the record (`ECG.conversions`) are in `table.attrs["conversions"]`.
    """
    run = RunRecord.load(run_dir)
    ecg, X = ecg_input(run, record)
    probs = predict_probabilities(run.load_model(), X, crop_length=model_window(run),
                                  window_stride=run.config.training.window_stride)[0]
    thresholds = run.thresholds(TUNED)
    table = pd.DataFrame({"class": run.classes, "probability": probs, "threshold": thresholds,
                          "predicted": probs >= thresholds})
    table = table.sort_values("probability", ascending=False, ignore_index=True)
    table.attrs["conversions"] = ecg.conversions
    return table
