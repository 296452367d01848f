"""One training procedure for every architecture: compile, tf.data input, standard callbacks.

`train_model` compiles with Adam and a binary cross-entropy variant, feeds batches read from the
memory-mapped signals and standardized on the fly through `tf.data`, and fits with early stopping
on validation macro-AUPRC (best weights restored), learning-rate reduction on plateau, stop on NaN,
a best-model checkpoint and a CSV history.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from ecgkeras.data.ptbxl import Part, Signals, Standardizer
from ecgkeras.errors import EcgkerasError
from ecgkeras.schema import Schema, Search, parameter

LOSSES: tuple[str, ...] = ("bce", "weighted_bce", "focal")
PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# The CPU features that decide bfloat16 speed, recorded with every run and benchmark.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
TENSOR_CORES = (7, 0)  # the first NVIDIA compute capability with float16 tensor cores (Volta)
MONITOR = "val_auprc"  # validation macro-AUPRC: early stopping, LR schedule and checkpoint
MODEL_FILE = "model.keras"  # the best model by MONITOR
HISTORY_FILE = "history.csv"  # one row per epoch


@dataclass
class TrainingConfig(Schema):
    """Training hyperparameters (defaults for PTB-XL at 100 Hz on a CPU or one GPU)."""

    kind: ClassVar[str] = "training parameter"

    epochs: int = parameter(30, "most epochs (early stopping usually ends sooner)", minimum=1)
    batch_size: int = parameter(64, "records per batch", minimum=1, search=Search(choices=(16, 32, 64, 128)))
    learning_rate: float = parameter(1e-3, "Adam's initial learning rate", minimum=0, above_minimum=True,
                                     search=Search(1e-4, 3e-3, log=True))
    loss: str = parameter("bce", "bce, weighted_bce (positives weighted by negatives/positives) or focal",
                          choices=LOSSES, search=Search(choices=LOSSES))
    focal_gamma: float = parameter(2.0, "focusing parameter of the focal loss", minimum=0)
    max_pos_weight: float = parameter(50.0, "cap on the positive-class weight of weighted_bce", minimum=1)
    crop_length: int | None = parameter(None, "random crops of this many samples while training; "
                                        "None: full records", minimum=1)
    window_stride: int | None = parameter(None, "sliding-window stride at evaluation; None: crop_length // 2",
                                          minimum=1)
    patience: int = parameter(8, f"early stopping: epochs without {MONITOR} improvement", minimum=0,
                              search=Search(4, 12))
    lr_patience: int = parameter(3, "epochs without improvement before the learning rate is reduced", minimum=0)
    lr_factor: float = parameter(0.5, "learning-rate reduction factor", minimum=0, maximum=1,
                                 above_minimum=True, below_maximum=True)
    min_learning_rate: float = parameter(1e-5, "floor of the reduced learning rate", minimum=0)
    global_clipnorm: float | None = parameter(None, "clip the gradient's global norm to this (Adam's "
                                              "global_clipnorm); None: no clipping", minimum=0, above_minimum=True)
    warmup_epochs: int = parameter(0, "the learning rate rises linearly to learning_rate over this many epochs",
                                   minimum=0)
    jit_compile: bool = parameter(False, "XLA; needs deterministic=False (Keras disables XLA under op "
                                  "determinism) and measured slower on CPU")
    deterministic: bool = parameter(True, "deterministic TensorFlow ops: the same seed gives the same metrics")
    precision: str = parameter("auto", "Keras dtype policy of the layers (the output layer, loss and metrics stay "
                               "float32); auto: mixed_float16 on GPUs with tensor cores, float32 on CPUs "
                               "(bfloat16 measured no faster there, benchmarks/RESULTS.md)", choices=PRECISIONS)
    verbose: int = parameter(2, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch",
                             choices=(0, 1, 2), affects_results=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.jit_compile and self.deterministic:
            raise EcgkerasError("jit_compile=True has no effect with deterministic=True (Keras disables XLA "
                                "under op determinism): also pass deterministic=False")


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


def _cpuinfo(field: str) -> str:
    """The first `field` line of Linux' /proc/cpuinfo ('' elsewhere)."""
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(field))
    except (OSError, StopIteration):
        return ""
    return line.split(":", 1)[1].strip()


def cpu_model() -> str:
    """The CPU's model name, e.g. 'AMD EPYC' ('' where the system does not say)."""
    return _cpuinfo("model name")


def cpu_features() -> list[str]:
    """Which of CPU_FEATURES this CPU has (empty where the system does not say)."""
    present = set(_cpuinfo("flags").split())
    return [name for name in CPU_FEATURES if name in present]


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


def window_starts(length: int, crop_length: int, window_stride: int | None = None) -> list[int]:
    """Start of each evaluation window (default stride crop_length // 2), the last one ending at `length`."""
    stride = window_stride or max(1, crop_length // 2)
    starts = list(range(0, length - crop_length + 1, stride))
    if starts[-1] != length - crop_length:
        starts.append(length - crop_length)
    return starts


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
