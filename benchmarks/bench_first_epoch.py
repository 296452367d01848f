"""First-epoch time with Adam's slots built by `compile_model` against Keras' default of building them inside
the first trace of the training step (which makes tf.function trace that step twice).

Each measurement is a fresh process: build a small model, `compile_model`, fit one epoch of 256 random records
(batch 32, 64 validation records) and report the wall time and the epoch's history; "deferred" skips the early
build (as before the change), "prebuilt" is the package's code. The two histories must be identical. Usage:

    .venv/bin/python benchmarks/bench_first_epoch.py [--architectures cnn cnn-gru cnn-bilstm] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "first_epoch.json"

CHILD = """
import json, sys, time, numpy as np, keras
from ecgkeras.models import build_model
from ecgkeras.training import TrainingConfig, compile_model, make_dataset, set_seed
arch, variant = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((320, 1000, 12)).astype("float32"), (rng.random((320, 23)) < 0.2).astype("float32")
set_seed(0)
model = build_model(arch, (1000, 12), 23, filters=[8, 8, 16, 16], rnn_units=8, head_units=16)
build = keras.optimizers.Adam.build
if variant == "deferred":
    keras.optimizers.Adam.build = lambda self, variables: None  # compile_model's early build skipped
compile_model(model, TrainingConfig(), Y[:256])
keras.optimizers.Adam.build = build  # the first training step builds it, as Keras does by default
started = time.perf_counter()
history = model.fit(make_dataset(X[:256], Y[:256], 32, shuffle=True), epochs=1, verbose=0,
                    validation_data=make_dataset(X[256:], Y[256:], 32))
print(json.dumps({"seconds": time.perf_counter() - started,
                  "history": {name: float(values[0]) for name, values in history.history.items()}}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["cnn", "cnn-gru", "cnn-bilstm"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_all import machine

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    found: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):  # interleaved, so that a busy moment does not favour one variant
        for arch in args.architectures:
            for variant in ("deferred", "prebuilt"):
                done = subprocess.run([sys.executable, "-c", CHILD, arch, variant], env=env, capture_output=True,
                                      text=True, check=True)
                found.setdefault((arch, variant), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    for arch in args.architectures:
        deferred, prebuilt = found[(arch, "deferred")], found[(arch, "prebuilt")]
        rows.append({"architecture": arch,
                     "deferred_seconds": statistics.median(m["seconds"] for m in deferred),
                     "prebuilt_seconds": statistics.median(m["seconds"] for m in prebuilt),
                     "identical_history": all(m["history"] == deferred[0]["history"] for m in deferred + prebuilt)})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine(), "repeats": args.repeats, "rows": rows}, indent=2))
    print("| architecture | first epoch, slots built in the trace | built by compile_model | saved | same history |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        saved = 1 - row["prebuilt_seconds"] / row["deferred_seconds"]
        print(f"| {row['architecture']} | {row['deferred_seconds']:.2f} s | {row['prebuilt_seconds']:.2f} s | "
              f"{saved:.0%} | {'yes' if row['identical_history'] else 'NO'} |")


if __name__ == "__main__":
    main()
