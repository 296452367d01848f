"""Training parameters (`TrainingConfig`), the files a training writes, how a history is judged
(`convergence`), evaluation windows and the CPU facts behind the precision policy; no TensorFlow.
The training itself is in `ecgkeras.training.fit`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

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
