"""Peak memory and time on a full-size PTB-XL (21,799 records), and the streamed input pipeline's speed.

- memory: the first load (empty cache), the cached load and one training epoch through `run_experiment`
  (CNN-BiLSTM, package defaults, `epochs=1`, no bootstrap), each in a fresh Python process; peak resident
  memory is that process's `VmHWM` (/proc/self/status), the signal size is the cache's array.
- throughput: in one process, one epoch of CNN-BiLSTM over `--throughput-records` training records fed
  (a) the old way, the records standardized in memory and fed by `from_tensor_slices`, and (b) by
  `make_dataset` from the memory map, standardized per batch; the two alternate `--repeats` times after a
  warm-up epoch of each. Also the pipeline alone (batches read, standardized, not trained on).

Full-size data: `--data-dir` (e.g. `ecgkeras synth --out DIR --records 21799`), or by default a folder
under `--work` whose `ptbxl_database.csv` repeats the rows of `--source` (the real subset) to 21,799
records, with the record folders symlinked: the same signal size, the same number of wfdb reads. Usage:

    .venv/bin/python benchmarks/bench_memory.py [--rates 100 500] [--work /tmp/ecgkeras-memory]
        [--data-dir DIR | --source PTBXL_DIR] [--skip memory|throughput] [--out benchmarks/out/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
DEFAULT_OUT = REPO / "benchmarks" / "out" / "memory.json"
FULL_RECORDS = 21_799
STEPS = ("first_load", "cached_load", "epoch")
# Measured by issue 9 on `ecgkeras synth --records 21799` with the in-memory data layer (commit 351b31d).
BEFORE = {100: {"signals_gb": 1.00, "first_load": (3.56, 51), "cached_load": (4.55, 2.5), "epoch": (5.37, None)},
          500: {"signals_gb": 5.02, "first_load": (11.57, 80), "cached_load": (16.48, 8.9),
                "epoch": (20.0, None)}}  # 500 Hz epoch: "over 20 GB after 116 s", stopped there


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def repeated_dataset(source: Path, dest: Path, n_records: int = FULL_RECORDS) -> Path:
    """A PTB-XL folder whose database repeats `source`'s rows to `n_records` (records symlinked)."""
    import pandas as pd

    if (dest / "ptbxl_database.csv").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    database = pd.read_csv(source / "ptbxl_database.csv", index_col="ecg_id")
    rows = database.iloc[[i % len(database) for i in range(n_records)]].copy()
    rows.index = pd.RangeIndex(1, n_records + 1, name="ecg_id")
    for name in ("scp_statements.csv",):
        (dest / name).write_bytes((source / name).read_bytes())
    for folder in ("records100", "records500"):
        if not (dest / folder).exists():
            (dest / folder).symlink_to((source / folder).resolve())
    rows.to_csv(dest / "ptbxl_database.csv")
    return dest


def child(step: str, rate: int, data_dir: str, cache_dir: str) -> dict:
    """One measurement in this (fresh) process."""
    import logging

    logging.getLogger("ecgkeras").setLevel(logging.ERROR)
    from ecgkeras.data.ptbxl import load_ptbxl

    if step == "epoch":
        from ecgkeras.runs import RunConfig, run_experiment

        baseline = peak_rss()
        config = RunConfig.from_parameters(data_dir=data_dir, sampling_rate=rate, epochs=1, verbose=0,
                                           bootstrap_resamples=0, cache_dir=cache_dir)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ecgkeras-memory-run-") as run_dir:
            record = run_experiment(config, run_dir, progress=False)
            epoch_s = record.timings["training_seconds"]
        return {"seconds": time.perf_counter() - start, "epoch_seconds": epoch_s, "peak_rss": peak_rss(),
                "baseline_rss": baseline}
    baseline = peak_rss()
    start = time.perf_counter()
    data = load_ptbxl(data_dir, rate, cache_dir=cache_dir, progress=False)
    seconds = time.perf_counter() - start
    signals = getattr(data, "signals", data.X)  # (`--code` may be a checkout from before streaming)
    return {"seconds": seconds, "peak_rss": peak_rss(), "baseline_rss": baseline,
            "signals_bytes": int(signals.nbytes), "records": int(len(signals)), "kept": int(len(data.ecg_ids))}


