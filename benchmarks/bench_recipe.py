"""Why do the stacked unidirectional recurrent models learn slowly, and which recipe fixes it?

Small, bounded experiments through the package's one path (`RunConfig.from_parameters` +
`run_experiment`). Choices are made on the validation fold only (fold 9); the test fold is not
read here. Two settings:

  demo  the synthetic demo data (`make_synthetic_ptbxl(dir, n_records=1200, seed=0)`) under the demo
        settings of `ecgkeras study --demo` (20 epochs, batch 32, patience 5)
  real  the real PTB-XL subset (../shared/ptbxl or $PTBXL_DIR: 352/72/64 ECGs), 30 epochs, batch 32,
        default patience (the settings of bench_quality.py)

Variants change one thing against the shared recipe ("baseline"): see `VARIANTS`. The `probe`
command measures gradient norms at initialisation (one batch, before any update), to see where the
learning signal is lost. Every result is appended as one JSON line to benchmarks/out/recipe.jsonl;
`table` prints them as Markdown. Usage:

    .venv/bin/python benchmarks/bench_recipe.py probe
    .venv/bin/python benchmarks/bench_recipe.py train --setting demo --architectures cnn-lstm-x2 \\
        --variants baseline clip pool --seeds 0 1
    .venv/bin/python benchmarks/bench_recipe.py table
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
OUT_DIR = REPO / "benchmarks" / "out"
RESULTS_FILE = OUT_DIR / "recipe.jsonl"
RUNS_DIR = OUT_DIR / "recipe"
DEMO_DATA = OUT_DIR / "synthetic-ptbxl-1200"
REAL_DATA = Path(os.environ.get("PTBXL_DIR", REPO.parent / "shared" / "ptbxl"))
SETTINGS = {
    "demo": {"epochs": 20, "batch_size": 32, "patience": 5},
    "real": {"epochs": 30, "batch_size": 32},
}
# One change each against the shared recipe (run and model parameters of the one schema).
VARIANTS = {
    "baseline": {},
    "clip": {"global_clipnorm": 1.0},
    "warmup": {"warmup_epochs": 3},
    "pool": {"rnn_readout": "pool"},
    "pool+clip": {"rnn_readout": "pool", "global_clipnorm": 1.0},
    "batch8": {"batch_size": 8},  # 4x the optimizer steps per epoch (and per patience window)
    "batch16": {"batch_size": 16},  # 2x the optimizer steps per epoch
    "pool+batch16": {"rnn_readout": "pool", "batch_size": 16},
    "lr3e-4": {"learning_rate": 3e-4},
    "patience30": {"patience": 30},  # early stopping never fires within 30 epochs: the whole budget
}


def load(setting: str):
    from ecgkeras.data.ptbxl import load_ptbxl
    from ecgkeras.data.synthetic import make_synthetic_ptbxl

    data_dir = make_synthetic_ptbxl(DEMO_DATA, n_records=1200, seed=0, progress=False) if setting == "demo" \
        else REAL_DATA
    logging.getLogger("ecgkeras").setLevel(logging.ERROR)
    return Path(data_dir), load_ptbxl(data_dir, 100, "subclass", progress=False)


def train(setting: str, architectures: list[str], variants: list[str], seeds: list[int]) -> None:
    """Train each (architecture, variant, seed); append validation results to RESULTS_FILE."""
    from ecgkeras.runs import RunConfig, run_experiment

    data_dir, dataset = load(setting)
    for arch in architectures:
        for variant in variants:
            for seed in seeds:
                parameters = {**SETTINGS[setting], **VARIANTS[variant]}
                config = RunConfig.from_parameters(data_dir=str(data_dir), architecture=arch, seed=seed,
                                                   bootstrap_resamples=0, verbose=0, **parameters)
                run_dir = RUNS_DIR / setting / variant / f"{arch}-seed{seed}"
                started = time.perf_counter()
                record = run_experiment(config, run_dir, dataset=dataset, progress=False)
                wall = time.perf_counter() - started
                history, timings = record.history, record.timings
                val = record.metrics("val", "tuned")
                row = {"setting": setting, "architecture": arch, "variant": variant, "seed": seed,
                       "parameters": parameters, "epochs_run": record.convergence["epochs_run"],
                       "best_epoch": record.convergence["best_epoch"], "seconds_per_epoch": timings["seconds_per_epoch"],
                       "wall_s": wall, "val_macro_auprc": val["macro_auprc"], "val_macro_auroc": val["macro_auroc"],
                       "val_micro_f1": val["micro_f1"],
                       "val_auprc_curve": [round(v, 4) for v in history["val_auprc"]],
                       "loss_curve": [round(v, 4) for v in history["loss"]]}
                OUT_DIR.mkdir(parents=True, exist_ok=True)
                with RESULTS_FILE.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"{setting} {arch} {variant} seed {seed}: val macro-AUPRC {val['macro_auprc']:.3f}, "
                      f"AUROC {val['macro_auroc']:.3f}, epochs {record.convergence['epochs_run']} (best "
                      f"{record.convergence['best_epoch']}), {timings['seconds_per_epoch']:.1f} s/epoch", flush=True)


def probe(architectures: list[str], batch: int = 64) -> None:
    """Gradient norms at initialisation, per layer group, on one batch of the demo's training fold.

    Also where along the record the learning signal reaches the front-end: the gradient of the loss
    with respect to the front-end's output at each of its time steps, as the share of the squared
    gradient norm in the last 10% of the steps (0.1 when every step gets the same signal).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from ecgkeras.data.ptbxl import Standardizer
    from ecgkeras.models import build_model
    from ecgkeras.training import set_seed

    _, dataset = load("demo")
    X = Standardizer.fit(dataset.train.X).transform(dataset.train.X[:batch])
    Y = dataset.train.Y[:batch].astype("float32")
    loss_fn = keras.losses.BinaryCrossentropy()
    for arch in architectures:
        for readout in (("last", "pool") if arch != "cnn" else ("-",)):
            set_seed(0)
            kwargs = {} if arch == "cnn" else {"rnn_readout": readout}
            model = build_model(arch, X.shape[1:], Y.shape[1], **kwargs)
            both = keras.Model(model.input, [model.get_layer("pool4").output, model.output])
            with tf.GradientTape(persistent=True) as tape:
                features, probs = both(X, training=True)  # the front-end's output is on the tape too
                loss = loss_fn(Y, probs)
            grads = tape.gradient(loss, model.trainable_variables)
            per_step = np.linalg.norm(np.asarray(tape.gradient(loss, features)), axis=(0, 2)) ** 2
            last_share = float(per_step[-max(1, len(per_step) // 10):].sum() / per_step.sum())
            del tape
            norms = {}
            for variable, grad in zip(model.trainable_variables, grads):
                group = variable.path.split("/")[0]
                norms[group] = norms.get(group, 0.0) + float(tf.reduce_sum(grad ** 2))
            norms = {group: value ** 0.5 for group, value in norms.items()}
            head_input = keras.Model(model.input, model.get_layer("head_dropout1").input)(X, training=False)
            spread = float(np.std(np.asarray(head_input), axis=0).mean())  # across records, mean over features
            row = {"setting": "probe", "architecture": arch, "readout": readout, "loss": float(loss),
                   "grad_norm_conv1": norms["conv1"], "grad_norm_head": norms["head_dense"],
                   "feature_spread": spread, "gradient_share_last_10pct_steps": last_share,
                   "grad_norm_recurrent": {g: v for g, v in norms.items() if "lstm" in g or "gru" in g}}
            with RESULTS_FILE.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def table() -> None:
    import pandas as pd

    rows = [json.loads(line) for line in RESULTS_FILE.read_text().splitlines()]
    probes = pd.DataFrame([r for r in rows if r["setting"] == "probe"])
    if not probes.empty:
        probes = probes.drop_duplicates(["architecture", "readout"], keep="last").drop(columns="setting")
        print(probes.to_markdown(index=False, floatfmt=".4g"), "\n")
    runs = pd.DataFrame([r for r in rows if r["setting"] != "probe"])
    if runs.empty:
        return
    runs = runs.drop_duplicates(["setting", "architecture", "variant", "seed"], keep="last")
    runs["epochs (best)"] = runs["epochs_run"].astype(str) + " (" + runs["best_epoch"].astype(str) + ")"
    columns = ["setting", "architecture", "variant", "seed", "epochs (best)", "seconds_per_epoch",
               "val_macro_auprc", "val_macro_auroc", "val_micro_f1"]
    print(runs[columns].to_markdown(index=False, floatfmt=".3f"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--setting", choices=SETTINGS, default="demo")
    train_parser.add_argument("--architectures", nargs="+", default=["cnn-lstm-x2"])
    train_parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["baseline"])
    train_parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    probe_parser = commands.add_parser("probe")
    probe_parser.add_argument("--architectures", nargs="+",
                              default=["cnn", "cnn-lstm", "cnn-lstm-x2", "cnn-gru-x2", "cnn-bilstm-x2"])
    commands.add_parser("table")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.command == "train":
        train(args.setting, args.architectures, args.variants, args.seeds)
    elif args.command == "probe":
        probe(args.architectures)
    else:
        table()


if __name__ == "__main__":
    main()
