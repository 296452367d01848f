"""Parameters, training and inference throughput of the new architectures against the CNN (CPU, random data)."""
import os, time
import numpy as np, keras
from ecgkeras.models import build_model
rng = np.random.default_rng(0)
X = rng.normal(size=(128, 1000, 12)).astype("float32"); Y = (rng.random((128, 23)) < 0.1).astype("float32")
load = os.getloadavg()
print("load before", load)
for name in ["cnn", "cnn-tcn", "cnn-transformer", "inception1d", "xresnet1d101", "cnn"]:
    keras.utils.set_random_seed(0)
    m = build_model(name, (1000, 12), 23); m.compile("adam", "binary_crossentropy")
    m.fit(X[:64], Y[:64], batch_size=64, epochs=1, verbose=0)  # warm-up (tracing)
    t = time.perf_counter(); m.fit(X, Y, batch_size=64, epochs=1, verbose=0); train = 128 / (time.perf_counter() - t)
    m.predict(X[:64], batch_size=64, verbose=0)
    t = time.perf_counter(); m.predict(X, batch_size=128, verbose=0); infer = (time.perf_counter() - t) / 128 * 1000
    print(f"| {name} | {m.count_params():,} | {train:.0f} | {infer:.2f} |", flush=True)
print("load after", os.getloadavg())
