"""Run the loading, training and quality benchmarks in sequence and write `benchmarks/RESULTS.md`.

    .venv/bin/python benchmarks/run_all.py [--quick] [--data-dir DIR] [--out benchmarks/RESULTS.md]

Defaults take about 20 minutes on 2 CPU cores; `--quick` (a smoke test of every benchmark, a few
minutes) writes to `benchmarks/out/RESULTS-quick.md` unless `--out` is given. Each benchmark also
writes its JSON to `benchmarks/out/` (loading.json, training.json, quality.json) and can run alone
with more options: see `bench_loading.py`, `bench_training.py`, `bench_quality.py`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_loading  # noqa: E402
import bench_quality  # noqa: E402
import bench_training  # noqa: E402

from ecgkeras.training.config import CPU_FEATURES, cpu_features, cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"
DEFAULT_RESULTS = REPO / "benchmarks" / "RESULTS.md"


# --------------------------------------------------------------------------- machine

def _spin(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def parallel_check(n: int = 10_000_000, repeats: int = 3) -> dict:
    """Pure-Python work: one process alone vs one per CPU at once (1.0 = CPUs fully parallel)."""
    cpus = os.cpu_count() or 1
    alone, together = [], []
    with multiprocessing.get_context("spawn").Pool(cpus) as pool:
        pool.map(_spin, [1000] * cpus)  # start the workers
        for _ in range(repeats):
            alone.append(pool.apply(_spin, (n,)))
            start = time.perf_counter()
            pool.map(_spin, [n] * cpus, chunksize=1)
            together.append(time.perf_counter() - start)
    alone_s, together_s = sorted(alone)[len(alone) // 2], sorted(together)[len(together) // 2]
    return {"cpus": cpus, "one_process_s": alone_s, "all_cpus_s": together_s,
            "parallel_efficiency": alone_s / together_s}


def machine() -> dict:
    """The machine a benchmark ran on: CPU model and instruction sets, memory, OS, library versions, date."""
    mem_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    os_name = platform.platform()
    if Path("/etc/os-release").is_file():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.platform()})"
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "numpy", "scikit-learn", "wfdb", "ecgkeras"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    with open("/proc/cpuinfo") as handle:
        virtual = "hypervisor" in handle.read()  # a CPU flag set under a hypervisor
    return {"cpu_model": cpu_model() or "?", "cpu_features": cpu_features(), "cpus": os.cpu_count(),
            "memory_gb": mem_kb / 1024**2, "os": os_name,
            "virtual_machine": virtual, "versions": versions,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# --------------------------------------------------------------------------- report

def _range(values, spec: str = ".2f", suffix: str = "x") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    low, high = min(values), max(values)
    return f"{low:{spec}}{suffix}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}}-{high:{spec}}{suffix}"


def findings(results: dict) -> list[str]:
    """Short, data-driven conclusions (each from figures in the tables below)."""
    train, loading, quality = results["training"], results["loading"], results["quality"]
    archs = train["architectures"]
    est = train["study_estimate"]
    paper = [e for e in archs if e["in_paper"]]
    drift = train["baseline"].get("drift_last_over_first")
    noise = f" (the CNN baseline's own first/last drift: {drift:.2f}x)" if drift else ""
    hybrids = [e for e in paper if e["architecture"] != "cnn"]
    train_speed = _range([1 / e["time_vs_cnn"] for e in hybrids])
    infer_speed = _range([1 / e["infer_vs_cnn"] for e in hybrids if e["infer_vs_cnn"]])
    out = [f"Relative cost: the paper's hybrids train at {train_speed} the CNN's speed and infer at {infer_speed}; "
           f"the CNN trains at {train['baseline']['train_ecg_per_s']:.0f} ECG/s here."]
    xla = [e.get("xla_speedup") for e in archs if e.get("xla_speedup")]
    if xla:
        verdict = "slower: keep `jit_compile=False`" if max(xla) < 1.0 else "faster for some architectures"
        out.append(f"XLA: training speedup {_range(xla)} ({verdict}); inference "
                   f"{_range([e.get('xla_infer_speedup') for e in archs])}. Keras ignores `jit_compile=True` "
                   "while op determinism is on (the package default), so XLA only takes effect with "
                   "`deterministic=False`.")
    det = [e.get("determinism_off_speedup") for e in archs if e.get("determinism_off_speedup")]
    if det:
        verdict = ("determinism costs nothing measurable on this CPU; keep it on" if max(det) < 1.1 else
                   f"turning it off is up to {max(det):.2f}x faster, at the price of run-to-run reproducibility")
        out.append(f"Op determinism off (a separate subprocess): {_range(det)} the deterministic speed{noise}; "
                   f"{verdict}.")
    best = [e for e in archs if e.get("best_batch")]
    if best:
        top = max(best, key=lambda e: e["best_batch_speedup_vs_64"])
        out.append(f"Batch size: the best of {', '.join(str(b) for b in train['batch_sizes'])} is at most "
                   f"{top['best_batch_speedup_vs_64']:.2f}x faster than 64 ({top['architecture']}, batch "
                   f"{top['best_batch']}); 64 (the package default) is as fast as any for "
                   f"{sum(e['best_batch'] == 64 or e['best_batch_speedup_vs_64'] < 1.05 for e in best)} of "
                   f"{len(best)} architectures (within 5%). Batch size changes results, so it is not a free win.")
    threads = [v for e in archs for v in (e.get("threads_speedup") or {}).values()]
    if threads:
        verdict = "keep the default" if max(threads) < 1.05 else "worth trying on this machine"
        settings = ", ".join(sorted({k for e in archs for k in (e.get("threads_speedup") or {})}))
        out.append(f"TensorFlow threads intra:inter={settings}: {_range(threads)} the default speed; {verdict}.")
    out.append(f"Full study, one seed, package defaults: about {est['total_h_typical']:.1f} h (15 epochs per run) "
               f"to {est['total_h_max']:.1f} h (30 epochs) on this machine; the test-fold bootstrap "
               f"(1000 resamples x 2 policies) is {est['bootstrap_share_typical']:.0%} of the typical figure.")
    if loading.get("pools"):
        parts = []
        for p in loading["pools"]:
            best_ctx = max(("spawn", "forkserver"), key=lambda c: p["full_ptbxl_speedup_vs_threads"][c])
            parts.append(f"{p['sampling_rate']} Hz: threads {p['speedup_vs_serial']['threads']:.2f}x the serial "
                         f"loop's speed; a {best_ctx} process pool {p['full_ptbxl_speedup_vs_threads'][best_ctx]:.2f}x "
                         f"the thread pool's, extrapolated to the full PTB-XL ({p['full_ptbxl_s']['threads']:.0f} s -> "
                         f"{p['full_ptbxl_s'][best_ctx]:.0f} s)")
        out.append("First load (reading WFDB records, once; then cached): " + "; ".join(parts) + ".")
    if loading.get("cold"):
        out.append("With a cold page cache (disk-bound, as on a first load after download) the thread pool reads "
                   + ", ".join(f"{c['threads_speedup_vs_serial']:.2f}x as fast as the serial loop at "
                               f"{c['sampling_rate']} Hz" for c in loading["cold"])
                   + ". So the thread pool gives no speedup on this machine (wfdb parses headers in Python, "
                   "under the GIL). A process pool would save about 20 s per rate on the full dataset, once, "
                   "before the cache exists, but would force a `__main__` guard on every user script that "
                   "calls `load_ptbxl`; the package reads serially by default (`n_jobs=1`; threads with `n_jobs` > 1).")
    rows = quality["architectures"]
    aurocs = [r["test"]["tuned"]["macro_auroc"] for r in rows]
    low = [r for r in rows if r["test"]["tuned"]["macro_auroc"] <= 0.55]
    text = (f"Real data: test macro-AUROC {_range(aurocs, '.2f', '')} on the 500-ECG subset "
            f"({sum(a > 0.6 for a in aurocs)} of {len(rows)} architectures above 0.6)")
    if low:
        text += ("; " + ", ".join(f"{r['display_name']} (best epoch {r['timing_best_epoch']} of "
                                  f"{r['timing_epochs_run']})" for r in low)
                 + f" did not learn before early stopping (patience 8 on a {quality['data']['n_val']}-ECG validation "
                 "fold) ended the run")
    out.append(text + ".")
    return out


def _share(cpu: dict | None) -> str:
    return "?" if not cpu or cpu.get("foreign_share") is None else f"{cpu['foreign_share']:.0%}"


def report(results: dict) -> str:
    m, v = results["machine"], results["machine"]["versions"]
    par = results["parallel_check"]
    train, quality = results["training"], results["quality"]
    minutes = {name: seconds / 60 for name, seconds in results["seconds"].items()}
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python benchmarks/run_all.py{' --quick' if results['quick'] else ''}` "
        f"(`make bench`) on {m['date']}; total {sum(minutes.values()):.1f} min "
        f"(loading {minutes['loading']:.1f}, training {minutes['training']:.1f}, quality {minutes['quality']:.1f}). "
        "Every figure is a ratio against a baseline measured in the same run, or a median of repeats; "
        "raw numbers are in `benchmarks/out/*.json`.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in findings(results)],
        "",
        "## Changes taken from these measurements",
        "",
        "- Test-fold bootstrap: both threshold policies now share the resamples and the threshold-free "
        "ranking metrics (AUROC, AUPRC) are computed once per resample: 95.5 s -> 74.4 s per run at 1000 "
        "resamples on 2,200 x 23 (1.28x; measured by `bench_training.bootstrap_cost` before and after the change, "
        "same machine, same session). Metrics stay scikit-learn's.",
        "- `jit_compile=True` with deterministic ops silently did nothing (Keras turns XLA off under op "
        "determinism): `TrainingConfig` now refuses the combination with a one-line error.",
        "- Kept as they were, because they measured fastest or within noise: batch 64, no XLA, deterministic ops, "
        "default TensorFlow threads, the thread pool for reading records (see the loading notes).",
        "",
        "## Machine",
        "",
        "| item | value |",
        "| --- | --- |",
        f"| CPU | {m['cpu_model']}, {m['cpus']} CPUs{' (virtual machine)' if m['virtual_machine'] else ''}; "
        f"{', '.join(m['cpu_features']) or 'none'} of {', '.join(CPU_FEATURES)} |",
        f"| parallel efficiency of the CPUs | {par['parallel_efficiency']:.2f} (pure-Python work, one process "
        f"alone vs {par['cpus']} at once; 1.0 = fully parallel) |",
        f"| memory | {m['memory_gb']:.0f} GB |",
        f"| OS | {m['os']} |",
        f"| GPU | {', '.join(d for d in train['workers'][0]['devices'] if 'GPU' in d) or 'none'} |",
        f"| Python / TensorFlow / Keras | {v['python']} / {v['tensorflow']} / {v['keras']} |",
        f"| NumPy / scikit-learn / wfdb / ecgkeras | {v['numpy']} / {v['scikit-learn']} / {v['wfdb']} / "
        f"{v['ecgkeras']} |",
        f"| load average before / after | {results['load_before']} / {results['load_after']} |",
        "| CPU used by other processes during loading / training / quality | "
        + " / ".join(_share(results["foreign_cpu"].get(name)) for name in ("loading", "training", "quality"))
        + " (share of all CPUs; 0% = the benchmarks had the machine to themselves) |",
        "",
        "## Loading (real PTB-XL subset, 500 records)",
        "",
        bench_loading.markdown(results["loading"]),
        "",
        "## Training and inference cost",
        "",
        bench_training.markdown(train),
        "",
        "## Full-study wall time (estimate)",
        "",
        bench_training.markdown_estimate(train),
        "",
        "Early stopping (patience 8 on validation macro-AUPRC) usually ends a run before 30 epochs; 15 "
        "is a typical figure, 30 the upper bound. More seeds multiply the total; `ecgkeras study --jobs N` "
        "runs N architectures at once, which only helps with more cores than one run keeps busy. "
        + (f"Loading the full PTB-XL once (then cached) adds about "
           f"{results['loading']['rates'][0]['full_ptbxl_first_load_s'] / 60:.1f} min at 100 Hz."
           if results["loading"]["rates"] else ""),
        "",
        "## Quality on real data (PTB-XL subset)",
        "",
        bench_quality.markdown(quality),
        "",
        f"Only {quality['data']['n_train'] + quality['data']['n_val'] + quality['data']['n_test']} ECGs with "
        f"a subclass label ({quality['data']['n_train']} train / {quality['data']['n_val']} validation / "
        f"{quality['data']['n_test']} test), and {quality['data']['classes_with_0_to_3_test_positives']} of "
        f"the {quality['data']['n_classes']} subclasses have 0-3 test positives: the point is that real "
        "data flows through the package's one code path (`RunConfig` + `run_experiment`, the path of "
        "`ecgkeras study`) and the models learn (macro-AUROC clearly above 0.5). It is not a comparison with "
        "the paper (full PTB-XL, ~17,400 training ECGs) or with the PTB-XL benchmark's ~0.93 macro-AUROC; "
        "with so few test positives per class the metrics and the ranking of architectures are noise-dominated "
        "(see the 95% bootstrap intervals in `benchmarks/out/quality.json`). Run records: "
        "`benchmarks/out/quality/<architecture>/`.",
        "",
        "## Running larger, or on a GPU",
        "",
        "- Everything: `python benchmarks/run_all.py` (`make bench`); `--quick` for a smoke test.",
        "- Training cost: `python benchmarks/bench_training.py --architectures cnn cnn-bilstm "
        "--batch-sizes 32 64 128 256 --records 2048 --repeats 5` (more records and repeats: steadier "
        "medians); `--threads 1:1 2:1 2:2` to try TensorFlow thread settings; `--no-xla` to skip XLA.",
        "- Quality: `python benchmarks/bench_quality.py --bootstrap 1000 --seed 1` (other seeds), or "
        "`--data-dir` pointing at the full PTB-XL (then it is the study itself, one seed; see the "
        "estimate above for its cost).",
        "- Loading: `python benchmarks/bench_loading.py --repeats 5` (`--pools-only` for threads vs "
        "processes, `--chunksize N`).",
        "- On a GPU: the same commands; TensorFlow places the models on the GPU by itself (the recurrent "
        "layers use cuDNN with the package's settings), and the GPU appears in the Machine table above. "
        "Use larger `--records` (e.g. 4096) so that epochs are not dominated by per-step overhead, and "
        "larger batch sizes (`--batch-sizes 64 128 256 512`).",
    ]
    return "\n".join(lines) + "\n"


def with_kept_sections(path: Path, generated: str) -> str:
    """`generated` plus every `## ` section of the file at `path` that it does not generate itself
    (written by another benchmark script or by hand: memory, explanations, recipe, reproducibility)."""
    if not path.is_file():
        return generated
    own = set(re.findall(r"^## .*$", generated, flags=re.M))
    kept = [section for section in re.split(r"(?m)^(?=## )", path.read_text())[1:]
            if section.splitlines()[0] not in own]
    return generated.rstrip("\n") + "\n\n" + "".join(kept).rstrip("\n") + "\n" if kept else generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test of every benchmark (a few minutes)")
    parser.add_argument("--data-dir", type=Path, default=bench_loading.DEFAULT_DATA_DIR)
    parser.add_argument("--from-json", action="store_true",
                        help="measure nothing: rewrite the report from the JSON of the last run in benchmarks/out")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"Markdown report (default {DEFAULT_RESULTS.relative_to(REPO)}, "
                             "with --quick benchmarks/out/RESULTS-quick.md)")
    args = parser.parse_args(argv)
    out = args.out or (OUT_DIR / "RESULTS-quick.md" if args.quick else DEFAULT_RESULTS)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    if args.from_json:
        results = json.loads((OUT_DIR / f"run_all{suffix}.json").read_text())
        for name in ("loading", "training", "quality"):
            results[name] = json.loads((OUT_DIR / f"{name}{suffix}.json").read_text())
        out.write_text(with_kept_sections(out, report(results)))
        print(f"written {out} (from the JSON in {OUT_DIR})", file=sys.stderr)
        return 0
    results = {"quick": args.quick, "machine": machine(), "seconds": {}, "foreign_cpu": {},
               "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results["parallel_check"] = parallel_check()

    def stage(name: str, function) -> None:
        print(f"== {name}", file=sys.stderr, flush=True)
        with bench_training.CpuMonitor() as monitor:
            results[name] = function()
        results["seconds"][name] = monitor.wall_s
        results["foreign_cpu"][name] = monitor.to_dict()
        (OUT_DIR / f"{name}{suffix}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        print(f"== {name}: {results['seconds'][name]:.0f} s", file=sys.stderr, flush=True)

    if args.quick:
        stage("loading", lambda: bench_loading.run(args.data_dir, rates=(100,), repeats=1))
        stage("training", lambda: bench_training.run(["cnn", "cnn-bilstm"], (64,), repeats=2, n_records=128,
                                                     threads=()))
        stage("quality", lambda: bench_quality.run(args.data_dir, ["cnn", "cnn-bilstm"], epochs=3,
                                                   bootstrap_resamples=20,
                                                   runs_dir=OUT_DIR / "quality-quick"))
    else:
        stage("loading", lambda: bench_loading.run(args.data_dir))
        stage("training", lambda: bench_training.run())
        stage("quality", lambda: bench_quality.run(args.data_dir))
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    (OUT_DIR / f"run_all{suffix}.json").write_text(
        json.dumps({k: v for k, v in results.items() if k not in ("loading", "training", "quality")}, indent=2))
    out.write_text(with_kept_sections(out, report(results)))
    print(f"written {out} ({sum(results['seconds'].values()) / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
