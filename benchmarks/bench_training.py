"""Training and inference cost of the registered architectures, each figure against a baseline run alongside.

For every architecture (100 Hz input (1000, 12), 23 classes, random float32 inputs and labels):
- parameter count;
- training throughput (ECGs/s): `model.fit` over a fixed `make_dataset` of `--records` records,
  compiled with the package's `compile_model` (Adam, BCE, the multi-label AUPRC/AUROC metrics);
  one warm-up epoch (tracing, XLA compilation) then `--repeats` timed epochs; the epoch time is the
  median training step (over all steps of the timed epochs) x steps per epoch, which leaves out the
  per-epoch overhead (new iterator, metrics) and the occasional stall of a loaded machine; the wall
  time of each epoch is kept in the JSON (`epoch_wall_seconds`);
- inference (ms/ECG): `model.predict(batch_size=256)` over the same records after a warm-up call,
  median of max(5, `--repeats`) calls;
- at each of `--batch-sizes` (the sweep runs for the paper's architectures, `--sweep-architectures`;
  the others run at the baseline batch size only);
- with TensorFlow's op determinism on (the package default, `set_seed(deterministic=True)`) and off,
  and with and without XLA (`TrainingConfig.jit_compile`), for the sweep architectures. Keras ignores
  `jit_compile=True` while op determinism is on (it warns "Model doesn't support `jit_compile=True`"
  and compiles without XLA), so XLA is timed in the determinism-off subprocess, against no-XLA in that
  same subprocess. Op determinism cannot be switched off once on in a process, hence one subprocess
  per setting;
- TensorFlow's intra/inter-op thread counts (`--threads`, default 1:1), for the CNN and CNN-BiLSTM.

Baseline: the CNN at batch 64 without XLA, deterministic, measured first and last in the main subprocess
(its epoch times pooled), so "vs CNN" = architecture epoch time / CNN epoch time in the same run,
"XLA speedup" = no-XLA time / XLA time per architecture (both determinism off), "determinism off
speedup" = deterministic time / non-deterministic time (no XLA). From the measured rates, the wall time
of the full study on this machine (7 paper architectures, full PTB-XL at 100 Hz, one seed) is estimated,
including the per-run evaluation (test-fold bootstrap, timed here on random data of the full size).

On a GPU the same script measures the GPU: TensorFlow places the models there by itself (LSTM/GRU use
cuDNN with the package's settings). Usage:

    .venv/bin/python benchmarks/bench_training.py [--quick] [--architectures cnn cnn-bilstm ...]
        [--batch-sizes 32 64 128] [--records 512] [--repeats 3] [--no-xla] [--threads 1:1 2:1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "out" / "training.json"
INPUT_SHAPE = (1000, 12)  # 10 s at 100 Hz
N_CLASSES = 23  # PTB-XL diagnostic subclasses
BASELINE_ARCH, BASELINE_BATCH = "cnn", 64
INFER_BATCH = 256
# The full study on PTB-XL at 100 Hz (23 subclasses, records with a subclass label): folds 1-8 train,
# fold 9 validates every epoch, fold 10 tests once.
FULL_TRAIN, FULL_VAL, FULL_TEST = 17_400, 2_200, 2_200
MAX_EPOCHS, TYPICAL_EPOCHS = 30, 15
BOOTSTRAP_RESAMPLES = 1000  # the study's default, per threshold policy (2 policies)
BOOTSTRAP_TRIALS = 20  # resamples timed here, extrapolated to BOOTSTRAP_RESAMPLES
STARTUP_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub.cc", "cuda_", "computation_placer")


class CpuMonitor:
    """CPU time other processes used while this one measured (Linux; None elsewhere).

    `foreign_share` = that time / (wall time x CPUs): 0 on an otherwise idle machine.
    """

    def __enter__(self) -> "CpuMonitor":
        self._start = (time.perf_counter(), _machine_busy_s(), _own_cpu_s())
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, own = (end - start for end, start in
                           zip((time.perf_counter(), _machine_busy_s(), _own_cpu_s()), self._start))
        self.wall_s = wall
        self.foreign_cpu_s = None if busy is None else max(0.0, busy - own)
        self.foreign_share = (None if busy is None
                              else self.foreign_cpu_s / max(wall * (os.cpu_count() or 1), 1e-9))

    def to_dict(self) -> dict:
        return {"wall_s": self.wall_s, "foreign_cpu_s": self.foreign_cpu_s, "foreign_share": self.foreign_share}


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_cpu_s() -> float:
    """CPU time of this process and of its waited-for children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _paper_architectures() -> list[str]:
    from ecgkeras.models import PAPER_ARCHITECTURES
    return list(PAPER_ARCHITECTURES)


