"""Quality on real data: the paper's architectures trained on the real PTB-XL subset, through the package's one path.

Each architecture runs `RunConfig.from_parameters(...)` + `run_experiment(config, run_dir)` (the code
path of `ecgkeras study`) into `benchmarks/out/quality/<architecture>`: folds 1-8 train, fold 9 early-stops
and tunes thresholds, fold 10 tests. Reported: the test-fold metrics under both threshold policies (fixed
0.5 and validation-tuned), training cost, and each architecture against the CNN baseline of the same run.

Scale: the subset has only 500 ECGs (488 with a diagnostic-subclass label: 352 train / 72 validation /
64 test) and many of the 23 subclasses have 0-3 test positives, so these figures show that real data flows
through the package and the models learn (macro-AUROC clearly above 0.5). They are not comparable with
the paper's figures on full PTB-XL, which are quoted for orientation only. Usage:

    .venv/bin/python benchmarks/bench_quality.py [--data-dir DIR] [--architectures cnn cnn-bilstm ...]
        [--epochs 30] [--batch-size 32] [--seed 0] [--bootstrap 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import CpuMonitor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
OUT_DIR = REPO / "benchmarks" / "out"
DEFAULT_OUT = OUT_DIR / "quality.json"
RUNS_DIR = OUT_DIR / "quality"
CACHE_DIR = OUT_DIR / "cache"
METRICS = ("hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy", "macro_auroc", "macro_f1",
           "n_classes_scored")
# Jafari & Jafari (2026), CNN-BiLSTM on full PTB-XL, 23 subclasses (test fold)
PAPER_CNN_BILSTM = {"hamming_loss": 0.0338, "macro_auprc": 0.4715, "micro_f1": 0.6979, "subset_accuracy": 0.5723}
# Strodthoff et al. (2020), PTB-XL benchmark, diagnostic subclasses: best models' macro-AUROC
BENCHMARK_MACRO_AUROC = 0.93


def _paper_architectures() -> list[str]:
    from ecgkeras.models import PAPER_ARCHITECTURES
    return list(PAPER_ARCHITECTURES)


def run(data_dir: str | Path = DEFAULT_DATA_DIR, architectures: list[str] | None = None, epochs: int = 30,
        seed: int = 0, *, batch_size: int = 32, bootstrap_resamples: int = 200,
        runs_dir: str | Path = RUNS_DIR, progress: bool = True) -> dict:
    """Train and evaluate every architecture; returns the JSON-ready result."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ecgkeras.data import ptbxl as ecg_data
    from ecgkeras.data.ptbxl import load_ptbxl
    from ecgkeras.runs import POLICIES, RunConfig, library_versions, run_experiment

    data_dir = Path(data_dir)
    if not (data_dir / ecg_data.DATABASE_CSV).is_file():
        raise SystemExit(f"PTB-XL not found at {data_dir} (pass --data-dir or set PTBXL_DIR)")
    architectures = list(architectures or _paper_architectures())
    if "cnn" in architectures:  # the baseline first
        architectures.remove("cnn")
        architectures.insert(0, "cnn")
    logging.getLogger("ecgkeras").setLevel(logging.ERROR)  # the "dropped N records" notice
    total_start = time.perf_counter()
    dataset = load_ptbxl(data_dir, 100, "subclass", cache_dir=CACHE_DIR, progress=False)
    test_positives = dataset.test.Y.sum(axis=0)
    rows = []
    for arch in architectures:
        if progress:
            print(f"quality benchmark: {arch} ({epochs} epochs max)", file=sys.stderr, flush=True)
        config = RunConfig.from_parameters(
            data_dir=str(data_dir), architecture=arch, sampling_rate=100, label_level="subclass", seed=seed,
            cache_dir=str(CACHE_DIR), epochs=epochs, batch_size=batch_size,
            bootstrap_resamples=bootstrap_resamples, verbose=0)
        with CpuMonitor() as monitor:
            record = run_experiment(config, Path(runs_dir) / arch, dataset=dataset, progress=False)
        wall = monitor.wall_s
        rows.append({
            "architecture": arch, "display_name": record.display_name,
            "n_parameters": record.n_parameters, "run_dir": str(record.run_dir),
            "wall_seconds": wall, "cpu": monitor.to_dict(), **{f"timing_{k}": v for k, v in record.timings.items()},
            **{split: {policy: {k: record.metrics(split, policy)[k] for k in METRICS} for policy in POLICIES}
               for split in ("test", "val")},
            "test_ci95": {policy: record.intervals(policy) for policy in POLICIES},
        })
    base = next((r for r in rows if r["architecture"] == "cnn"), None)
    for row in rows:
        if base is not None:
            row["vs_cnn"] = {
                "macro_auroc": row["test"]["tuned"]["macro_auroc"] / base["test"]["tuned"]["macro_auroc"],
                "macro_auprc": row["test"]["tuned"]["macro_auprc"] / base["test"]["tuned"]["macro_auprc"],
                "seconds_per_epoch": row["timing_seconds_per_epoch"] / base["timing_seconds_per_epoch"],
                "wall_seconds": row["wall_seconds"] / base["wall_seconds"],
            }
    return {
        "benchmark": "quality",
        "data_dir": str(data_dir),
        "settings": {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                     "bootstrap_resamples": bootstrap_resamples, "sampling_rate": 100, "label_level": "subclass",
                     "folds": {"train": "1-8", "val": "9", "test": "10"}},
        "data": {"n_train": len(dataset.train.X), "n_val": len(dataset.val.X), "n_test": len(dataset.test.X),
                 "n_dropped": dataset.n_dropped, "n_classes": len(dataset.classes),
                 "test_positives": dict(zip(dataset.classes, test_positives.astype(int).tolist())),
                 "classes_with_0_to_3_test_positives": int((test_positives <= 3).sum())},
        "versions": library_versions(),
        "paper_cnn_bilstm": PAPER_CNN_BILSTM,
        "benchmark_macro_auroc": BENCHMARK_MACRO_AUROC,
        "architectures": rows,
        "total_seconds": time.perf_counter() - total_start,
    }


