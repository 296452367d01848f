"""Faithfulness of the attribution methods of `ecgkeras explain`, by deletion curves on real and demo data.

For each dataset (the real PTB-XL subset and the demo's synthetic data) and architecture, one run is
trained through the package's one path (`RunConfig` + `run_experiment`, reused when already complete
in `benchmarks/out/explain/`). For every test-fold record, the class the model rates most likely is
explained by each method; the samples (time x lead) are then set to the baseline (0 in standardized
units, each lead's training mean) in the order of the attribution, most-attributed first, and the
class probability is read after removing 1, 2, 5, 10, 20, 30 and 50% of them. The deletion area is
the mean probability along that curve relative to the untouched record: lower means the method found
the samples the prediction depends on. Random deletion orders (3 per record) give the reference.

    .venv/bin/python benchmarks/bench_explain.py [--data-dir DIR] [--architectures cnn cnn-bilstm]
        [--records 40] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
OUT_DIR = REPO / "benchmarks" / "out"
RUNS_DIR = OUT_DIR / "explain"
DEFAULT_OUT = OUT_DIR / "explain.json"
DEMO_RECORDS = 1200  # the size of `ecgkeras study --demo`'s synthetic data
# Real subset: the package's default model (it learns on 352 ECGs); synthetic: as in the demo.
SETTINGS = {"real": {"epochs": 30, "batch_size": 32}, "synthetic": {"epochs": 20, "batch_size": 32}}


def _train(data_dir: Path, architecture: str, run_dir: Path, epochs: int, batch_size: int):
    from ecgkeras.runs import RunConfig, is_complete, load_run, run_experiment

    if is_complete(run_dir):
        return load_run(run_dir)
    config = RunConfig.from_parameters(data_dir=str(data_dir), architecture=architecture, epochs=epochs,
                                       batch_size=batch_size, bootstrap_resamples=0, verbose=0,
                                       cache_dir=str(OUT_DIR / "cache"))
    return run_experiment(config, run_dir, progress=False)


def measure(run, n_records: int, methods: list[str]) -> dict:
    """Deletion areas of every method against random deletion on the first `n_records` test records."""
    from ecgkeras.data.ptbxl import load_ptbxl
    from ecgkeras.explain import DELETION_FRACTIONS, Classifier, faithfulness

    config = run.config
    dataset = load_ptbxl(config.data_dir, config.sampling_rate, config.label_level, config.train_folds,
                         config.val_folds, config.test_folds, cache_dir=config.cache_dir, progress=False)
    X = run.standardizer.transform(dataset.test.X[:n_records])
    classifier = Classifier.from_run(run)
    classes = classifier.predict(X).argmax(axis=1)
    result = {"architecture": config.architecture, "run_dir": str(run.run_dir), "n_records": len(X),
              "test_macro_auroc": run.metrics("test", "tuned")["macro_auroc"], "methods": {}}
    for method in methods:
        started = time.perf_counter()
        table = faithfulness(classifier, X, classes, method, n_random=3, seed=0)
        seconds = time.perf_counter() - started
        result["methods"][method] = {
            "method_area": float(table["method_area"].mean()), "random_area": float(table["random_area"].mean()),
            "win_rate": float(table["beats_random"].mean()),
            "area_ratio": float(table["method_area"].mean() / table["random_area"].mean()),
            "seconds_per_record": seconds / len(X), "per_record": table.to_dict("records")}
    result["fractions"] = list(DELETION_FRACTIONS)
    return result


def run_all(data_dir: Path, architectures: list[str], n_records: int, methods: list[str],
            synthetic_records: int = DEMO_RECORDS, progress: bool = True) -> dict:
    from ecgkeras.data.synthetic import make_synthetic_ptbxl
    from ecgkeras.explain import METHODS
    from ecgkeras.runs import library_versions

    logging.getLogger("ecgkeras").setLevel(logging.ERROR)
    methods = methods or list(METHODS)
    if not (data_dir / "ptbxl_database.csv").is_file():
        raise SystemExit(f"PTB-XL not found at {data_dir} (pass --data-dir or set PTBXL_DIR)")
    synthetic = make_synthetic_ptbxl(RUNS_DIR / f"synthetic-{synthetic_records}", n_records=synthetic_records,
                                     seed=0, progress=False)
    started = time.perf_counter()
    rows = []
    for name, folder in (("real", data_dir), ("synthetic", synthetic)):
        for architecture in architectures:
            if progress:
                print(f"explain benchmark: {name} data, {architecture}", file=sys.stderr, flush=True)
            run = _train(folder, architecture, RUNS_DIR / f"runs-{folder.name}" / architecture, **SETTINGS[name])
            rows.append({"data": name, **measure(run, n_records, methods)})
    return {"benchmark": "explain", "data_dir": str(data_dir), "synthetic_records": synthetic_records,
            "settings": SETTINGS, "records_per_run": n_records, "rows": rows, "versions": library_versions(),
            "total_seconds": time.perf_counter() - started}


def markdown(result: dict) -> str:
    lines = [f"Deletion curves on the first {result['records_per_run']} test-fold records of each run, the class "
             "the model rates most likely; samples set to the baseline (each lead's training mean) most-attributed "
             "first. Deletion area = mean class probability over 0-50% of the samples removed, relative to the "
             "untouched record (lower = the method finds what the prediction depends on); random = 3 random "
             "orders per record. Win rate: records where the method's area is below random's.", "",
             "| data | architecture | test macro-AUROC | method | deletion area | random | ratio | win rate | "
             "s/record |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        for method, values in row["methods"].items():
            lines.append(f"| {row['data']} | {row['architecture']} | {row['test_macro_auroc']:.3f} | {method} | "
                         f"{values['method_area']:.3f} | {values['random_area']:.3f} | {values['area_ratio']:.2f} | "
                         f"{values['win_rate']:.0%} | {values['seconds_per_record']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--architectures", nargs="+", default=["cnn", "cnn-bilstm"])
    parser.add_argument("--methods", nargs="+", default=None, help="default: all of ecgkeras.explain.METHODS")
    parser.add_argument("--records", type=int, default=40, help="test records per run")
    parser.add_argument("--quick", action="store_true", help="CNN only, 5 records, 400 synthetic records")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    synthetic_records = DEMO_RECORDS
    if args.quick:
        args.architectures, args.records, synthetic_records = ["cnn"], 5, 400
    result = run_all(args.data_dir, args.architectures, args.records, args.methods, synthetic_records)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out} ({result['total_seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