def _all_architectures() -> list[str]:
    from ecgkeras.models import ARCHITECTURES
    return list(ARCHITECTURES)


# --------------------------------------------------------------------------- worker (one subprocess)

def _worker(spec: dict) -> dict:
    """Run the jobs of `spec` in this process: one TensorFlow setting (determinism, threads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if spec.get("intra"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra"])
    if spec.get("inter"):
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter"])
    import keras

    from ecgkeras.models import build_model
    from ecgkeras.training import TrainingConfig, compile_model, make_dataset, set_seed

    class Times(keras.callbacks.Callback):
        """Wall time of every epoch and of every training step (batch), per epoch."""

        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self.steps: list[list[float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.steps.append([])
            self._start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self._step = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps[-1].append(time.perf_counter() - self._step)

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    deterministic = spec["deterministic"]
    set_seed(0, deterministic)
    rng = np.random.default_rng(0)
    n, repeats = spec["records"], spec["repeats"]
    X = rng.standard_normal((n, *INPUT_SHAPE), dtype=np.float32)
    Y = (rng.random((n, N_CLASSES)) < 0.1).astype(np.uint8)
    results = []
    for job in spec["jobs"]:
        arch, batch, xla = job["arch"], job["batch"], job["xla"]
        label = f"{arch} batch {batch} xla={xla} det={deterministic} threads={spec.get('intra')}:{spec.get('inter')}"
        print(f"  {label}", file=sys.stderr, flush=True)
        keras.backend.clear_session()
        row = {**job, "deterministic": deterministic, "intra": spec.get("intra"), "inter": spec.get("inter")}
        monitor = CpuMonitor().__enter__()
        try:
            model = build_model(arch, INPUT_SHAPE, N_CLASSES)
            config = TrainingConfig(batch_size=batch, jit_compile=xla, deterministic=deterministic)
            compile_model(model, config, Y)
            dataset = make_dataset(X, Y, batch, shuffle=True, seed=0)
            timer = Times()
            model.fit(dataset, epochs=1 + repeats, verbose=0, callbacks=[timer])
            steps = [t for epoch in timer.steps[1:] for t in epoch]
            step_s = statistics.median(steps)
            epoch_s = step_s * n / batch  # steady state: the median step, as many steps as an epoch has
            row.update(n_parameters=int(model.count_params()), epoch_seconds=[epoch_s],
                       step_seconds=steps, epoch_wall_seconds=timer.times[1:],
                       first_epoch_seconds=timer.times[0], train_ecg_per_s=n / epoch_s,
                       warmup_overhead_s=timer.times[0] - statistics.median(timer.times[1:]))
            if job.get("infer", True):
                model.predict(X[:INFER_BATCH], batch_size=INFER_BATCH, verbose=0)  # warm-up (tracing)
                times = []
                for _ in range(max(5, repeats)):
                    start = time.perf_counter()
                    model.predict(X, batch_size=INFER_BATCH, verbose=0)
                    times.append(time.perf_counter() - start)
                row.update(infer_seconds=times, infer_ms_per_ecg=statistics.median(times) * 1000 / n)
        except Exception as exc:  # e.g. an op without a deterministic or XLA kernel: report, go on
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            print(f"    failed: {row['error']}", file=sys.stderr, flush=True)
        monitor.__exit__(None, None, None)
        row["cpu"] = monitor.to_dict()
        results.append(row)
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "devices": [d.name for d in tf.config.list_physical_devices()], "jobs": results}


def _run_worker(spec: dict) -> dict:
    """`_worker(spec)` in a fresh Python process (so determinism and thread settings start clean)."""
    with tempfile.TemporaryDirectory(prefix="ecgkeras-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        start = time.perf_counter()
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path), str(out_path)]
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
            for line in process.stderr:  # progress lines; drop TensorFlow's start-up chatter
                if not any(noise in line for noise in STARTUP_NOISE):
                    sys.stderr.write(line)
        if process.returncode:
            raise RuntimeError(f"benchmark worker failed (exit {process.returncode}): {' '.join(command)}")
        result = json.loads(out_path.read_text())
        result["wall_seconds"] = time.perf_counter() - start
        return result


# --------------------------------------------------------------------------- evaluation cost

def bootstrap_cost(n_records: int = FULL_TEST, trials: int = BOOTSTRAP_TRIALS) -> dict:
    """Seconds per bootstrap resample of the package's test-fold evaluation, on random data of full size."""
    from ecgkeras.evaluation import all_metrics, bootstrap_intervals, tune_thresholds

    rng = np.random.default_rng(0)
    y_true = (rng.random((n_records, N_CLASSES)) < 0.08).astype(np.uint8)
    y_prob = np.clip(y_true * 0.3 + rng.random((n_records, N_CLASSES)) * 0.7, 0, 1).astype(np.float32)
    thresholds = tune_thresholds(y_true, y_prob)
    start = time.perf_counter()
    all_metrics(y_true, y_prob, thresholds)
    one = time.perf_counter() - start
    start = time.perf_counter()
    bootstrap_intervals(y_true, y_prob, {"fixed": 0.5, "tuned": thresholds}, bootstrap_resamples=trials)
    per_resample = (time.perf_counter() - start) / trials  # both threshold policies, as a run does
    return {"records": n_records, "trials": trials, "all_metrics_s": one, "per_resample_s": per_resample,
            "per_run_s": BOOTSTRAP_RESAMPLES * per_resample}