def markdown(result: dict) -> str:
    d, s = result["data"], result["settings"]
    lines = [
        f"Real PTB-XL subset ({d['n_train']} train / {d['n_val']} validation / {d['n_test']} test ECGs with a "
        f"subclass label, {d['n_classes']} subclasses, {d['classes_with_0_to_3_test_positives']} of them with "
        f"0-3 test positives), 100 Hz, up to {s['epochs']} epochs (early stopping on fold 9), batch "
        f"{s['batch_size']}, seed {s['seed']}, {s['bootstrap_resamples']} bootstrap resamples. Test fold 10; "
        "metrics with validation-tuned thresholds, fixed-0.5 thresholds in parentheses. "
        "AUROC/AUPRC ratios are against the CNN of this run.",
        "",
        "| architecture | params | epochs (best) | s/epoch | s/epoch vs CNN | Hamming loss | macro-AUPRC | "
        "micro-F1 | subset acc. | macro-AUROC | macro-F1 | classes scored | AUROC vs CNN | AUPRC vs CNN |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def pair(row, key, spec=".3f"):
        return f"{row['test']['tuned'][key]:{spec}} ({row['test']['fixed'][key]:{spec}})"

    for r in result["architectures"]:
        vs = r.get("vs_cnn", {})
        lines.append(
            f"| {r['display_name']} | {r['n_parameters']:,} | {r['timing_epochs_run']} ({r['timing_best_epoch']}) | "
            f"{r['timing_seconds_per_epoch']:.1f} | {vs.get('seconds_per_epoch', float('nan')):.2f}x | "
            f"{pair(r, 'hamming_loss', '.4f')} | {pair(r, 'macro_auprc')} | {pair(r, 'micro_f1')} | "
            f"{pair(r, 'subset_accuracy')} | {r['test']['tuned']['macro_auroc']:.3f} | {pair(r, 'macro_f1')} | "
            f"{r['test']['tuned']['n_classes_scored']} | {vs.get('macro_auroc', float('nan')):.2f}x | "
            f"{vs.get('macro_auprc', float('nan')):.2f}x |")
    p = result["paper_cnn_bilstm"]
    lines.append(f"| *paper, CNN-BiLSTM, full PTB-XL* | | | | | {p['hamming_loss']:.4f} | {p['macro_auprc']:.4f} | "
                 f"{p['micro_f1']:.4f} | {p['subset_accuracy']:.4f} | | | | | |")
    lines.append(f"| *PTB-XL benchmark (Strodthoff et al. 2020), best models* | | | | | | | | | "
                 f"~{result['benchmark_macro_auroc']:.2f} | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--architectures", nargs="+", default=None, help="default: the paper's 7")
    parser.add_argument("--epochs", type=int, default=30, help="at most (early stopping, patience 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the test fold")
    parser.add_argument("--quick", action="store_true", help="CNN and CNN-BiLSTM, 3 epochs (a smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    runs_dir = RUNS_DIR
    if args.quick:
        args.architectures, args.epochs, args.bootstrap = args.architectures or ["cnn", "cnn-bilstm"], 3, 20
        runs_dir = OUT_DIR / "quality-quick"
    result = run(args.data_dir, args.architectures, args.epochs, args.seed, batch_size=args.batch_size,
                 bootstrap_resamples=args.bootstrap, runs_dir=runs_dir)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out} ({result['total_seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
