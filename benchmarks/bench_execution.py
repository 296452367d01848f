"""Study execution costs: a small grid's wall time with --jobs 1 and 2, the SLURM path's overhead per
run, and the test-fold bootstrap (a run's fixed cost) on full-size random data.

    python benchmarks/bench_execution.py [--out benchmarks/out/execution.json] [--resamples 100]

Runs the real `ecgkeras study` command (tiny models, 1 epoch, synthetic data) so that the times are
dominated by what the executors add: kernel start, imports, data loading, evaluation, aggregation.
The SLURM numbers come from a single-node cluster on this machine (tests/slurm_cluster.py):
submission -> the run's `started` timestamp (queueing, job start, kernel start, imports, data), and
the run's `finished` timestamp -> the array seen finished by the waiting study (end of job, polling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16], "rnn_units": 8,
        "head_units": 16}
BEFORE = "351b31d"  # the branch point of the execution work: the bootstrap as it was
GRID = ["--architectures", "cnn", "cnn-gru", "--seeds", "0", "1"]


def _study(data: Path, out: Path, *extra: str, env: dict | None = None) -> float:
    args = [sys.executable, "-m", "ecgkeras.cli", "study", "--data-dir", str(data), "--out", str(out), *GRID,
            *[a for k, v in TINY.items() for a in ("-p", k, json.dumps(v))], *extra]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return time.perf_counter() - start


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def grid_wall_times(data: Path, work: Path) -> dict:
    """Wall time of the 2 x 2 grid (with aggregation) with --jobs 1 and --jobs 2."""
    return {f"jobs_{jobs}_s": _study(data, work / f"jobs{jobs}", "--jobs", str(jobs)) for jobs in (1, 2)}


def slurm_overhead(data: Path, work: Path) -> dict:
    """Per-run overhead of --executor slurm on a single-node cluster (2 CPUs, 1 per run)."""
    from slurm_cluster import slurm_cluster

    from ecgkeras.runs import find_runs

    with slurm_cluster(work / "cluster") as env:
        out = work / "slurm"
        wall = _study(data, out, "--executor", "slurm", "--jobs", "2", "--cpus-per-run", "1", "--time", "30",
                      env={"SLURM_CONF": env["SLURM_CONF"]})
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    submitted = (out / "slurm" / "jobs.json").stat().st_mtime  # written right after sbatch returned
    rows = []
    for run in find_runs(out):
        job = jobs[run.run_dir.relative_to(out).as_posix()]
        task_end = next(Path(job["log"]).parent.glob("*_result.pkl")).stat().st_mtime  # submitit's last write
        rows.append({"run": run.run_dir.relative_to(out).as_posix(), "job": job["job_id"],
                     "submitted_to_run_started_s": _timestamp(run.started) - submitted,
                     "record_written_to_task_end_s": task_end - _timestamp(run.finished)})
    return {"wall_s": wall, "runs": rows,
            "summary_written_after_submission_s": (out / "summary" / "03_aggregate_results.ipynb").stat().st_mtime
            - submitted}


def _evaluation_before():
    """evaluation.py as it was before this benchmark's change (commit BEFORE), imported from git."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{BEFORE}:ecgkeras/evaluation.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="ecgkeras-before-")) / "evaluation_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("evaluation_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bootstrap_cost(resamples: int) -> dict:
    """Seconds per resample of a run's test-fold bootstrap (2,200 x 23, both threshold policies):
    before (serial, six precision/recall/F1 calls per policy), after on one core, after on all cores."""
    from ecgkeras import evaluation

    rng = np.random.default_rng(0)
    y_true = (rng.random((2200, 23)) < 0.08).astype(np.uint8)
    y_prob = np.clip(y_true * 0.3 + rng.random((2200, 23)) * 0.7, 0, 1).astype(np.float32)
    thresholds = {"fixed": 0.5, "tuned": evaluation.tune_thresholds(y_true, y_prob)}
    result = {"resamples": resamples, "cores": evaluation.cpu_count()}
    intervals = {}
    for name, module, minimum in (("before", _evaluation_before(), None),
                                  ("after_one_core", evaluation, resamples + 1),
                                  ("after_all_cores", evaluation, max(1, resamples // evaluation.cpu_count()))):
        if minimum is not None:
            evaluation.PARALLEL_MIN_RESAMPLES = minimum
        start = time.perf_counter()
        intervals[name] = module.bootstrap_intervals(y_true, y_prob, thresholds, bootstrap_resamples=resamples)
        result[f"{name}_ms_per_resample"] = (time.perf_counter() - start) / resamples * 1000
    result["identical_intervals"] = all(value == intervals["before"] for value in intervals.values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "execution.json")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=("grid", "slurm", "bootstrap"))
    args = parser.parse_args()
    from ecgkeras.data.synthetic import make_synthetic_ptbxl

    result = {"load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="ecgkeras-bench-execution-") as tmp:
        work = Path(tmp)
        data = make_synthetic_ptbxl(work / "ptbxl", n_records=300, seed=7, progress=False)
        if "bootstrap" not in args.skip:
            result["bootstrap"] = bootstrap_cost(args.resamples)
            print(result["bootstrap"], flush=True)
        if "grid" not in args.skip:
            result["grid"] = grid_wall_times(data, work)
            print(result["grid"], flush=True)
        if "slurm" not in args.skip:
            result["slurm"] = slurm_overhead(data, work)
            print(result["slurm"], flush=True)
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
