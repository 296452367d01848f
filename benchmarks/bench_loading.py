"""Loading speed of `load_ptbxl` on the real PTB-XL subset, each figure against a baseline run alongside.

- first load: `load_ptbxl(..., use_cache=True)` into a fresh, empty cache folder (reads every record
  with wfdb, `n_jobs` default, streaming into the cache) vs a plain serial loop of `wfdb.rdsamp` over the
  same records;
- cached load: `load_ptbxl` again with that cache vs `numpy.load` of the same cache `.npy` into memory;
- extrapolation of both times to the full PTB-XL (21,799 records), linear in the record count;
- pools (on by default, `--no-pools` to skip): reading the same records with `ecgkeras.data.ptbxl.read_ecg`
  serially (`read_signals` default), in a thread pool (`read_signals(n_jobs=THREADS)`), and in a
  `ProcessPoolExecutor` (spawn and forkserver contexts, one worker per CPU, `map(..., chunksize=64)`),
  each stacked into one array. A process pool's time
  includes starting it; its steady rate is timed again on the warm pool, and the full-PTB-XL
  extrapolation is start-up + 21,799 records at the steady rate.

Every timing is the median of `--repeats` runs (cached load and np.load: of `--repeats` x 5 runs, as they
take milliseconds); the runs of a figure and its baseline alternate, so both see the same page-cache
state. Usage:

    .venv/bin/python benchmarks/bench_loading.py [--data-dir DIR] [--repeats 3] [--rates 100 500]
        [--no-pools | --pools-only] [--chunksize 64]

The records are read from the page cache after the first repeat (73 MB here); a first read of the full
PTB-XL from a cold disk can be bound by the disk instead.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecgkeras.data import ptbxl as ecg_data
from ecgkeras.data.ptbxl import load_ptbxl

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
DEFAULT_OUT = REPO / "benchmarks" / "out" / "loading.json"
FULL_RECORDS = 21_799  # PTB-XL's record count (v1.0.3)
CACHED_TRIALS = 5  # cached load and np.load are timed this many times per repeat
POOL_CONTEXTS = ("spawn", "forkserver")
THREADS = 4  # the thread pool compared with serial reading (the package's default until it was measured)


def _timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _rdsamp_loop(data_dir: Path, filenames: list[str]) -> int:
    total = 0
    for name in filenames:
        signal, _ = wfdb.rdsamp(str(data_dir / name))
        total += signal.shape[0]
    return total


def _metadata(data_dir: Path) -> None:
    """CSV parsing and labels, as in `load_ptbxl`, without the signals."""
    statements = ecg_data.read_statements(data_dir)
    ecg_data.label_matrix(ecg_data.read_database(data_dir)["scp_codes"], statements, "subclass")


def bench_rate(data_dir: Path, rate: int, repeats: int) -> dict:
    """Timings for one sampling rate (seconds, medians over `repeats`)."""
    database = pd.read_csv(data_dir / ecg_data.DATABASE_CSV, index_col="ecg_id")
    filenames = database[ecg_data.FILENAME_COLUMN[rate]].tolist()
    n = len(filenames)  # load_ptbxl reads (and caches) every record, dropped ones too
    times: dict[str, list[float]] = {"rdsamp_loop": [], "first_load": [], "cached_load": [], "np_load": [],
                                  "metadata": []}
    n_loaded = cache_bytes = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="ecgkeras-bench-") as cache_dir:
            seconds, _ = _timed(lambda: _rdsamp_loop(data_dir, filenames))
            times["rdsamp_loop"].append(seconds)
            seconds, first = _timed(lambda: load_ptbxl(data_dir, rate, cache_dir=cache_dir,
                                                       use_cache=True, progress=False))
            times["first_load"].append(seconds)
            (npy,) = Path(cache_dir).glob("ptbxl-*/signals.npy")
            for _ in range(CACHED_TRIALS):  # sub-second figures: several alternating samples each
                seconds, cached = _timed(lambda: load_ptbxl(data_dir, rate, cache_dir=cache_dir,
                                                            use_cache=True, progress=False))
                times["cached_load"].append(seconds)
                seconds, raw = _timed(lambda: np.load(npy))  # the same bytes, read fully into memory
                times["np_load"].append(seconds)
                seconds, _ = _timed(lambda: _metadata(data_dir))  # the part of a cached load that is not the array
                times["metadata"].append(seconds)
                if not np.array_equal(cached.X, first.X) or raw.shape[0] != n:
                    raise RuntimeError("cached load differs from first load")
                del cached, raw
            n_loaded, cache_bytes = len(first.ecg_ids), npy.stat().st_size
            del first
    median = {key: statistics.median(values) for key, values in times.items()}
    return {
        "sampling_rate": rate,
        "records_read": n,
        "records_returned": n_loaded,
        "cache_bytes": cache_bytes,
        "seconds": median,
        "seconds_all": times,
        "rdsamp_records_per_s": n / median["rdsamp_loop"],
        "first_load_records_per_s": n / median["first_load"],
        "first_load_speedup_vs_rdsamp": median["rdsamp_loop"] / median["first_load"],
        "cached_load_records_per_s": n / median["cached_load"],
        "cached_over_np_load": median["cached_load"] / median["np_load"],
        "full_ptbxl_first_load_s": median["first_load"] * FULL_RECORDS / n,
        "full_ptbxl_cached_load_s": median["cached_load"] * FULL_RECORDS / n,
        "full_ptbxl_cache_gb": cache_bytes * FULL_RECORDS / n / 1e9,
    }


def _read_serial(paths: list[Path], rate: int) -> np.ndarray:
    return np.stack([ecg_data.read_ecg(path, rate) for path in paths])


def _read_processes(pool: concurrent.futures.ProcessPoolExecutor, paths: list[Path], rate: int,
                    chunksize: int) -> np.ndarray:
    return np.stack(list(pool.map(ecg_data.read_ecg, paths, itertools.repeat(rate), chunksize=chunksize)))


def bench_pools(data_dir: Path, rate: int, repeats: int, chunksize: int = 64,
                workers: int | None = None) -> dict:
    """Serial vs thread pool (`read_signals`) vs process pools, reading every record (seconds, medians)."""
    database = pd.read_csv(data_dir / ecg_data.DATABASE_CSV, index_col="ecg_id")
    filenames = database[ecg_data.FILENAME_COLUMN[rate]].tolist()
    paths = [data_dir / name for name in filenames]
    n, workers = len(paths), workers or os.cpu_count() or 1
    times: dict[str, list[float]] = {"serial": [], "threads": []}
    for context in POOL_CONTEXTS:
        times[f"{context}_total"], times[f"{context}_warm"] = [], []
    for _ in range(repeats):  # the modes alternate, so they see the same page-cache state
        seconds, reference = _timed(lambda: _read_serial(paths, rate))
        times["serial"].append(seconds)
        seconds, threaded = _timed(lambda: ecg_data.read_signals(data_dir, filenames, rate, THREADS,
                                                                 progress=False))
        times["threads"].append(seconds)
        results = [threaded]
        for context in POOL_CONTEXTS:
            start = time.perf_counter()  # start-up (interpreters, imports) is part of a first load
            with concurrent.futures.ProcessPoolExecutor(workers, multiprocessing.get_context(context)) as pool:
                results.append(_read_processes(pool, paths, rate, chunksize))
                times[f"{context}_total"].append(time.perf_counter() - start)
                seconds, _ = _timed(lambda: _read_processes(pool, paths, rate, chunksize))
                times[f"{context}_warm"].append(seconds)
        if not all(np.array_equal(result, reference) for result in results):
            raise RuntimeError("pools read different signals than the serial loop")
        del results, threaded, reference
    median = {key: statistics.median(values) for key, values in times.items()}
    full = {"serial": median["serial"] * FULL_RECORDS / n, "threads": median["threads"] * FULL_RECORDS / n}
    startup = {}
    for context in POOL_CONTEXTS:
        startup[context] = max(0.0, median[f"{context}_total"] - median[f"{context}_warm"])
        full[context] = startup[context] + median[f"{context}_warm"] * FULL_RECORDS / n
    return {
        "sampling_rate": rate, "records": n, "workers": workers, "chunksize": chunksize,
        "thread_jobs": THREADS,
        "seconds": median, "seconds_all": times, "startup_s": startup,
        "speedup_vs_serial": {key: median["serial"] / value for key, value in median.items()},
        "speedup_vs_threads": {key: median["threads"] / value for key, value in median.items()},
        "full_ptbxl_s": full,
        "full_ptbxl_speedup_vs_threads": {key: full["threads"] / value for key, value in full.items()},
    }


def _drop_page_cache() -> bool:
    """Ask the kernel to forget cached file pages (root only); False when not permitted."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def bench_cold(data_dir: Path, rate: int, repeats: int) -> dict | None:
    """Serial loop vs thread pool with the record files evicted from the page cache (disk-bound reads)."""
    filenames = pd.read_csv(data_dir / ecg_data.DATABASE_CSV)[ecg_data.FILENAME_COLUMN[rate]].tolist()
    paths = [data_dir / name for name in filenames]
    times: dict[str, list[float]] = {"serial": [], "threads": []}
    for _ in range(repeats):
        for mode, read in (("serial", lambda: _read_serial(paths, rate)),
                           ("threads", lambda: ecg_data.read_signals(data_dir, filenames, rate, THREADS,
                                                                     progress=False))):
            if not _drop_page_cache():
                return None
            times[mode].append(_timed(read)[0])
    median = {mode: statistics.median(values) for mode, values in times.items()}
    return {"sampling_rate": rate, "records": len(paths), "seconds": median, "seconds_all": times,
            "threads_speedup_vs_serial": median["serial"] / median["threads"]}