# --------------------------------------------------------------------------- orchestration

def _jobs(archs, batches, xla, infer=True) -> list[dict]:
    return [{"arch": a, "batch": b, "xla": x, "infer": infer} for a in archs for b in batches for x in xla]


def _key(row: dict) -> tuple:
    return row["arch"], row["batch"], row["xla"], row["deterministic"], row.get("intra"), row.get("inter")


def run(architectures: list[str] | None = None, batch_sizes=(32, 64, 128), repeats: int = 3,
        n_records: int = 512, *, sweep_architectures: list[str] | None = None, xla: bool = True,
        threads: list[str] = ("1:1",), progress: bool = True) -> dict:
    """Measure and return the JSON-ready result (see the module docstring).

    `architectures`: all registered ones by default. `sweep_architectures`: those measured at every
    batch size (default: the paper's, among `architectures`); the rest run at batch 64 only.
    `xla`: time the sweep architectures with op determinism off, without and with XLA (a second
    subprocess); without it, only the CNN and CNN-BiLSTM are timed with determinism off (no XLA).
    `threads`: "intra:inter" settings timed for the CNN and CNN-BiLSTM at batch 64 (deterministic, no XLA).
    """
    total_start = time.perf_counter()
    paper = _paper_architectures()
    archs = list(architectures or _all_architectures())
    if BASELINE_ARCH in archs:
        archs.remove(BASELINE_ARCH)
    archs.insert(0, BASELINE_ARCH)
    sweep = [a for a in (sweep_architectures if sweep_architectures is not None else paper) if a in archs]
    batches = sorted(set(batch_sizes) | {BASELINE_BATCH})
    pair = [a for a in (BASELINE_ARCH, "cnn-bilstm") if a in archs]

    def worker(label: str, jobs: list[dict], deterministic: bool = True, intra=None, inter=None) -> dict:
        if progress:
            print(f"training benchmark: {label}, {len(jobs)} configurations", file=sys.stderr, flush=True)
        return _run_worker({"deterministic": deterministic, "records": n_records, "repeats": repeats,
                            "intra": intra, "inter": inter, "jobs": jobs})

    # Deterministic (the package default): baseline first, every architecture at the baseline batch,
    # the batch sweep, the baseline again last.
    base = _jobs([BASELINE_ARCH], [BASELINE_BATCH], [False])
    main_jobs = base + _jobs(archs[1:], [BASELINE_BATCH], [False])
    main_jobs += _jobs(sweep, [b for b in batches if b != BASELINE_BATCH], [False], infer=False)
    main_jobs += [{**base[0], "infer": False, "repeat_of_baseline": True}]
    workers = [worker("op determinism on", main_jobs)]
    # Determinism off: without and with XLA (XLA is ignored while determinism is on).
    off_archs = ([BASELINE_ARCH] + [a for a in sweep if a != BASELINE_ARCH]) if xla else pair
    workers.append(worker("op determinism off", _jobs(off_archs, [BASELINE_BATCH],
                                                      (False, True) if xla else (False,)),
                          deterministic=False))
    for setting in threads:
        intra, inter = (int(v) for v in setting.split(":"))
        workers.append(worker(f"threads intra={intra} inter={inter}",
                              _jobs(pair, [BASELINE_BATCH], [False], infer=False), intra=intra, inter=inter))
    rows = [row for w in workers for row in w["jobs"]]
    result = _summarize(rows, archs, paper, batches, xla, repeats, n_records)
    result.update(workers=[{k: v for k, v in w.items() if k != "jobs"} for w in workers],
                  evaluation=bootstrap_cost())
    result["study_estimate"] = _study_estimate(result)
    result["total_seconds"] = time.perf_counter() - total_start
    return result


