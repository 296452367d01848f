"""Quiet by default: library start-up chatter reaches the terminal only with `ecgkeras --verbose`.

TensorFlow's C++ libraries write their start-up lines (absl's "before InitializeLog" notice,
oneDNN, CUDA probing) straight to file descriptor 2 while `import tensorflow` runs, before
TF_CPP_MIN_LOG_LEVEL is consulted; the lines they log later honour it. So a quiet process sets
TF_CPP_MIN_LOG_LEVEL=3 and holds descriptor 2 in a temporary file while TensorFlow is imported,
replaying what was held when the import fails. Kernels started by papermill inherit the
environment (QUIET_ENV) and install the same hook on `import ecgkeras`; ipykernel's warning about
its TCP transport is a log line of the kernel application, raised to ERROR by `kernel_arguments()`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

QUIET_ENV = "ECGKERAS_QUIET"  # "1": this process and the kernels it starts keep start-up chatter back
HELD_BACK = "tensorflow"  # the import whose start-up lines are held back


def be_quiet() -> None:
    """Keep library start-up chatter from the terminal, in this process and the kernels it starts."""
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    install_import_hook()


def be_verbose() -> None:
    """Let every library log as it would by default (undoes an inherited quiet setting)."""
    os.environ.pop(QUIET_ENV, None)


def is_quiet() -> bool:
    return os.environ.get(QUIET_ENV) == "1"


def kernel_arguments() -> list[str]:
    """Extra command-line arguments for the notebook kernels papermill starts."""
    return ["--IPKernelApp.log_level=ERROR"] if is_quiet() else []


def install_import_hook() -> None:
    """Hold back what the first `import tensorflow` writes to standard error (once per process)."""
    if HELD_BACK not in sys.modules and not any(isinstance(f, _HeldBackImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _HeldBackImport())


@contextlib.contextmanager
def standard_error_held_back() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it to the real one if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except Exception:  # not on Ctrl-C: the held lines would bury the one-line "interrupted" message
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _HeldBackImport(importlib.abc.MetaPathFinder):
    """Finds TensorFlow for its first import and runs that import with standard error held back."""

    def find_spec(self, fullname, path, target=None):
        if fullname != HELD_BACK:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_quietly(module):
                with standard_error_held_back():
                    exec_module(module)
                logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TensorFlow's Python-side notices

            spec.loader.exec_module = exec_quietly
        return spec