def run(data_dir: str | Path = DEFAULT_DATA_DIR, rates=(100, 500), repeats: int = 3, *, loads: bool = True,
        pools: bool = True, chunksize: int = 64) -> dict:
    """Benchmark every rate in `rates` (`loads`: load_ptbxl; `pools`: threads vs processes); JSON-ready."""
    data_dir = Path(data_dir)
    if not (data_dir / ecg_data.DATABASE_CSV).is_file():
        raise SystemExit(f"PTB-XL not found at {data_dir} (pass --data-dir or set PTBXL_DIR)")
    logger = logging.getLogger("ecgkeras")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the per-load "dropped N records" notice
    try:
        results = [bench_rate(data_dir, int(rate), repeats) for rate in rates] if loads else []
        pool_results = [bench_pools(data_dir, int(rate), repeats, chunksize) for rate in rates] if pools else []
        cold_results = [bench_cold(data_dir, int(rate), repeats) for rate in rates] if pools else []
    finally:
        logger.setLevel(level)
    return {
        "benchmark": "loading",
        "data_dir": str(data_dir),
        "repeats": repeats,
        "cached_trials_per_repeat": CACHED_TRIALS,
        "full_records": FULL_RECORDS,
        "n_jobs_default": ecg_data.DEFAULT_READ_JOBS,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "wfdb": getattr(wfdb, "__version__", "?")},
        "rates": results,
        "pools": pool_results,
        "cold": [c for c in cold_results if c is not None],  # empty when the page cache cannot be dropped
    }


