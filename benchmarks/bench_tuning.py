"""Does an equal tuning budget change the comparison? `ecgkeras tune` against the default recipe.

On the real PTB-XL subset (../shared/ptbxl or $PTBXL_DIR), for each architecture (default: cnn and
cnn-bilstm): `ecgkeras tune` with `--trials` trials (validation fold only), then `ecgkeras study
--from-tuning` with the given seeds, and a plain `ecgkeras study` of the default recipe with the same
seeds. Each step runs as the command a user types, in a fresh process; its wall time is measured.
Writes benchmarks/out/tuning.json (the machine, the commands, their seconds, the tuning summary and
every run's validation and test metrics) and prints the Markdown table of RESULTS.md. Usage:

    .venv/bin/python benchmarks/bench_tuning.py --trials 20 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_tuning.py table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"
RESULTS_FILE = OUT_DIR / "tuning.json"
WORK_DIR = OUT_DIR / "tuning"
REAL_DATA = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
METRICS = ("macro_auroc", "macro_auprc")


def ecgkeras(*args: str) -> float:
    """Run `ecgkeras ARGS` in a fresh process (its output streamed); returns its wall time in seconds."""
    command = [sys.executable, "-m", "ecgkeras.cli", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def run_metrics(study_dir: Path) -> list[dict]:
    """Architecture, seed and validation/test metrics of every complete run of a study folder."""
    from ecgkeras.runs.record import find_runs

    return [{"architecture": run.architecture, "seed": run.seed,
             **{f"{split}_{name}": run.metrics(split)[name] for split in ("val", "test") for name in METRICS}}
            for run in find_runs(study_dir)]


def measure(args: argparse.Namespace) -> dict:
    from ecgkeras.training.config import cpu_features, cpu_model

    tuned, default = WORK_DIR / "tuned", WORK_DIR / "default"
    seeds = [str(seed) for seed in args.seeds]
    seconds = {
        "tune": ecgkeras("tune", "--data-dir", args.data_dir, "--out", tuned, "--architectures", *args.architectures,
                         "--trials", args.trials),
        "study_from_tuning": ecgkeras("study", "--from-tuning", tuned, "--seeds", *seeds),
        "study_default": ecgkeras("study", "--data-dir", args.data_dir, "--out", default, "--architectures",
                                  *args.architectures, "--seeds", *seeds),
    }
    return {"machine": {"cpu_model": cpu_model(), "cpu_features": cpu_features()}, "cpus": os.cpu_count(), "data_dir": str(args.data_dir), "trials": args.trials, "seeds": args.seeds,
            "seconds": seconds, "tuning": json.loads((tuned / "tuning" / "summary.json").read_text()),
            "runs": {"tuned": run_metrics(tuned), "default": run_metrics(default)}}


def table(results: dict) -> str:
    """Mean (sd) over seeds of each architecture's validation and test metrics, tuned against default."""
    lines = ["| architecture | recipe | seeds | " + " | ".join(f"{split} {name.replace('_', '-')}"
                                                         for split in ("val", "test") for name in METRICS) + " |",
             "|---" * (3 + 2 * len(METRICS)) + "|"]
    for architecture in dict.fromkeys(run["architecture"] for run in results["runs"]["default"]):
        for recipe, runs in results["runs"].items():
            mine = [run for run in runs if run["architecture"] == architecture]
            cells = []
            for column in (f"{split}_{name}" for split in ("val", "test") for name in METRICS):
                values = [run[column] for run in mine]
                spread = f" ({statistics.stdev(values):.3f})" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3f}{spread}")
            lines.append(f"| {architecture} | {recipe} | {len(mine)} | " + " | ".join(cells) + " |")
    budget = [f"{name}: {result['trials']['complete']} complete, {result['trials']['pruned']} pruned, "
              f"{result['epochs_run']} epochs run, {result['epochs_saved_by_pruning']} saved by pruning "
              f"({result['epochs_saved_by_pruning'] / max(1, result['epochs_run'] + result['epochs_saved_by_pruning']):.0%})"
              for name, result in results["tuning"]["architectures"].items()]
    seconds = results["seconds"]
    return "\n".join([*lines, "", *budget, "", "wall time: " + ", ".join(f"{name} {value / 60:.1f} min"
                                                                       for name, value in seconds.items())])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("measure", "table"), default="measure")
    parser.add_argument("--data-dir", type=Path, default=REAL_DATA)
    parser.add_argument("--architectures", nargs="+", default=["cnn", "cnn-bilstm"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.command == "measure":
        if WORK_DIR.exists():
            sys.exit(f"{WORK_DIR} exists: move it away to measure again (its runs would be reused)")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(measure(args), indent=2))
    print(table(json.loads(RESULTS_FILE.read_text())))


if __name__ == "__main__":
    main()
