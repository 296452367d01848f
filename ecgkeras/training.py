"""One training procedure for every architecture: compile, tf.data input, standard callbacks.

`train_model` compiles with Adam and a binary cross-entropy variant, feeds arrays through
`tf.data`, and fits with early stopping on validation macro-AUPRC (best weights restored),
learning-rate reduction on plateau, stop on NaN, a best-model checkpoint and a CSV history.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from ecgkeras.data import Part
from ecgkeras.errors import EcgkerasError

LOSSES: tuple[str, ...] = ("bce", "weighted_bce", "focal")
MONITOR = "val_auprc"


@dataclass
class TrainingConfig:
    """Training hyperparameters (defaults for PTB-XL at 100 Hz on a CPU or one GPU)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    loss: str = "bce"  # "bce", "weighted_bce" (positives weighted by negatives/positives) or "focal"
    focal_gamma: float = 2.0
    max_pos_weight: float = 50.0
    crop_length: int | None = None  # random crops of this many samples while training
    window_stride: int | None = None  # sliding-window stride at evaluation (default crop_length // 2)
    patience: int = 8  # early stopping, epochs without val macro-AUPRC improvement
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    global_clipnorm: float | None = None  # clip the gradient's global norm to this (Adam's global_clipnorm)
    warmup_epochs: int = 0  # learning rate rises linearly to learning_rate over this many epochs
    jit_compile: bool = False  # XLA; needs deterministic=False (Keras turns XLA off under op determinism)
    deterministic: bool = True
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise EcgkerasError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise EcgkerasError(f"{name}={getattr(self, name)} must be at least 1")
        if self.jit_compile and self.deterministic:
            raise EcgkerasError("jit_compile=True has no effect with deterministic=True (Keras disables XLA "
                                "under op determinism): also pass deterministic=False")
        if self.learning_rate <= 0:
            raise EcgkerasError(f"learning_rate={self.learning_rate} must be positive")
        if self.global_clipnorm is not None and self.global_clipnorm <= 0:
            raise EcgkerasError(f"global_clipnorm={self.global_clipnorm} must be positive, or None for no clipping")
        if self.warmup_epochs < 0:
            raise EcgkerasError(f"warmup_epochs={self.warmup_epochs} must be 0 (no warm-up) or more")

    def to_dict(self) -> dict:
        return asdict(self)


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
    return model


def make_dataset(X: np.ndarray, Y: np.ndarray, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 crop_length: int | None = None) -> tf.data.Dataset:
    """Batches from arrays; with `shuffle`, reshuffled each epoch and randomly cropped if asked.

    Without `shuffle`, crops are centred (used for validation while training).
    """
    dataset = tf.data.Dataset.from_tensor_slices((X, Y.astype(np.float32)))
    if shuffle:
        dataset = dataset.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)
    if crop_length:
        if shuffle:
            shape = (crop_length, X.shape[-1])
            dataset = dataset.map(lambda x, y: (tf.image.random_crop(x, shape, seed=seed), y))
        else:
            start = (X.shape[1] - crop_length) // 2
            dataset = dataset.map(lambda x, y: (x[start:start + crop_length], y))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
        keras.callbacks.ModelCheckpoint(out_dir / "model.keras", monitor=MONITOR, mode="max",
                                        save_best_only=True),
        keras.callbacks.CSVLogger(out_dir / "history.csv"),
    ]


def train_model(model: keras.Model, train: Part, val: Part, out_dir: str | Path,
                config: TrainingConfig, seed: int = 0) -> pd.DataFrame:
    """Compile and fit `model`; returns the history (one row per epoch).

    The best model (by validation macro-AUPRC) is restored in memory and saved as
    `out_dir/model.keras`; the history is written to `out_dir/history.csv`. `seed` fixes the
    shuffling; call `set_seed` before `build_model` to fix the initial weights too.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed, config.deterministic)
    compile_model(model, config, train.Y)
    history = model.fit(
        make_dataset(train.X, train.Y, config.batch_size, shuffle=True, seed=seed,
                     crop_length=config.crop_length),
        validation_data=make_dataset(val.X, val.Y, config.batch_size, crop_length=config.crop_length),
        epochs=config.epochs, callbacks=standard_callbacks(config, out_dir), verbose=config.verbose,
    )
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    if not np.isfinite(frame["loss"]).all():
        raise EcgkerasError("training diverged (NaN loss): lower learning_rate or check the input data")
    return frame


def convergence(history: pd.DataFrame, config: TrainingConfig) -> dict:
    """Why training stopped, its best epoch, and whether it had converged.

    `stopped_by` is "nan" (a non-finite loss), "early_stopping" (validation macro-AUPRC had
    not improved for `patience` epochs) or "epoch_cap" (the `epochs` limit came first). A run
    converged when early stopping fired; one that reached the cap had its best epoch within
    `patience` epochs of the last, i.e. it was still improving ("unconverged").
    """
    epochs_run = len(history)
    scores = history[MONITOR].to_numpy(dtype=float) if MONITOR in history else np.full(epochs_run, np.nan)
    best_epoch = int(np.nanargmax(scores)) + 1 if np.isfinite(scores).any() else None
    since_best = epochs_run - best_epoch if best_epoch else epochs_run
    if not np.isfinite(history["loss"].to_numpy(dtype=float)).all():
        stopped_by = "nan"
    elif since_best >= config.patience:
        stopped_by = "early_stopping"
    else:
        stopped_by = "epoch_cap" if epochs_run >= config.epochs else "interrupted"
    return {"stopped_by": stopped_by, "converged": stopped_by == "early_stopping", "epochs_run": epochs_run,
            "epoch_cap": config.epochs, "best_epoch": best_epoch, "epochs_since_best": since_best,
            "patience": config.patience}


def predict_probabilities(model: keras.Model, X: np.ndarray, batch_size: int = 256,
                          crop_length: int | None = None, window_stride: int | None = None) -> np.ndarray:
    """Class probabilities; a model trained on crops sees every sliding window, averaged per record."""
    if not crop_length or crop_length >= X.shape[1]:
        return model.predict(X, batch_size=batch_size, verbose=0)
    stride = window_stride or max(1, crop_length // 2)
    starts = list(range(0, X.shape[1] - crop_length + 1, stride))
    if starts[-1] != X.shape[1] - crop_length:
        starts.append(X.shape[1] - crop_length)
    windows = np.stack([X[:, s:s + crop_length] for s in starts], axis=1)  # records, windows, time, leads
    probs = model.predict(windows.reshape(-1, crop_length, X.shape[-1]), batch_size=batch_size, verbose=0)
    return probs.reshape(len(X), len(starts), -1).mean(axis=1)