def _summarize(rows, archs, paper, batches, xla, repeats, n_records) -> dict:
    ok = [r for r in rows if "error" not in r]
    table: dict[tuple, dict] = {}
    baseline_steps: list[float] = []
    for row in ok:
        if row["arch"] == BASELINE_ARCH and row["batch"] == BASELINE_BATCH and not row["xla"] \
                and row["deterministic"] and row.get("intra") is None:
            baseline_steps += row["step_seconds"]
        if not row.get("repeat_of_baseline"):
            table[_key(row)] = row
    baseline_epoch_s = statistics.median(baseline_steps) * n_records / BASELINE_BATCH
    first_last = [r for r in ok if r["arch"] == BASELINE_ARCH and r["batch"] == BASELINE_BATCH
                  and not r["xla"] and r["deterministic"] and r.get("intra") is None]
    drift = (statistics.median(first_last[-1]["epoch_seconds"]) / statistics.median(first_last[0]["epoch_seconds"])
             if len(first_last) > 1 else None)
    baseline_row = table[(BASELINE_ARCH, BASELINE_BATCH, False, True, None, None)]

    def get(arch, batch, xla_on, det=True, intra=None, inter=None):
        return table.get((arch, batch, xla_on, det, intra, inter))

    per_arch = []
    for arch in archs:
        row = get(arch, BASELINE_BATCH, False)
        if row is None:
            continue
        epoch_s = baseline_epoch_s if arch == BASELINE_ARCH else statistics.median(row["epoch_seconds"])
        entry = {"architecture": arch, "in_paper": arch in paper, "n_parameters": row["n_parameters"],
                 "train_ecg_per_s": n_records / epoch_s, "epoch_seconds": epoch_s,
                 "time_vs_cnn": epoch_s / baseline_epoch_s,
                 "infer_ms_per_ecg": row.get("infer_ms_per_ecg"),
                 "infer_vs_cnn": (row["infer_ms_per_ecg"] / baseline_row["infer_ms_per_ecg"]
                                  if row.get("infer_ms_per_ecg") else None),
                 "warmup_overhead_s": row["warmup_overhead_s"]}
        det_off = get(arch, BASELINE_BATCH, False, det=False)
        xrow = get(arch, BASELINE_BATCH, True, det=False)
        if det_off is not None:
            off_epoch = statistics.median(det_off["epoch_seconds"])
            entry["determinism_off_speedup"] = epoch_s / off_epoch
            if det_off.get("infer_ms_per_ecg") and row.get("infer_ms_per_ecg"):
                entry["determinism_off_infer_speedup"] = row["infer_ms_per_ecg"] / det_off["infer_ms_per_ecg"]
            if xrow is not None:
                x_epoch = statistics.median(xrow["epoch_seconds"])
                entry.update(xla_train_ecg_per_s=n_records / x_epoch, xla_speedup=off_epoch / x_epoch,
                             xla_infer_ms_per_ecg=xrow.get("infer_ms_per_ecg"),
                             xla_infer_speedup=(det_off["infer_ms_per_ecg"] / xrow["infer_ms_per_ecg"]
                                                if xrow.get("infer_ms_per_ecg") and det_off.get("infer_ms_per_ecg")
                                                else None),
                             xla_warmup_overhead_s=xrow["warmup_overhead_s"],
                             xla_and_determinism_off_speedup=epoch_s / x_epoch)
        by_batch = {}
        for batch in batches:
            brow = get(arch, batch, False)
            if brow is not None:
                by_batch[batch] = n_records / (epoch_s if batch == BASELINE_BATCH
                                               else statistics.median(brow["epoch_seconds"]))
        entry["train_ecg_per_s_by_batch"] = by_batch
        entry["best_batch"] = max(by_batch, key=by_batch.get) if len(by_batch) > 1 else None
        entry["best_batch_speedup_vs_64"] = (by_batch[entry["best_batch"]] / by_batch[BASELINE_BATCH]
                                             if entry["best_batch"] else None)
        threads = {}
        for r in ok:
            if r["arch"] == arch and r.get("intra") is not None:
                threads[f"{r['intra']}:{r['inter']}"] = epoch_s / statistics.median(r["epoch_seconds"])
        if threads:
            entry["threads_speedup"] = threads  # >1: faster than the default (all cores)
        per_arch.append(entry)
    return {
        "benchmark": "training",
        "input_shape": list(INPUT_SHAPE), "n_classes": N_CLASSES, "records": n_records, "repeats": repeats,
        "batch_sizes": batches, "xla": xla, "infer_batch": INFER_BATCH,
        "baseline": {"architecture": BASELINE_ARCH, "batch": BASELINE_BATCH, "xla": False, "deterministic": True,
                     "epoch_seconds": baseline_epoch_s, "train_ecg_per_s": n_records / baseline_epoch_s,
                     "drift_last_over_first": drift},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "architectures": per_arch,
        "foreign_cpu_share": _foreign_summary(rows),
        "errors": [{k: r[k] for k in ("arch", "batch", "xla", "deterministic", "error")}
                   for r in rows if "error" in r],
        "raw": rows,
    }