def throughput(rate: int, data_dir: str, cache_dir: str, n_records: int, repeats: int) -> dict:
    """Old in-memory feeding vs the streamed pipeline, alternating, in this process."""
    import numpy as np
    import tensorflow as tf

    from ecgkeras.data.ptbxl import Standardizer, load_ptbxl
    from ecgkeras.models import build_model
    from ecgkeras.training import TrainingConfig, compile_model, make_dataset, set_seed

    data = load_ptbxl(data_dir, rate, cache_dir=cache_dir, progress=False)
    train = data.train
    train = train._replace(X=train.X.take(slice(0, n_records)), Y=train.Y[:n_records])
    standardizer = Standardizer.fit(train.X)
    config = TrainingConfig(epochs=1, verbose=0)
    set_seed(0)
    model = compile_model(build_model("cnn-bilstm", train.X.shape[1:], len(data.classes), sampling_rate=rate),
                          config, train.Y)

    def old_pipeline():
        X = standardizer.transform(np.asarray(train.X))
        return tf.data.Dataset.from_tensor_slices((X, train.Y.astype(np.float32))).shuffle(
            len(X), seed=0, reshuffle_each_iteration=True).batch(config.batch_size).prefetch(tf.data.AUTOTUNE)

    def new_pipeline():
        return make_dataset(train.X, train.Y, config.batch_size, shuffle=True, seed=0, standardizer=standardizer)

    pipelines = {"in_memory": old_pipeline(), "streamed": new_pipeline()}
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    for name, dataset in pipelines.items():  # warm-up: tracing, first pass over the files
        model.fit(dataset, epochs=1, verbose=0)
    for _ in range(repeats):
        for name, dataset in pipelines.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    pipeline_only = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _batch in new_pipeline():
            pass
        pipeline_only.append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"sampling_rate": rate, "records": n_records, "seconds": median, "seconds_all": times,
            "ecg_per_s": {name: n_records / s for name, s in median.items()},
            "streamed_vs_in_memory": median["in_memory"] / median["streamed"],
            "pipeline_only_ecg_per_s": n_records / statistics.median(pipeline_only),
            "pipeline_share_of_epoch": statistics.median(pipeline_only) / median["streamed"]}


def run_child(*args: str, code: Path = REPO) -> dict:
    """`child(*args)` in a fresh process importing ecgkeras from `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    gb = 1e9
    lines = ["| rate | signals | step | before: peak RSS (time) | after: peak RSS (time) | after, over the "
             "process's baseline |", "| --- | --- | --- | --- | --- | --- |"]
    names = {"first_load": "first load", "cached_load": "cached load", "epoch": "training, 1 epoch"}
    for rate_result in result.get("memory", []):
        rate = rate_result["sampling_rate"]
        before = BEFORE[rate]
        for step in (step for step in STEPS if step in rate_result):
            after = rate_result[step]
            peak, seconds = before[step]
            if rate == 500 and step == "epoch":
                old = "over 20 GB after 116 s (stopped)"
            else:
                old = f"{peak:.2f} GB" + (f" ({seconds:g} s)" if seconds else "")
            took = after.get("epoch_seconds", after["seconds"])
            detail = f" ({after['seconds']:.0f} s in all, epoch {took:.0f} s)" if step == "epoch" \
                else f" ({after['seconds']:.1f} s)"
            lines.append(f"| {rate} Hz | {rate_result['signals_bytes'] / gb:.2f} GB (before {before['signals_gb']:.2f}) | "
                         f"{names[step]} | {old} | {after['peak_rss'] / gb:.2f} GB{detail} | "
                         f"{(after['peak_rss'] - after['baseline_rss']) / gb:.2f} GB |")
    for t in result.get("throughput", []):
        lines += ["", f"Training throughput at {t['sampling_rate']} Hz, CNN-BiLSTM, batch 64, {t['records']} records, "
                      f"median of the alternating epochs: in memory {t['ecg_per_s']['in_memory']:.0f} ECG/s, "
                      f"streamed {t['ecg_per_s']['streamed']:.0f} ECG/s ({t['streamed_vs_in_memory']:.3f}x); "
                      f"the pipeline alone delivers {t['pipeline_only_ecg_per_s']:.0f} ECG/s "
                      f"({t['pipeline_share_of_epoch']:.1%} of a streamed epoch's time)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(child(argv[1], int(argv[2]), argv[3], argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ecgkeras-memory"))
    parser.add_argument("--data-dir", type=Path, help="a full-size PTB-XL (default: repeat --source)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--skip", choices=["memory", "throughput"])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the ecgkeras to measure, e.g. `git archive 351b31d ecgkeras | tar -x -C DIR` "
                             "for the in-memory data layer (the 'before' case)")
    parser.add_argument("--throughput-records", type=int, default=3200)
    parser.add_argument("--throughput-rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or repeated_dataset(args.source, args.work / "ptbxl-full")
    cache_dir = args.work / "cache"
    result: dict = {"benchmark": "memory", "data_dir": str(data_dir), "memory": [], "throughput": []}
    for rate in args.rates:
        if args.skip != "memory":
            if "first_load" in args.steps:  # from an empty cache
                for stale in cache_dir.glob(f"ptbxl-{rate}hz-*"):
                    subprocess.run(["rm", "-rf", str(stale)], check=True)
            rate_result: dict = {"sampling_rate": rate}
            for step in args.steps:
                rate_result[step] = run_child(step, str(rate), str(data_dir), str(cache_dir), code=args.code)
                print(rate, step, rate_result[step], file=sys.stderr, flush=True)
            rate_result["signals_bytes"] = next(r["signals_bytes"] for r in rate_result.values()
                                                if isinstance(r, dict) and "signals_bytes" in r)
            result["memory"].append(rate_result)
        if args.skip != "throughput" and rate in args.throughput_rates:
            result["throughput"].append(throughput(rate, str(data_dir), str(cache_dir), args.throughput_records,
                                                   args.repeats))
            print(rate, "throughput", result["throughput"][-1]["ecg_per_s"], file=sys.stderr, flush=True)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
