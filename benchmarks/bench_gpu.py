"""The GPU benchmark: one command, under 5 minutes on one GPU, appending a section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_gpu.py                 # on a machine with an NVIDIA GPU
    .venv/bin/python benchmarks/bench_gpu.py --quick --out /tmp/gpu.md   # a smoke test (the CPU too)

Measured, each setting in a fresh process with TensorFlow's memory growth on:
- per paper architecture, at float32 and at the mixed policy `auto` picks (mixed_float16 on a GPU with
  tensor cores): training throughput (ECGs/s; the median step of `--epochs` timed epochs after a
  warm-up epoch, random ECGs of PTB-XL's 100 Hz shape) and inference throughput (`predict`, batch 256);
  peak GPU memory (`tf.config.experimental.get_memory_info`, reset per architecture);
- whether each recurrent layer meets Keras' conditions for the cuDNN kernel (tanh/sigmoid, no recurrent
  dropout, no unrolling, bias; GRU reset_after), which Keras then uses on a GPU;
- `--runs-per-gpu` K = 1, 2, 4: K processes training CNN-BiLSTM at once on the same GPU against one
  alone (total ECGs/s), the question `ecgkeras study --runs-per-gpu` asks.
Without a GPU the throughput part runs on the CPU (tiny with --quick) and the GPU-only parts (memory,
sharing) are skipped with a message saying so; nothing is appended to RESULTS.md unless a GPU was used
or --out names a file.
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
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
INPUT_SHAPE, N_CLASSES, INFER_BATCH = (1000, 12), 23, 256
SHARED_ARCHITECTURE = "cnn-bilstm"


def worker(spec: dict) -> dict:
    """Throughput, memory and cuDNN eligibility of `spec['architectures']` under `spec['precision']`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    import keras

    from ecgkeras.models import build_model
    from ecgkeras.training import TrainingConfig, compile_model, make_dataset, precision_policy, set_seed

    class StepTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps: list[list[float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.steps.append([])

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps[-1].append(time.perf_counter() - self._start)

    gpu = bool(tf.config.list_physical_devices("GPU"))
    set_seed(0, deterministic=False)  # the study's default is deterministic; throughput is the question here
    rng = np.random.default_rng(0)
    n, batch = spec["records"], spec["batch_size"]
    X = rng.standard_normal((n, *INPUT_SHAPE), dtype=np.float32)
    Y = (rng.random((n, N_CLASSES)) < 0.1).astype(np.uint8)
    rows = []
    for arch in spec["architectures"]:
        keras.backend.clear_session()
        if gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        with precision_policy(spec["precision"]) as policy:
            model = build_model(arch, INPUT_SHAPE, N_CLASSES)
        compile_model(model, TrainingConfig(batch_size=batch, deterministic=False), Y)
        timer = StepTimes()
        model.fit(make_dataset(X, Y, batch, shuffle=True, seed=0), epochs=1 + spec["epochs"], verbose=0,
                  callbacks=[timer])
        step = statistics.median(t for epoch in timer.steps[1:] for t in epoch)
        model.predict(X[:INFER_BATCH], batch_size=INFER_BATCH, verbose=0)
        start = time.perf_counter()
        model.predict(X, batch_size=INFER_BATCH, verbose=0)
        infer_s = time.perf_counter() - start
        row = {"architecture": arch, "precision": policy, "n_parameters": int(model.count_params()),
               "train_ecg_per_s": batch / step, "infer_ecg_per_s": n / infer_s, "cudnn": _cudnn_eligible(model)}
        if gpu:
            row["peak_memory_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        rows.append(row)
        print(f"  {arch} {policy}: {row['train_ecg_per_s']:.0f} ECG/s training", file=sys.stderr, flush=True)
    return {"rows": rows}


def _cudnn_eligible(model) -> str:
    """'yes'/'no' per recurrent layer kind (Keras' own cuDNN conditions), '-' without recurrent layers."""
    import keras

    answers = []
    for layer in model.layers:
        cell = getattr(layer, "forward_layer", layer)
        if not isinstance(cell, (keras.layers.LSTM, keras.layers.GRU)):
            continue
        ok = (cell.activation is keras.activations.tanh and cell.recurrent_activation is keras.activations.sigmoid
              and not cell.recurrent_dropout and not cell.unroll and cell.use_bias
              and getattr(cell, "reset_after", True))
        answers.append(ok)
    return "-" if not answers else ("yes" if all(answers) else "no")


def _run(spec: dict, timeout: int = 600) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true"})
    if done.returncode:
        raise SystemExit(f"bench_gpu: a worker failed:\n{done.stderr[-3000:]}")
    sys.stderr.write("".join(line + "\n" for line in done.stderr.splitlines() if line.startswith("  ")))
    return json.loads(done.stdout.splitlines()[-1])


def sharing(records: int, batch: int, epochs: int, counts: list[int]) -> list[dict]:
    """Total training throughput of K concurrent processes on one GPU, for each K in `counts`."""
    spec = {"architectures": [SHARED_ARCHITECTURE], "precision": "auto", "records": records, "batch_size": batch,
            "epochs": epochs}
    rows = []
    for count in counts:
        start = time.perf_counter()
        processes = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env={**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true"})
                     for _ in range(count)]
        results = [json.loads(process.communicate(timeout=600)[0].splitlines()[-1])["rows"][0] for process in processes]
        rows.append({"runs_per_gpu": count, "total_train_ecg_per_s": sum(r["train_ecg_per_s"] for r in results),
                     "wall_s": time.perf_counter() - start})
    return rows


def gpu_description() -> list[str]:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def markdown(result: dict) -> str:
    gpus = result["gpus"]
    lines = [f"## GPU benchmark: {', '.join(gpus) or 'no GPU (CPU: ' + result['cpu'] + ')'} "
             f"({result['date']}, `benchmarks/bench_gpu.py{' --quick' if result['quick'] else ''}`)", "",
             f"TensorFlow {result['tensorflow']}, {result['records']} random ECGs (1000 x 12), batch "
             f"{result['batch_size']}, memory growth on, op determinism off; throughput in ECGs/s.", "",
             "| architecture | parameters | precision | training | inference | cuDNN-eligible RNN | peak memory (MiB) |",
             "| --- | ---: | --- | ---: | ---: | --- | ---: |"]
    for row in result["throughput"]:
        memory = f"{row['peak_memory_mib']:.0f}" if "peak_memory_mib" in row else "-"
        lines.append(f"| {row['architecture']} | {row['n_parameters']:,} | {row['precision']} | "
                     f"{row['train_ecg_per_s']:.0f} | {row['infer_ecg_per_s']:.0f} | {row['cudnn']} | {memory} |")
    lines.append("")
    if result["sharing"]:
        alone = result["sharing"][0]["total_train_ecg_per_s"]
        lines += [f"Runs sharing one GPU ({SHARED_ARCHITECTURE}, `auto` precision):", "",
                  "| runs per GPU | total training ECGs/s | vs one run |", "| ---: | ---: | ---: |"]
        lines += [f"| {row['runs_per_gpu']} | {row['total_train_ecg_per_s']:.0f} | "
                  f"{row['total_train_ecg_per_s'] / alone:.2f}x |" for row in result["sharing"]]
    else:
        lines.append(f"GPU-only parts skipped: {result['skipped']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test that runs anywhere")
    parser.add_argument("--architectures", nargs="+", help="default: the paper's seven (--quick: cnn, cnn-lstm)")
    parser.add_argument("--records", type=int, help="random ECGs per epoch (default 4096; --quick 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, help="timed epochs after the warm-up (default 2; --quick 1)")
    parser.add_argument("--runs-per-gpu", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, help=f"append the section here (default: {RESULTS}, on a GPU only)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    from ecgkeras.models import PAPER_ARCHITECTURES
    from ecgkeras.study.devices import listed_gpus
    from ecgkeras.training import cpu_features, cpu_model

    architectures = args.architectures or (["cnn", "cnn-lstm"] if args.quick else list(PAPER_ARCHITECTURES))
    records = args.records or (64 if args.quick else 4096)
    epochs = args.epochs or (1 if args.quick else 2)
    has_gpu = bool(listed_gpus())
    precisions = ["float32", "auto"] if has_gpu else ["float32"]
    spec = {"architectures": architectures, "records": records, "batch_size": args.batch_size, "epochs": epochs}
    throughput = [row for precision in precisions for row in _run({**spec, "precision": precision})["rows"]]
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "quick": args.quick, "gpus": gpu_description(),
              "cpu": f"{cpu_model() or platform.machine()}; {', '.join(cpu_features())}", "records": records, "batch_size": args.batch_size,
              "tensorflow": _tensorflow_version(), "throughput": throughput,
              "sharing": sharing(records, args.batch_size, epochs, args.runs_per_gpu) if has_gpu else [],
              "skipped": None if has_gpu else "no GPU on this machine (nvidia-smi -L lists none): mixed precision, "
                                               "peak memory and runs sharing a GPU need one"}
    if not has_gpu:
        print(f"bench_gpu: {result['skipped']}; throughput measured on the CPU", file=sys.stderr)
    section = markdown(result)
    out = args.out or (RESULTS if has_gpu else None)
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write("\n" + section)
        print(f"appended to {out}", file=sys.stderr)
    print(section)
    return result


def _tensorflow_version() -> str:
    from importlib.metadata import version

    return version("tensorflow")


if __name__ == "__main__":
    main()