def _foreign_summary(rows: list[dict]) -> dict | None:
    shares = [r["cpu"]["foreign_share"] for r in rows if r.get("cpu", {}).get("foreign_share") is not None]
    if not shares:
        return None
    walls = [r["cpu"]["wall_s"] for r in rows if r.get("cpu", {}).get("foreign_share") is not None]
    return {"mean": sum(s * w for s, w in zip(shares, walls)) / sum(walls), "max": max(shares),
            "configurations_over_10pct": sum(s > 0.10 for s in shares)}


def _study_estimate(result: dict) -> dict:
    """Wall time of the full study (paper architectures, one seed) from the measured package-default rates."""
    per_run_eval = result["evaluation"]["per_run_s"]
    runs = []
    for entry in result["architectures"]:
        if not entry["in_paper"]:
            continue
        infer_s = (entry["infer_ms_per_ecg"] or 0) / 1000
        epoch = FULL_TRAIN / entry["train_ecg_per_s"] + FULL_VAL * infer_s
        fixed = entry["warmup_overhead_s"] + (FULL_VAL + 2 * FULL_TEST) * infer_s + per_run_eval
        runs.append({"architecture": entry["architecture"], "epoch_s": epoch, "fixed_s": fixed,
                     "run_s_max": MAX_EPOCHS * epoch + fixed, "run_s_typical": TYPICAL_EPOCHS * epoch + fixed})
    return {
        "train_records": FULL_TRAIN, "val_records": FULL_VAL, "test_records": FULL_TEST,
        "max_epochs": MAX_EPOCHS, "typical_epochs": TYPICAL_EPOCHS, "bootstrap_s_per_run": per_run_eval,
        "runs": runs,
        "total_h_max": sum(r["run_s_max"] for r in runs) / 3600,
        "total_h_typical": sum(r["run_s_typical"] for r in runs) / 3600,
        "bootstrap_share_typical": (len(runs) * per_run_eval / sum(r["run_s_typical"] for r in runs)
                                    if runs else None),
    }


