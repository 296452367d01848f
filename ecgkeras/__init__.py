"""ecgkeras: hybrid CNN-RNN architectures for multi-label ECG classification on PTB-XL (Keras 3).

Data loading needs no TensorFlow; model-related names are imported on first use.
"""

from importlib import import_module

from ecgkeras import quiet

if quiet.is_quiet():  # a notebook kernel started by a quiet `ecgkeras` command: before anything loads TensorFlow
    quiet.install_import_hook()

from ecgkeras.data.ptbxl import PTBXL, Standardizer, load_ptbxl  # noqa: E402
from ecgkeras.errors import EcgkerasError  # noqa: E402

__version__ = "0.1.0"

_LAZY = {"build_model": "ecgkeras.models", "ARCHITECTURES": "ecgkeras.models",
         "PAPER_ARCHITECTURES": "ecgkeras.models", "train_model": "ecgkeras.training",
         "TrainingConfig": "ecgkeras.training", "RunConfig": "ecgkeras.runs",
         "run_experiment": "ecgkeras.runs", "load_run": "ecgkeras.runs", "RunRecord": "ecgkeras.runs"}

__all__ = ["PTBXL", "Standardizer", "load_ptbxl", "EcgkerasError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecgkeras' has no attribute {name!r}")
