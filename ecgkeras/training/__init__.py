"""One training procedure for every architecture: its parameters and files (`config`; no TensorFlow) and the
Keras side (`fit`: compile, tf.data input, standard callbacks, precision policies, prediction).

Names are imported on first use, so reading training parameters needs no TensorFlow.
"""

from ecgkeras.lazy import lazy_exports

_HOMES = {
    "config": ("TrainingConfig", "LOSSES", "PRECISIONS", "MONITOR", "MODEL_FILE", "HISTORY_FILE", "convergence",
               "window_starts", "cpu_model", "cpu_features"),
    "fit": ("train_model", "compile_model", "make_dataset", "make_loss", "set_seed", "standard_callbacks",
            "warmup_schedule", "predict_probabilities", "precision_policy", "resolve_precision",
            "gpu_compute_capabilities", "WeightedBinaryCrossentropy", "EpochTimer"),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
