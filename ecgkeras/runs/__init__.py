"""One run: its configuration (`config`), its data checked and split (`prepare`), the experiment that
trains and evaluates it (`experiment`), its record on disk (`record`, the only reader and writer of a
run folder), where it came from (`provenance`) and predictions of new ECGs with it (`inference`).

Names are imported on first use, so reading run records needs no TensorFlow.
"""

from ecgkeras.lazy import lazy_exports

_HOMES = {
    "config": ("RunConfig", "POLICIES", "TUNED", "FIXED", "SPLITS", "PER_RUN"),
    "record": ("RunRecord", "load_run", "is_complete", "find_runs", "RECORD_FILE", "PREDICTIONS_FILE",
               "RECORD_FORMAT", "MODEL_FILE", "HISTORY_FILE"),
    "experiment": ("run_experiment",),
    "prepare": ("load_dataset", "checked_parts", "prepare_splits"),
    "provenance": ("library_versions", "data_provenance", "execution_context"),
    "inference": ("ecg_input", "predict_ecg"),
    "external": ("evaluate_external",),
    "finetune": ("finetune_experiment",),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