# --------------------------------------------------------------------------- output

def _fmt(value, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def markdown(result: dict) -> str:
    b = result["baseline"]
    lines = [
        f"Training and inference, random inputs {tuple(result['input_shape'])} -> {result['n_classes']} classes, "
        f"{result['records']} records per epoch; training time = median training step over {result['repeats']} "
        f"epochs after a warm-up epoch, x steps per epoch; inference = median of `predict` calls at batch "
        f"{result['infer_batch']}. Baseline: CNN, batch {b['batch']}, no XLA, deterministic "
        f"({b['train_ecg_per_s']:.0f} ECG/s; last/first baseline epoch time {_fmt(b['drift_last_over_first'], '.2f')})."
        + (f" Other processes used {f['mean']:.0%} of the CPUs during the measurements (at most {f['max']:.0%} "
           f"in one configuration; {f['configurations_over_10pct']} configurations above 10%)."
           if (f := result.get("foreign_cpu_share")) else ""),
        "",
        "| architecture | paper | params | train ECG/s (batch 64) | time vs CNN | infer ms/ECG | infer vs CNN | "
        "determinism off speedup | XLA train speedup | XLA infer speedup | best batch (speedup vs 64) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in result["architectures"]:
        best = (f"{e['best_batch']} ({e['best_batch_speedup_vs_64']:.2f}x)" if e.get("best_batch") else "—")
        lines.append(
            f"| {e['architecture']} | {'yes' if e['in_paper'] else ''} | {e['n_parameters']:,} | "
            f"{e['train_ecg_per_s']:.0f} | {e['time_vs_cnn']:.2f}x | {_fmt(e['infer_ms_per_ecg'], '.2f')} | "
            f"{_fmt(e['infer_vs_cnn'], '.2f', 'x')} | {_fmt(e.get('determinism_off_speedup'), '.2f', 'x')} | "
            f"{_fmt(e.get('xla_speedup'), '.2f', 'x')} | {_fmt(e.get('xla_infer_speedup'), '.2f', 'x')} | "
            f"{best} |")
    swept = [e for e in result["architectures"] if len(e["train_ecg_per_s_by_batch"]) > 1]
    if swept:
        batches = sorted({int(k) for e in swept for k in e["train_ecg_per_s_by_batch"]})
        lines += ["", "Training ECG/s by batch size (no XLA, deterministic):", "",
                  "| architecture | " + " | ".join(f"batch {k}" for k in batches) + " |",
                  "| --- |" + " --- |" * len(batches)]
        for e in swept:
            rates = {int(k): v for k, v in e["train_ecg_per_s_by_batch"].items()}
            lines.append(f"| {e['architecture']} | " + " | ".join(_fmt(rates.get(k), '.0f') for k in batches) + " |")
    extra = [e for e in result["architectures"] if e.get("threads_speedup")]
    if extra:
        lines += ["", "TensorFlow threads (batch 64, deterministic, no XLA; speedup = default threads' epoch time "
                  "/ this setting's):", ""]
        for e in extra:
            parts = []
            for setting, value in (e.get("threads_speedup") or {}).items():
                parts.append(f"threads intra:inter={setting} {value:.2f}x")
            lines.append(f"- {e['architecture']}: " + "; ".join(parts))
    if result["errors"]:
        lines += ["", "Failed configurations:", ""]
        lines += [f"- {r['arch']} batch {r['batch']} xla={r['xla']} deterministic={r['deterministic']}: {r['error']}"
                  for r in result["errors"]]
    return "\n".join(lines)


def markdown_estimate(result: dict) -> str:
    s = result["study_estimate"]
    ev = result["evaluation"]
    lines = [
        f"Full study estimate on this machine: {len(s['runs'])} paper architectures, one seed, PTB-XL at 100 Hz "
        f"(~{s['train_records']:,} training ECGs per epoch + ~{s['val_records']:,} validation ECGs inferred per "
        f"epoch), package defaults (batch 64, no XLA, deterministic). Per run also: tracing, validation and test "
        f"predictions, and the test-fold bootstrap ({BOOTSTRAP_RESAMPLES} resamples x 2 threshold policies, "
        f"{ev['per_resample_s'] * 1000:.0f} ms per resample on {ev['records']:,} x {N_CLASSES} = "
        f"{ev['per_run_s'] / 60:.1f} min per run).",
        "",
        f"| architecture | s/epoch | fixed s/run | {s['typical_epochs']} epochs (typical) | "
        f"{s['max_epochs']} epochs (upper bound) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in s["runs"]:
        lines.append(f"| {r['architecture']} | {r['epoch_s']:.0f} | {r['fixed_s']:.0f} | "
                     f"{r['run_s_typical'] / 60:.0f} min | {r['run_s_max'] / 60:.0f} min |")
    lines.append(f"| **total per seed** | | | **{s['total_h_typical']:.1f} h** | **{s['total_h_max']:.1f} h** |")
    if s.get("bootstrap_share_typical") is not None:
        lines += ["", f"The test-fold bootstrap is {s['bootstrap_share_typical']:.0%} of the typical total "
                  f"({len(s['runs']) * s['bootstrap_s_per_run'] / 60:.0f} min per seed)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        result = _worker(json.loads(Path(argv[1]).read_text()))
        Path(argv[2]).write_text(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--sweep-architectures", nargs="+", default=None,
                        help="architectures timed at every batch size (default: the paper's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--records", type=int, default=512, help="records per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (and predict calls)")
    parser.add_argument("--no-xla", action="store_true",
                        help="skip XLA (determinism off is then timed for the CNN and CNN-BiLSTM only)")
    parser.add_argument("--threads", nargs="*", default=["1:1"], metavar="INTRA:INTER",
                        help="TensorFlow thread settings timed for the CNN and CNN-BiLSTM (default 1:1; "
                             "none: --threads with no value)")
    parser.add_argument("--quick", action="store_true",
                        help="CNN and CNN-BiLSTM only, batch 64, 128 records, 2 repeats (a smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.architectures, args.batch_sizes, args.records, args.repeats = ["cnn", "cnn-bilstm"], [64], 128, 2
    result = run(args.architectures, args.batch_sizes, args.repeats, args.records,
                 sweep_architectures=args.sweep_architectures, xla=not args.no_xla, threads=args.threads)
    print(markdown(result))
    print()
    print(markdown_estimate(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out} ({result['total_seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
