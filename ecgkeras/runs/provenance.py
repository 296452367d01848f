"""Where a run came from: library versions, the data folder (synthetic or PTB-XL, database hash) and
the execution context (host, executor, devices, SLURM job)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgkeras import __version__
from ecgkeras.data.ptbxl import DATABASE_CSV
from ecgkeras.data.synthetic import MARKER_FILE


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results, plus the devices used."""
    import keras
    import sklearn
    import tensorflow as tf
    import wfdb

    return {"ecgkeras": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "wfdb": wfdb.__version__,
            "gpus": ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none"}


def data_provenance(data_dir: str | Path) -> dict[str, Any]:
    """Where a run's data came from, decided when it trains: synthetic or PTB-XL, folder, database hash."""
    data_dir = Path(data_dir).resolve()
    if not (data_dir / DATABASE_CSV).is_file():  # Challenge-format records: the labels are in the headers
        from ecgkeras.data.challenge import headers_digest

        return {"synthetic": False, "data_dir": str(data_dir), "database_sha256": headers_digest(data_dir)}
    digest = hashlib.sha256()
    with open(data_dir / DATABASE_CSV, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"synthetic": (data_dir / MARKER_FILE).is_file(), "data_dir": str(data_dir),
            "database_sha256": digest.hexdigest()}


def process_age_seconds() -> float | None:
    """Seconds since this process started (in a run's kernel: its start and imports), None off Linux."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


EXECUTOR_VARIABLE = "ECGKERAS_EXECUTOR"  # set by the study runner in each run's kernel environment


def execution_context(devices: bool = False) -> dict[str, Any]:
    """Where this process runs: host, pid, executor, visible devices, SLURM job and the GPUs TF sees.

    With `devices` (a run's record, once TensorFlow has trained) also `devices`, the logical devices
    TensorFlow really used, and `gpu_names`, the model of each GPU it saw.
    """
    tf = sys.modules.get("tensorflow")  # only when already imported: never initialise CUDA for this
    used = {}
    if devices and tf is not None:
        gpus = tf.config.list_physical_devices("GPU")
        used = {"devices": [device.name for device in tf.config.list_logical_devices()],
                "gpu_names": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                              for gpu in gpus]}
    slurm_job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "executor": os.environ.get(EXECUTOR_VARIABLE, "direct"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": slurm_job,
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")] if tf is not None else None,
        **used,
    }
