"""One run end to end: load and check the data, train, evaluate on validation and test (thresholds
tuned on validation only), write the record through `ecgkeras.runs.record`."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgkeras import models, training  # their Keras halves load at the first model: bad data fails before TensorFlow
from ecgkeras.data.ptbxl import PTBXL, Part, Standardizer
from ecgkeras.evaluation import all_metrics, bootstrap_intervals, per_class_table, tune_thresholds
from ecgkeras.runs.config import FIXED, TUNED, RunConfig
from ecgkeras.runs.prepare import load_dataset, prepare_splits
from ecgkeras.runs.provenance import process_age_seconds
from ecgkeras.runs.record import Evaluation, RunRecord, staged_run_dir, write_record


def train_run(config: RunConfig, data: PTBXL, train: Part, val: Part, standardizer: Standardizer, out_dir: Path,
              callbacks: Sequence = ()):
    """Build the architecture with the run's seed and train it (with extra Keras `callbacks`); returns
    (model, history)."""
    input_length = config.training.crop_length or train.X.shape[1]
    training.set_seed(config.seed, config.training.deterministic)  # before building: initial weights are random too
    with training.precision_policy(config.training.precision):  # the layers keep the policy they were built with
        model = models.build_model(config.architecture, (input_length, train.X.shape[2]), len(data.classes),
                                   config.model, sampling_rate=config.sampling_rate)
    history = training.train_model(model, train, val, out_dir, config.training, seed=config.seed,
                                   standardizer=standardizer, callbacks=callbacks)
    return model, history


def evaluate_run(config: RunConfig, model, val: Part, test: Part, standardizer: Standardizer,
                 classes: list[str]) -> Evaluation:
    """Predict validation and test, tune thresholds on validation only, score both, bootstrap test."""
    crop = {"crop_length": config.training.crop_length, "window_stride": config.training.window_stride,
            "standardizer": standardizer}
    val_prob = training.predict_probabilities(model, val.X, **crop)  # traces predict: the test timing is warm
    started = time.perf_counter()
    test_prob = training.predict_probabilities(model, test.X, **crop)
    inference_ms_per_ecg = (time.perf_counter() - started) * 1000 / len(test.X)
    thresholds = {TUNED: tune_thresholds(val.Y, val_prob), FIXED: np.full(len(classes), 0.5)}
    scored = {"val": (val.Y, val_prob), "test": (test.Y, test_prob)}
    metrics = {split: {policy: all_metrics(y_true, y_prob, values) for policy, values in thresholds.items()}
               for split, (y_true, y_prob) in scored.items()}
    per_class = {split: {policy: per_class_table(y_true, y_prob, values, classes).reset_index().to_dict("records")
                         for policy, values in thresholds.items()}
                 for split, (y_true, y_prob) in scored.items()}
    started = time.perf_counter()
    intervals = bootstrap_intervals(test.Y, test_prob, thresholds, config.bootstrap_resamples, seed=config.seed)
    for policy in thresholds:
        metrics["test"][policy]["ci95"] = intervals.get(policy, {})
    return Evaluation(val_prob, test_prob, thresholds, inference_ms_per_ecg, metrics, per_class,
                      time.perf_counter() - started)


def run_experiment(config: RunConfig, run_dir: str | Path, dataset: PTBXL | None = None,
                   progress: bool = True, callbacks: Sequence = ()) -> RunRecord:
    """Load data, train, evaluate on validation and test, and write the run record into `run_dir`.

    Configuration and data are checked before anything is written; the run trains in a staging
    folder that replaces `run_dir` only once complete. Thresholds are tuned on the validation
    fold only. Pass `dataset` to reuse a loaded PTB-XL, `callbacks` to add Keras callbacks to training
    (e.g. the tuning's pruning).
    """
    stages = {"process_seconds": process_age_seconds()}
    clock = time.perf_counter()
    data = dataset or load_dataset(config, progress)
    train, val, test, standardizer = prepare_splits(config, data)
    stages["data_seconds"], clock = time.perf_counter() - clock, time.perf_counter()
    started = datetime.now(timezone.utc)
    with staged_run_dir(run_dir) as staging:
        model, history = train_run(config, data, train, val, standardizer, staging, callbacks)
        stages["fit_seconds"], clock = time.perf_counter() - clock, time.perf_counter()
        evaluation = evaluate_run(config, model, val, test, standardizer, data.classes)
        stages["evaluation_seconds"] = time.perf_counter() - clock
        write_record(staging, config, data, {"train": train, "val": val, "test": test}, model, history,
                     evaluation, standardizer, started, stages)
    return RunRecord.load(run_dir)
