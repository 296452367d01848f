"""A trained run applied to one ECG (a WFDB record): checked against the run, standardized, predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.config import TUNED
from ecgkeras.runs.record import RunRecord
from ecgkeras.training import predict_probabilities


def ecg_input(run: RunRecord, record: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One WFDB record checked against a run: its signal in mV (time, 12) and the model input (1, time, 12).

    The one place that turns a record into what the run's model reads (standardization included).
    """
    from ecgkeras.data.ptbxl import read_ecg, record_name

    config = run.config
    if Path(record).is_dir():
        example = next(Path(record).rglob("*.hea"), None)
        raise EcgkerasError(f"record {record} is a folder: give one WFDB record in it"
                            + (f", such as {record_name(example)}" if example else " (it holds no .hea header)"))
    signal = read_ecg(record_name(record), config.sampling_rate)
    expected = run.data["input_shape"]
    crop = config.training.crop_length
    if not crop and list(signal.shape) != expected:
        raise EcgkerasError(f"record {record} has shape {signal.shape}, the model of {run.run_dir} expects "
                            f"{tuple(expected)}")
    if crop and len(signal) < crop:
        raise EcgkerasError(f"record {record} has {len(signal)} samples ({len(signal) / config.sampling_rate:g} s), "
                            f"the model of {run.run_dir} reads windows of {crop} samples: give a record of at "
                            f"least {crop} samples at {config.sampling_rate} Hz")
    return signal, run.standardizer.transform(signal[np.newaxis])


def predict_ecg(run_dir: str | Path, record: str | Path) -> pd.DataFrame:
    """Probabilities of one WFDB record under a run's model, standardization and tuned thresholds.

    Rows are sorted by probability; `predicted` marks probabilities at or above the threshold.
    """
    run = RunRecord.load(run_dir)
    config = run.config
    _, X = ecg_input(run, record)
    probs = predict_probabilities(run.load_model(), X, crop_length=config.training.crop_length,
                                  window_stride=config.training.window_stride)[0]
    thresholds = run.thresholds(TUNED)
    table = pd.DataFrame({"class": run.classes, "probability": probs, "threshold": thresholds,
                          "predicted": probs >= thresholds})
    return table.sort_values("probability", ascending=False, ignore_index=True)