def markdown(result: dict) -> str:
    lines = [
        f"Loading, real PTB-XL subset, median of {result['repeats']} repeats "
        f"(cached load and np.load: {result['repeats'] * CACHED_TRIALS} samples) "
        f"({result['machine']['cpu_count']} CPUs, n_jobs={result['n_jobs_default']})",
        "",
        "| rate | records | rdsamp loop rec/s | first load rec/s | first load vs rdsamp | "
        "cached load s | of which CSVs+labels s | np.load s | cached / np.load | full PTB-XL first load | full PTB-XL cached load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rates"]:
        s = r["seconds"]
        lines.append(
            f"| {r['sampling_rate']} Hz | {r['records_read']} | {r['rdsamp_records_per_s']:.0f} | "
            f"{r['first_load_records_per_s']:.0f} | {r['first_load_speedup_vs_rdsamp']:.2f}x | "
            f"{s['cached_load']:.3f} | {s['metadata']:.3f} | {s['np_load']:.3f} | {r['cached_over_np_load']:.2f}x | "
            f"{r['full_ptbxl_first_load_s']:.0f} s | {r['full_ptbxl_cached_load_s']:.1f} s "
            f"({r['full_ptbxl_cache_gb']:.1f} GB) |")
    if not result["rates"]:
        lines = []
    if result.get("pools"):
        p0 = result["pools"][0]
        lines += ([""] if lines else []) + [
            f"Reading every record with `read_ecg`, serial vs thread pool ({p0['thread_jobs']} threads) vs process pools ({p0['workers']} workers, chunksize {p0['chunksize']}), median of "
            f"{result['repeats']}; a process pool's time includes its start-up (in parentheses), \"warm\" is a "
            f"second map on the running pool; full PTB-XL = start-up + {FULL_RECORDS:,} records at the warm rate.",
            "",
            "| rate | records | serial s | threads s | spawn s (start-up) | forkserver s (start-up) | "
            "spawn warm s | forkserver warm s | threads vs serial | spawn vs threads | forkserver vs threads | "
            "full PTB-XL threads | full PTB-XL spawn | full PTB-XL forkserver |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in result["pools"]:
            s, up, full = p["seconds"], p["startup_s"], p["full_ptbxl_s"]
            vs = p["speedup_vs_threads"]
            lines.append(
                f"| {p['sampling_rate']} Hz | {p['records']} | {s['serial']:.2f} | {s['threads']:.2f} | "
                f"{s['spawn_total']:.2f} ({up['spawn']:.2f}) | {s['forkserver_total']:.2f} ({up['forkserver']:.2f}) | "
                f"{s['spawn_warm']:.2f} | {s['forkserver_warm']:.2f} | {p['speedup_vs_serial']['threads']:.2f}x | "
                f"{vs['spawn_total']:.2f}x | {vs['forkserver_total']:.2f}x | {full['threads']:.0f} s | "
                f"{full['spawn']:.0f} s ({p['full_ptbxl_speedup_vs_threads']['spawn']:.2f}x) | "
                f"{full['forkserver']:.0f} s ({p['full_ptbxl_speedup_vs_threads']['forkserver']:.2f}x) |")
    if result.get("cold"):
        lines += ["", f"Cold page cache (record files evicted before each read; disk-bound), serial loop vs "
                      f"thread pool, median of {result['repeats']}:", "",
                  "| rate | records | serial s | threads s | threads vs serial |", "| --- | --- | --- | --- | --- |"]
        for c in result["cold"]:
            lines.append(f"| {c['sampling_rate']} Hz | {c['records']} | {c['seconds']['serial']:.2f} | "
                         f"{c['seconds']['threads']:.2f} | {c['threads_speedup_vs_serial']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    parser.add_argument("--no-pools", action="store_true", help="skip the threads-vs-processes comparison")
    parser.add_argument("--pools-only", action="store_true", help="only the threads-vs-processes comparison")
    parser.add_argument("--chunksize", type=int, default=64, help="process pool map chunksize")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = run(args.data_dir, args.rates, args.repeats, loads=not args.pools_only, pools=not args.no_pools,
                 chunksize=args.chunksize)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
