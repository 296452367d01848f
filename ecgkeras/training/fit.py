"""One training procedure for every architecture: compile, tf.data input, standard callbacks.

`train_model` compiles with Adam and a binary cross-entropy variant, feeds batches read from the
memory-mapped signals and standardized on the fly through `tf.data`, and fits with early stopping
on validation macro-AUPRC (best weights restored), learning-rate reduction on plateau, stop on NaN,
a best-model checkpoint and a CSV history.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from ecgkeras.data.ptbxl import Part, Signals, Standardizer
from ecgkeras.errors import EcgkerasError
from ecgkeras.training.config import (HISTORY_FILE, MODEL_FILE, MONITOR, TENSOR_CORES, TrainingConfig,
                                      window_starts)


@keras.saving.register_keras_serializable(package="ecgkeras")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with a per-class weight on the positive term."""

    def __init__(self, pos_weight, name: str = "weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in pos_weight]

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon())
        weight = ops.convert_to_tensor(self.pos_weight, dtype=y_pred.dtype)
        loss = -(weight * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))
        return ops.mean(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "pos_weight": self.pos_weight}


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend; optionally force deterministic TensorFlow ops."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def gpu_compute_capabilities() -> list[list[int]]:
    """The compute capability of each GPU TensorFlow sees (empty on a CPU)."""
    return [list(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")]


def resolve_precision(precision: str) -> str:
    """The dtype policy `precision` stands for on this machine: `auto` is mixed_float16 when every visible GPU
    has tensor cores and float32 otherwise (on CPUs mixed_bfloat16 was no faster: benchmarks/RESULTS.md)."""
    if precision != "auto":
        return precision
    capabilities = gpu_compute_capabilities()
    return "mixed_float16" if capabilities and all(tuple(c) >= TENSOR_CORES for c in capabilities) else "float32"


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[str]:
    """Build models under the resolved policy of `precision` (yielded); the previous global policy comes back."""
    previous = keras.config.dtype_policy()
    resolved = resolve_precision(precision)
    keras.config.set_dtype_policy(resolved)
    try:
        yield resolved
    finally:
        keras.config.set_dtype_policy(previous)


def make_loss(config: TrainingConfig, Y_train: np.ndarray) -> keras.losses.Loss:
    """The configured loss; class weights come from the training labels."""
    if config.loss == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=config.focal_gamma)
    if config.loss == "weighted_bce":
        positives = Y_train.sum(axis=0).astype(float)
        pos_weight = np.clip((len(Y_train) - positives) / np.maximum(positives, 1), 1, config.max_pos_weight)
        return WeightedBinaryCrossentropy(pos_weight)
    return keras.losses.BinaryCrossentropy()


def compile_model(model: keras.Model, config: TrainingConfig, Y_train: np.ndarray) -> keras.Model:
    """Compile with Adam, the configured loss and Keras's (interpolated) multi-label AUPRC/AUROC."""
    n_classes = Y_train.shape[1]
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.global_clipnorm),
        loss=make_loss(config, Y_train),
        metrics=[keras.metrics.AUC(curve="PR", multi_label=True, num_labels=n_classes, name="auprc"),
                 keras.metrics.AUC(curve="ROC", multi_label=True, num_labels=n_classes, name="auroc")],
        jit_compile=config.jit_compile,
    )
    # Keras (TensorFlow, no distribution strategy) would create Adam's slots inside the first trace of the
    # training step, and tf.function then traces it a second time; built here, the first epoch takes ~40% less
    # time with the same results (benchmarks/RESULTS.md).
    model.optimizer.build(model.trainable_variables)
    return model


