"""Where runs execute: GPU detection and one device slot per concurrent run.

Detection asks `nvidia-smi -L`, so the study process never initialises CUDA nor maps GPU memory;
each run's kernel sees only its slot through CUDA_VISIBLE_DEVICES, with TensorFlow's memory
growth on so several runs can share a GPU when asked (`--runs-per-gpu`).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ecgkeras.errors import EcgkerasError

CPU_ONLY = "-1"  # CUDA_VISIBLE_DEVICES value that hides every GPU (TensorFlow then uses the CPU)


def listed_gpus() -> list[str]:
    """Indices of the GPUs `nvidia-smi -L` lists on this machine; [] without nvidia-smi or a GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return []
    return [str(i) for i, line in enumerate(line for line in listing.stdout.splitlines()
                                            if line.startswith("GPU "))]


def detect_gpus() -> list[str]:
    """Indices of the GPUs `nvidia-smi -L` lists (respecting CUDA_VISIBLE_DEVICES); [] without one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return listed_gpus()
    return [d for d in (part.strip() for part in visible.split(",")) if d and d != CPU_ONLY]


def check_gpus(gpus: list[str]) -> None:
    """Refuse GPUs named by `--gpus` that `nvidia-smi -L` does not list (or CUDA_VISIBLE_DEVICES hides)."""
    listed = listed_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    available = [gpu for gpu in listed if visible is None or gpu in detect_gpus()]
    if not (missing := [gpu for gpu in gpus if gpu not in available]):
        return
    named = f"--gpus {','.join(gpus)}"
    if not listed:
        found = "nvidia-smi -L lists none" if shutil.which("nvidia-smi") else "nvidia-smi is not on PATH"
        raise EcgkerasError(f"{named}: no GPU found ({found}): use --gpus none, or leave --gpus out")
    hidden = f", CUDA_VISIBLE_DEVICES={visible} leaves {', '.join(available) or 'none'}" if visible is not None else ""
    raise EcgkerasError(f"{named}: no GPU {', '.join(missing)} here (nvidia-smi -L lists {', '.join(listed)}"
                        f"{hidden}): give some of those, or --gpus none")


def parse_gpus(value: str | None) -> list[str] | None:
    """`--gpus` to device ids: None ('auto') detects, 'none' gives [] (CPU only), '0,1' lists them."""
    if value is None or value == "auto":
        return None
    if value == "none":
        return []
    devices = [part.strip() for part in value.split(",")]
    if not all(part.isdigit() for part in devices) or len(set(devices)) != len(devices):
        raise EcgkerasError(f"--gpus {value!r}: give distinct GPU indices like 0,1, or 'none', or 'auto'")
    return devices


def device_slots(gpus: list[str] | None, runs_per_gpu: int) -> list[dict[str, str]]:
    """The environment of each concurrent run slot; [{}] (one unrestricted slot) without GPUs.

    `gpus` None detects them. With GPUs, each slot pins one GPU (a GPU appears `runs_per_gpu`
    times) and turns memory growth on; `gpus == []` forces the CPU.
    """
    if runs_per_gpu < 1:
        raise EcgkerasError(f"--runs-per-gpu {runs_per_gpu}: give at least 1")
    if gpus is None:
        gpus = detect_gpus()
        if not gpus:
            return [{}]
    else:
        check_gpus(gpus)
    if not gpus:
        return [{"CUDA_VISIBLE_DEVICES": CPU_ONLY}]
    return [{"CUDA_VISIBLE_DEVICES": gpu, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
            for _ in range(runs_per_gpu) for gpu in gpus]


