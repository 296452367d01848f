"""Are results identical on another CPU? oneDNN's kernel choice by CPU features, emulated on one machine.

TensorFlow's oneDNN kernels (on by default on x86 Linux) pick code paths by the CPU's instruction
sets at run time, so two machines "of the same kind" with different CPU features can sum in
different orders. `ONEDNN_MAX_CPU_ISA` caps the instruction sets oneDNN may use, which emulates
an older CPU on this one; `TF_ENABLE_ONEDNN_OPTS=0` turns oneDNN off (TensorFlow's own Eigen
kernels, whose code path is fixed when the wheel is built).

Each setting trains the same short runs (demo data, seed 0, deterministic ops) in a fresh process
and saves the validation probabilities; settings are then compared bit for bit, and seconds per
epoch are reported (the machine is shared: timings are indicative). Usage:

    .venv/bin/python benchmarks/bench_determinism.py [--architectures cnn cnn-lstm] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out" / "determinism"
RESULTS_FILE = REPO / "benchmarks" / "out" / "determinism.json"
DEMO_DATA = REPO / "benchmarks" / "out" / "synthetic-ptbxl-1200"
# name: environment; the "-again" settings repeat one in a new process (same machine, same setting)
SETTINGS = {
    "default": {},
    "default-again": {},
    "isa-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn-off-again": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn-off-isa-avx2": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
# (a, b): are the validation probabilities of a and b identical?
PAIRS = (("default", "default-again"), ("default", "isa-avx2"), ("default", "onednn-off"),
         ("onednn-off", "onednn-off-again"), ("onednn-off", "onednn-off-isa-avx2"))

CHILD = """
import json, sys, numpy as np
from ecgkeras.data.ptbxl import load_ptbxl
from ecgkeras.runs import RunConfig, run_experiment
data_dir, arch, epochs, run_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
config = RunConfig.from_parameters(data_dir=data_dir, architecture=arch, epochs=epochs, batch_size=32,
                                   patience=epochs, bootstrap_resamples=0, verbose=0)
record = run_experiment(config, run_dir, progress=False)
seconds = record.history["epoch_seconds"].to_numpy()
print(json.dumps({"seconds_per_epoch": float(np.median(seconds[1:])), "first_epoch_seconds": float(seconds[0]),
                  "val_macro_auprc": record.metrics("val", "tuned")["macro_auprc"]}))
"""

TIMING_CHILD = """
import sys, time, numpy as np
from ecgkeras.models import build_model
from ecgkeras.training import TrainingConfig, compile_model, set_seed
arch, n = sys.argv[1], 512
set_seed(0)
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((n, 1000, 12)).astype("float32"), (rng.random((n, 23)) < 0.1).astype("float32")
model = compile_model(build_model(arch, (1000, 12), 23), TrainingConfig(), Y)
model.fit(X[:64], Y[:64], batch_size=32, epochs=1, verbose=0)  # traces the step function
started = time.perf_counter()
model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
print((time.perf_counter() - started) / n * 1000)
"""


def timing(architectures: list[str], settings: list[str], repeats: int) -> list[dict]:
    """Training ms per ECG (512 random ECGs, batch 32) per setting, settings interleaved `repeats` times."""
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for arch in architectures:
            for name in settings:
                env = {key: value for key, value in os.environ.items()
                       if key not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")}
                env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), **SETTINGS[name])
                done = subprocess.run([sys.executable, "-c", TIMING_CHILD, arch], env=env, capture_output=True,
                                      text=True, check=True)
                times.setdefault((arch, name), []).append(float(done.stdout.strip().splitlines()[-1]))
    rows = [{"architecture": arch, "setting": name, "train_ms_per_ecg": values,
             "median_vs_default": float(np.median(values) / np.median(times[(arch, settings[0])]))}
            for (arch, name), values in times.items()]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["cnn", "cnn-lstm"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--timing-repeats", type=int, default=0,
                        help="only time training per setting (the first setting is the reference), interleaved")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.timing_repeats:
        rows = timing(args.architectures, args.settings, args.timing_repeats)
        (RESULTS_FILE.parent / "determinism_timing.json").write_text(json.dumps(rows, indent=2))
        return
    from ecgkeras.data.synthetic import make_synthetic_ptbxl

    data_dir = make_synthetic_ptbxl(DEMO_DATA, n_records=1200, seed=0, progress=False)
    for arch in args.architectures:
        for name in args.settings:
            run_dir = OUT_DIR / arch / name
            env = {key: value for key, value in os.environ.items()
                   if key not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")}
            env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), **SETTINGS[name])
            done = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), arch, str(args.epochs), str(run_dir)],
                                  env=env, capture_output=True, text=True, check=True)
            (run_dir / "timing.json").write_text(done.stdout.strip().splitlines()[-1])
            print(arch, name, done.stdout.strip().splitlines()[-1], flush=True)
    rows = []  # every run on disk, so separate invocations add up
    for arch_dir in sorted(path for path in OUT_DIR.iterdir() if path.is_dir()):
        probs = {run.name: np.load(run / "predictions.npz")["val_prob"] for run in sorted(arch_dir.iterdir())
                 if (run / "timing.json").is_file()}
        for name in probs:
            rows.append({"architecture": arch_dir.name, "setting": name, "environment": SETTINGS[name],
                         **json.loads((arch_dir / name / "timing.json").read_text())})
        for a, b in PAIRS:
            if a in probs and b in probs:
                rows.append({"architecture": arch_dir.name, "compare": f"{a} vs {b}",
                             "identical": bool(np.array_equal(probs[a], probs[b])),
                             "max_abs_difference": float(np.abs(probs[a] - probs[b]).max())})
    RESULTS_FILE.write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
