"""Mixed precision against float32, resolved to 10% on a noisy machine: many short alternating blocks.

For each architecture, one process builds the model twice (float32, then the mixed policy: Keras takes
the global policy when a layer is built), compiles both with the package's `compile_model` and warms
both up (tracing). It then alternates blocks of `--steps` training steps (`train_on_batch` on one fixed
batch of random ECGs), float32 first in odd rounds and second in even ones, for `--rounds` rounds.
Interference from other processes hits neighbouring blocks alike, so the figure is the median over
rounds of the paired ratio float32 block time / mixed block time (> 1: mixed is faster), with a
bootstrap 95% interval over rounds; the minimum block times are given too. Inference is timed the
same way with `predict_on_batch`.

Also recorded: the CPU model and the instruction sets that decide bfloat16 speed (avx512_bf16,
amx_bf16/amx_tile), and whether oneDNN dispatched AMX kernels (its ONEDNN_VERBOSE log, from a short
bfloat16 run in a subprocess), or the GPU's name and compute capability.

    .venv/bin/python benchmarks/bench_precision.py [--architectures cnn cnn-bilstm] [--policy mixed_bfloat16]
        [--rounds 30] [--steps 4] [--batch-size 64] [--out benchmarks/out/precision.json]

The default mixed policy is mixed_float16 on a GPU and mixed_bfloat16 on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "out" / "precision.json"
INPUT_SHAPE, N_CLASSES = (1000, 12), 23


def _timed_blocks(functions: dict[str, callable], rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per block of `steps` calls, alternating the order of the functions every round."""
    names, times = list(functions), {name: [] for name in functions}
    for round_ in range(rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            for _ in range(steps):
                functions[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _paired_ratio(reference: list[float], other: list[float], seed: int = 0) -> dict:
    """Median over rounds of reference/other with a bootstrap 95% interval over rounds."""
    ratios = np.asarray(reference) / np.asarray(other)
    rng = np.random.default_rng(seed)
    medians = np.median(ratios[rng.integers(0, len(ratios), (2000, len(ratios)))], axis=1)
    return {"median": float(np.median(ratios)), "ci95": [float(np.quantile(medians, 0.025)),
                                                          float(np.quantile(medians, 0.975))],
            "min_ratio": float(min(reference) / min(other))}


def measure(architectures: list[str], policy: str, rounds: int, steps: int, batch_size: int) -> list[dict]:
    import keras

    from ecgkeras.models import build_model
    from ecgkeras.training import TrainingConfig, compile_model, set_seed

    set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *INPUT_SHAPE), dtype=np.float32)
    y = (rng.random((batch_size, N_CLASSES)) < 0.1).astype(np.float32)
    rows = []
    for arch in architectures:
        models = {}
        for name in ("float32", policy):
            keras.mixed_precision.set_global_policy(name)
            models[name] = compile_model(build_model(arch, INPUT_SHAPE, N_CLASSES),
                                         TrainingConfig(batch_size=batch_size), y)
        keras.mixed_precision.set_global_policy("float32")
        for model in models.values():  # warm-up: tracing of the train and predict functions
            for _ in range(2):
                model.train_on_batch(x, y)
                model.predict_on_batch(x)
        print(f"  {arch}: {rounds} rounds of {steps} steps, float32 vs {policy}", file=sys.stderr, flush=True)
        train = _timed_blocks({name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()},
                              rounds, steps)
        infer = _timed_blocks({name: (lambda m=m: m.predict_on_batch(x)) for name, m in models.items()},
                              rounds, steps)
        output_dtype = str(models[policy].output.dtype)
        rows.append({"architecture": arch, "policy": policy, "output_dtype": output_dtype,
                     "train_step_ms": {name: 1000 * statistics.median(t) / steps for name, t in train.items()},
                     "train_speedup": _paired_ratio(train["float32"], train[policy]),
                     "infer_speedup": _paired_ratio(infer["float32"], infer[policy]),
                     "train_block_seconds": train, "infer_block_seconds": infer})
    return rows


def cpu_description() -> dict:
    from ecgkeras.training import cpu_features, cpu_model

    return {"model": cpu_model() or platform.processor(), "cpus": os.cpu_count(), "features": cpu_features()}


def onednn_used_amx(arch: str = "cnn") -> bool | None:
    """Whether oneDNN ran AMX kernels for a few bfloat16 training steps (None: no oneDNN log)."""
    script = ("import numpy as np, keras; from ecgkeras.models import build_model; "
              "from ecgkeras.training import TrainingConfig, compile_model; "
              "keras.mixed_precision.set_global_policy('mixed_bfloat16'); "
              f"m = compile_model(build_model('{arch}', (1000, 12), 23), TrainingConfig(), np.zeros((8, 23))); "
              "m.train_on_batch(np.zeros((8, 1000, 12), 'float32'), np.zeros((8, 23), 'float32'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    log = done.stdout + done.stderr
    if "onednn_verbose" not in log:
        return None
    return "amx" in log


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["cnn", "cnn-bilstm"])
    parser.add_argument("--policy", help="the mixed policy (default: mixed_float16 on a GPU, else mixed_bfloat16)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from ecgkeras.training import gpu_compute_capabilities

    gpus = gpu_compute_capabilities()
    policy = args.policy or ("mixed_float16" if gpus else "mixed_bfloat16")
    result = {"tensorflow": tf.__version__, "cpu": cpu_description(), "gpus": gpus,
              "onednn_amx": None if gpus else onednn_used_amx(),
              "settings": {"rounds": args.rounds, "steps": args.steps, "batch_size": args.batch_size},
              "rows": measure(args.architectures, policy, args.rounds, args.steps, args.batch_size)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for row in result["rows"]:
        train, infer = row["train_speedup"], row["infer_speedup"]
        print(f"{row['architecture']:<12} {row['policy']}: training x{train['median']:.2f} "
              f"[{train['ci95'][0]:.2f}, {train['ci95'][1]:.2f}], inference x{infer['median']:.2f} "
              f"[{infer['ci95'][0]:.2f}, {infer['ci95'][1]:.2f}] (float32 step {row['train_step_ms']['float32']:.0f} ms)")
    print(f"CPU {result['cpu']['model']} ({', '.join(result['cpu']['features']) or 'no AVX'}); oneDNN AMX: "
          f"{result['onednn_amx']}; GPUs: {gpus or 'none'}; written {args.out}")
    return result


if __name__ == "__main__":
    main()
