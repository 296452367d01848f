"""A training notebook's kernel with the heap frozen at exit (`ecgkeras.shutdown`, the package's default)
against Python's default, which collects TensorFlow's heap of Python objects during finalization.

Each measurement executes the training notebook once through `execute_notebook` (papermill, a fresh kernel)
on a small synthetic PTB-XL with the tests' tiny settings (one epoch); "collected" appends a cell that takes
the exit handler back (`atexit.unregister(gc.freeze)`), "frozen" appends an empty cell. Reported: the
notebook's wall time, the time from its last cell to the kernel's end, and the kernel's CPU time (this
process's children). Usage:

    .venv/bin/python benchmarks/bench_kernel_exit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "kernel_exit.json"
VARIANTS = {"collected": "import atexit, gc\natexit.unregister(gc.freeze)", "frozen": "pass"}
TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16], "rnn_units": 8,
        "head_units": 16, "verbose": 0}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(notebook: Path, data_dir: Path, work: Path, variant: str) -> dict:
    """Execute `notebook` with the variant's last cell; wall time, exit time and the kernel's CPU time."""
    from ecgkeras.runs import RunConfig
    from ecgkeras.study.notebooks import execute_notebook, train_parameters

    source = nbformat.read(notebook, as_version=4)
    source.cells.append(nbformat.v4.new_code_cell(VARIANTS[variant]))
    variant_notebook = work / f"{variant}.ipynb"
    nbformat.write(source, variant_notebook)
    run_dir, output = work / "run", work / f"{variant}-out.ipynb"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = RunConfig.from_parameters(data_dir=str(data_dir), architecture="cnn", **TINY)
    cpu, started = _children_cpu(), time.time()
    execute_notebook(variant_notebook, output, train_parameters(config, run_dir))
    ended, cpu = time.time(), _children_cpu() - cpu
    last_cell = nbformat.read(output, as_version=4).cells[-1].metadata.papermill.end_time
    return {"seconds": ended - started, "exit_seconds": ended - datetime.fromisoformat(last_cell).timestamp(),
            "kernel_cpu_seconds": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_all import machine

    from ecgkeras.data.synthetic import make_synthetic_ptbxl
    from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, to_ipynb

    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # as in the test suite, where several kernels share the cores
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data_dir = make_synthetic_ptbxl(work / "ptbxl", n_records=300, seed=7, progress=False)
        notebook = to_ipynb(TRAIN_NOTEBOOK, work / "notebook")
        measure(notebook, data_dir, work, "frozen")  # warm the signal cache and the file system
        found: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeats):  # interleaved, so that a busy moment does not favour one variant
            for variant in VARIANTS:
                found[variant].append(measure(notebook, data_dir, work, variant))
    rows = {variant: {key: statistics.median(m[key] for m in measured) for key in measured[0]}
            for variant, measured in found.items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine(), "repeats": args.repeats, "median": rows, "all": found},
                              indent=2))
    print("| exit | notebook wall | last cell to kernel end | kernel CPU |")
    print("| --- | --- | --- | --- |")
    for variant, row in rows.items():
        print(f"| {variant} | {row['seconds']:.2f} s | {row['exit_seconds']:.2f} s | {row['kernel_cpu_seconds']:.2f} s |")


if __name__ == "__main__":
    main()
