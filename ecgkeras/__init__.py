"""ecgkeras: hybrid CNN-RNN architectures for multi-label ECG classification on PTB-XL (Keras 3).

Data loading needs no TensorFlow; model-related names are imported on first use.
"""

from ecgkeras import heap, quiet

heap.freeze_heap_at_exit()  # every ecgkeras process (command, kernel, worker) exits seconds sooner
if quiet.is_quiet():  # a notebook kernel started by a quiet `ecgkeras` command: before anything loads TensorFlow
    quiet.install_import_hook()

from ecgkeras.data.ptbxl import PTBXL, Standardizer, load_ptbxl  # noqa: E402
from ecgkeras.errors import EcgkerasError  # noqa: E402
from ecgkeras.lazy import lazy_exports  # noqa: E402

__version__ = "0.1.0"

__getattr__, _LAZY_NAMES = lazy_exports("ecgkeras", {
    "ecgkeras.models": ("build_model", "ARCHITECTURES", "PAPER_ARCHITECTURES"),
    "ecgkeras.training": ("train_model", "TrainingConfig"),
    "ecgkeras.runs": ("RunConfig", "run_experiment", "load_run", "RunRecord"),
})

__all__ = ["PTBXL", "Standardizer", "load_ptbxl", "EcgkerasError", "__version__", *_LAZY_NAMES]