def make_dataset(X: Signals | np.ndarray, Y: np.ndarray | None, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, crop_length: int | None = None,
                 standardizer: Standardizer | None = None) -> tf.data.Dataset:
    """Batches of `X` (and `Y`, if given), each read and standardized only when the pipeline needs it.

    `X` is usually a memory-mapped `Signals` view; only a few batches are in memory at a time. With
    `shuffle`, the order is reshuffled each epoch (seeded, the same permutations as shuffling the
    records themselves) and crops start at random (seeded); without it, crops are centred (validation).
    """
    signals = X if isinstance(X, Signals) else Signals(np.asarray(X))
    n_records, length, n_leads = signals.shape
    labels = None if Y is None else np.asarray(Y, dtype=np.float32)
    crop = crop_length if crop_length and crop_length < length else None
    crop_starts = np.random.default_rng(seed)

    def read(positions: np.ndarray) -> tuple[np.ndarray, ...]:
        batch = signals.read(positions)
        batch = standardizer.transform(batch) if standardizer else batch.astype(np.float32, copy=False)
        if crop:
            starts = (crop_starts.integers(0, length - crop + 1, len(batch)) if shuffle
                      else np.full(len(batch), (length - crop) // 2))
            batch = batch[np.arange(len(batch))[:, None], starts[:, None] + np.arange(crop)]
        return (batch,) if labels is None else (batch, labels[positions])

    def load(positions: tf.Tensor):
        types = (tf.float32,) if labels is None else (tf.float32, tf.float32)
        tensors = tf.numpy_function(read, [positions], types)
        tensors[0].set_shape((None, crop or length, n_leads))
        if labels is None:
            return tensors[0]
        tensors[1].set_shape((None, labels.shape[1]))
        return tensors[0], tensors[1]

    dataset = tf.data.Dataset.range(n_records)
    if shuffle:
        dataset = dataset.shuffle(n_records, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(load).prefetch(tf.data.AUTOTUNE)


class EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall time (training and validation) to the logs as `epoch_seconds`."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start


def warmup_schedule(config: TrainingConfig):
    """Per-epoch learning rate: linear warm-up, then whatever the optimizer has (so plateau reduction works)."""
    def schedule(epoch: int, learning_rate: float) -> float:
        if epoch < config.warmup_epochs:
            return config.learning_rate * (epoch + 1) / (config.warmup_epochs + 1)
        return config.learning_rate if epoch == config.warmup_epochs else learning_rate
    return schedule


def standard_callbacks(config: TrainingConfig, out_dir: Path) -> list[keras.callbacks.Callback]:
    """Timer, (warm-up,) early stopping, LR reduction, NaN stop, best checkpoint and CSV history (in that order)."""
    warmup = [keras.callbacks.LearningRateScheduler(warmup_schedule(config))] if config.warmup_epochs else []
    return [
        EpochTimer(), *warmup,
        keras.callbacks.EarlyStopping(MONITOR, mode="max", patience=config.patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ReduceLROnPlateau(MONITOR, mode="max", factor=config.lr_factor,
                                          patience=config.lr_patience, min_lr=config.min_learning_rate,
                                          verbose=1),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(out_dir / MODEL_FILE, monitor=MONITOR, mode="max",
                                        save_best_only=True),
        keras.callbacks.CSVLogger(out_dir / HISTORY_FILE),
    ]


def train_model(model: keras.Model, train: Part, val: Part, out_dir: str | Path,
                config: TrainingConfig, seed: int = 0, standardizer: Standardizer | None = None,
                callbacks: Sequence[keras.callbacks.Callback] = ()) -> pd.DataFrame:
    """Compile and fit `model`; returns the history (one row per epoch).

    Batches are read from `train.X` and `val.X` as needed and standardized with `standardizer`
    (None: the signals are used as they are). The best model (by validation macro-AUPRC) is restored
    in memory and saved as `out_dir/MODEL_FILE`; the history is written to `out_dir/HISTORY_FILE`.
    `seed` fixes the shuffling and crops; call `set_seed` before `build_model` to fix the initial
    weights too. `callbacks` run after the standard ones.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed, config.deterministic)
    compile_model(model, config, train.Y)
    batches = {"crop_length": config.crop_length, "standardizer": standardizer}
    history = model.fit(
        make_dataset(train.X, train.Y, config.batch_size, shuffle=True, seed=seed, **batches),
        validation_data=make_dataset(val.X, val.Y, config.batch_size, **batches),
        epochs=config.epochs, callbacks=[*standard_callbacks(config, out_dir), *callbacks], verbose=config.verbose,
    )
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    if not np.isfinite(frame["loss"]).all():
        raise EcgkerasError("training diverged (NaN loss): lower learning_rate or check the input data")
    return frame


def predict_probabilities(model: keras.Model, X: Signals | np.ndarray, batch_size: int = 256,
                          crop_length: int | None = None, window_stride: int | None = None,
                          standardizer: Standardizer | None = None) -> np.ndarray:
    """Class probabilities of raw signals `X`, read and standardized batch by batch.

    A model trained on crops sees every sliding window, averaged per record; windows are predicted
    in batches of `batch_size`, as if all windows of all records were stacked in one array.
    """
    records = make_dataset(X, None, batch_size, standardizer=standardizer)
    length, n_leads = X.shape[1:]
    if not crop_length or crop_length >= length:
        return model.predict(records, verbose=0)
    starts = window_starts(length, crop_length, window_stride)

    def windows(batch: tf.Tensor) -> tf.Tensor:  # records, windows, time, leads -> one window per row
        stacked = tf.stack([batch[:, s:s + crop_length] for s in starts], axis=1)
        return tf.reshape(stacked, (-1, crop_length, n_leads))

    n_batches = -(-len(X) * len(starts) // batch_size)
    windowed = records.map(windows).unbatch().batch(batch_size)
    probs = model.predict(windowed.apply(tf.data.experimental.assert_cardinality(n_batches)), verbose=0)
    return probs.reshape(len(X), len(starts), -1).mean(axis=1)
