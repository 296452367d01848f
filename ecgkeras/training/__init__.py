"""One training procedure for every architecture: its parameters and files (`config`; no TensorFlow) and the
Keras side (`fit`: compile, tf.data input, standard callbacks, precision policies, prediction).

Names are imported on first use, so reading training parameters needs no TensorFlow.
"""

from importlib import import_module

_HOMES = {
    "config": ("TrainingConfig", "LOSSES", "PRECISIONS", "MONITOR", "MODEL_FILE", "HISTORY_FILE", "convergence",
               "window_starts", "cpu_model", "cpu_features"),
    "fit": ("train_model", "compile_model", "make_dataset", "make_loss", "set_seed", "standard_callbacks",
            "warmup_schedule", "predict_probabilities", "precision_policy", "resolve_precision",
            "gpu_compute_capabilities", "WeightedBinaryCrossentropy", "EpochTimer"),
}
_LAZY = {name: f"ecgkeras.training.{module}" for module, names in _HOMES.items() for name in names}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecgkeras.training' has no attribute {name!r}")
