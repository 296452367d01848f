"""Where in the 12 leads a model looks: attributions of one record's class probabilities, drawn on the leads.

`explain_ecg` reads a record through the run (the same checks and standardization as
`ecgkeras predict`), attributes each chosen class probability to every sample of every lead,
and `plot_explanation` draws the 12 leads in the 6 x 2 clinical format (limb leads left,
chest leads right, the full 10 s of each lead so that no attribution is hidden) with the
evidence for each class shaded behind the trace.

Methods (all with tf.GradientTape; the baseline is 0 in standardized units, i.e. each lead's
training mean):
  integrated_gradients  (input - baseline) x the gradient averaged along the straight path
  gradient_x_input      input x gradient at the input (one backward pass)
  grad_cam              Grad-CAM on the last activation of the convolutional front-end,
                        upsampled to the record length (the same value on every lead)
The default was chosen by `faithfulness` (a deletion curve: remove the most-attributed
samples first and watch the class probability fall, against removing random samples);
measurements in benchmarks/RESULTS.md ("Explanations"), script benchmarks/bench_explain.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.patches import Patch

from ecgkeras.errors import EcgkerasError
from ecgkeras.report.ecg import GRID, plot_ecg
from ecgkeras.runs.inference import ecg_input, model_window, predict_ecg
from ecgkeras.runs.record import RunRecord, load_run
from ecgkeras.training import window_starts

DEFAULT_METHOD = "integrated_gradients"  # most faithful in benchmarks/bench_explain.py
INTEGRATION_STEPS = 32
MAX_AUTO_CLASSES = 4  # predicted classes shown when none are named (the others are listed as left out)
DELETION_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
SMOOTHING_SECONDS = 0.08  # the overlay is smoothed over 80 ms so that it reads as regions, not spikes
BAND_HEIGHT = 0.12  # height of each class's evidence strip, as a share of the trace's range
SHADING_QUANTILE = 0.995  # full colour from this quantile of a class's evidence up (one spike does not wash out the rest)
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#8c564b")  # none red: the grid is
# The 6 x 2 clinical format: limb leads in the left column, chest leads in the right one.


class Classifier:
    """A run's model as a differentiable function of whole records (batch, time, 12) -> (batch, classes).

    A model trained on crops sees every sliding window of the record, averaged, as in evaluation.
    """

    def __init__(self, model: keras.Model, crop_length: int | None = None, window_stride: int | None = None):
        self.model, self.crop_length, self.window_stride = model, crop_length, window_stride

    @classmethod
    def from_run(cls, run: RunRecord) -> "Classifier":
        return cls(run.load_model(), model_window(run), run.config.training.window_stride)

    def __call__(self, X: tf.Tensor) -> tf.Tensor:
        length = X.shape[1]
        if not self.crop_length or self.crop_length >= length:
            return self.model(X, training=False)
        starts = window_starts(length, self.crop_length, self.window_stride)
        windows = tf.concat([X[:, s:s + self.crop_length] for s in starts], axis=0)
        probs = self.model(windows, training=False)
        return tf.reduce_mean(tf.reshape(probs, (len(starts), -1, probs.shape[-1])), axis=0)

    def predict(self, X: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities as NumPy, in batches."""
        return np.concatenate([self(tf.constant(X[i:i + batch_size])).numpy()
                               for i in range(0, len(X), batch_size)])

    def gradient(self, X: np.ndarray, class_index: int) -> np.ndarray:
        """d probability[class_index] / d input, for each record of the batch X."""
        X = tf.constant(X)
        with tf.GradientTape() as tape:
            tape.watch(X)
            probability = self(X)[:, class_index]
        return tape.gradient(probability, X).numpy()


# --------------------------------------------------------------------------- attribution methods

def integrated_gradients(classifier: Classifier, x: np.ndarray, class_index: int,
                         steps: int = INTEGRATION_STEPS) -> np.ndarray:
    """Integrated gradients of one standardized record (time, leads) from the all-zero baseline."""
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoint rule
    path = alphas[:, None, None] * x[None]
    gradients = np.concatenate([classifier.gradient(path[i:i + 16], class_index) for i in range(0, steps, 16)])
    return x * gradients.mean(axis=0)


def gradient_x_input(classifier: Classifier, x: np.ndarray, class_index: int) -> np.ndarray:
    """Input x gradient of one standardized record (time, leads)."""
    return x * classifier.gradient(x[None], class_index)[0]


def grad_cam(classifier: Classifier, x: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM on the front-end's last activation, upsampled to (time, leads) (equal on every lead)."""
    if classifier.crop_length and classifier.crop_length < len(x):
        raise EcgkerasError("grad_cam needs a run trained on whole records (this one used crop_length): "
                            f"use --method {DEFAULT_METHOD}")
    model = classifier.model
    activation = [layer for layer in model.layers if layer.name.startswith("relu")][-1]
    both = keras.Model(model.inputs, [activation.output, model.output])
    with tf.GradientTape() as tape:
        features, probs = both(tf.constant(x[None]), training=False)
        probability = probs[:, class_index]
    weights = tf.reduce_mean(tape.gradient(probability, features), axis=1)  # (1, filters)
    cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, :], axis=-1))[0].numpy()
    positions = (np.arange(len(cam)) + 0.5) * len(x) / len(cam)
    upsampled = np.interp(np.arange(len(x)), positions, cam)
    return np.repeat(upsampled[:, None], x.shape[1], axis=1).astype(np.float32)


METHODS: dict[str, Callable[[Classifier, np.ndarray, int], np.ndarray]] = {
    "integrated_gradients": integrated_gradients, "gradient_x_input": gradient_x_input, "grad_cam": grad_cam}


def attribute(classifier: Classifier, x: np.ndarray, class_index: int, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Attribution of class `class_index` to every sample of the standardized record `x` (time, leads)."""
    if method not in METHODS:
        raise EcgkerasError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    return METHODS[method](classifier, np.asarray(x, np.float32), class_index)


# --------------------------------------------------------------------------- faithfulness

def deletion_curve(classifier: Classifier, x: np.ndarray, order: np.ndarray, class_index: int,
                   fractions: Sequence[float] = DELETION_FRACTIONS) -> np.ndarray:
    """Probability of `class_index` after setting the first `fraction` of samples in `order` to the baseline 0."""
    batch = np.repeat(np.asarray(x, np.float32)[None], len(fractions), axis=0)
    flat = batch.reshape(len(fractions), -1)
    for row, fraction in enumerate(fractions):
        flat[row, order[:int(round(fraction * flat.shape[1]))]] = 0.0
    return classifier.predict(batch)[:, class_index]


def deletion_area(curve: np.ndarray, fractions: Sequence[float] = DELETION_FRACTIONS) -> float:
    """Mean probability along a deletion curve, relative to the untouched one (lower: faster drop)."""
    fractions = np.asarray(fractions, float)
    relative = curve / max(float(curve[0]), 1e-6)
    return float(np.sum(np.diff(fractions) * (relative[1:] + relative[:-1]) / 2) / (fractions[-1] - fractions[0]))


def faithfulness(classifier: Classifier, X: np.ndarray, class_indices: Sequence[int], method: str = DEFAULT_METHOD,
                 n_random: int = 3, seed: int = 0) -> pd.DataFrame:
    """Deletion areas of `method` and of random deletion for each (standardized record, class) pair.

    Columns: record (row of X), class_index, probability, method_area, random_area, beats_random.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for row, (x, class_index) in enumerate(zip(X, class_indices)):
        attribution = attribute(classifier, x, class_index, method)
        order = np.argsort(-attribution.ravel(), kind="stable")
        curve = deletion_curve(classifier, x, order, class_index)
        random_areas = [deletion_area(deletion_curve(classifier, x, rng.permutation(x.size), class_index))
                        for _ in range(n_random)]
        rows.append({"record": row, "class_index": int(class_index), "probability": float(curve[0]),
                     "method_area": deletion_area(curve), "random_area": float(np.mean(random_areas))})
    table = pd.DataFrame(rows)
    table["beats_random"] = table["method_area"] < table["random_area"]
    return table


# --------------------------------------------------------------------------- one record

@dataclass
class Explanation:
    """One record, its probabilities under a run and the attribution of the explained classes."""

    record: Path
    run_name: str
    signal: np.ndarray  # (time, 12) in mV
    sampling_rate: int
    table: pd.DataFrame  # class, probability, threshold, predicted (as `ecgkeras predict`)
    attributions: dict[str, np.ndarray]  # class -> (time, 12), same shape as `signal`
    method: str
    left_out: list[str] = field(default_factory=list)  # predicted classes not drawn (beyond MAX_AUTO_CLASSES)


def _run_name(run: RunRecord) -> str:
    return f"{run.display_name}, seed {run.seed}"


def _chosen_classes(table: pd.DataFrame, names: Sequence[str] | None, run: RunRecord) -> tuple[list[str], list[str]]:
    """The classes to draw and the predicted ones left out: the named ones, else the first MAX_AUTO_CLASSES
    predicted (none predicted: the most likely)."""
    if names:
        if unknown := [name for name in names if name not in run.classes]:
            raise EcgkerasError(f"unknown class(es) {unknown} for {run.run_dir}: choose from {', '.join(run.classes)}")
        chosen = list(dict.fromkeys(names))
        if len(chosen) > len(CLASS_COLORS):
            raise EcgkerasError(f"{len(chosen)} classes named: one figure draws at most {len(CLASS_COLORS)} "
                                "readably; explain the others in a second figure (--classes ... --out OTHER)")
        return chosen, []
    predicted = table.loc[table["predicted"], "class"].tolist()
    return (predicted[:MAX_AUTO_CLASSES] or table["class"].head(1).tolist()), predicted[MAX_AUTO_CLASSES:]


def explain_ecg(run_dir: str | Path, record: str | Path, classes: Sequence[str] | None = None,
                   method: str | None = None) -> Explanation:
    """Attribute the predicted classes of `record` (or the named `classes`) under the run in `run_dir`.

    `method`: one of METHODS, default DEFAULT_METHOD.
    """
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise EcgkerasError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    run = load_run(run_dir)
    ecg, X = ecg_input(run, record)
    table = predict_ecg(run_dir, record)
    chosen, left_out = _chosen_classes(table, classes, run)
    classifier = Classifier.from_run(run)
    attributions = {name: attribute(classifier, X[0], run.classes.index(name), method) for name in chosen}
    return Explanation(Path(record), _run_name(run), ecg.signal, run.config.sampling_rate, table, attributions, method,
                       left_out)


def _smoothed_evidence(attribution: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Positive attribution smoothed over SMOOTHING_SECONDS, scaled to 0..1 (1 from SHADING_QUANTILE up)."""
    width = max(1, int(round(SMOOTHING_SECONDS * sampling_rate)))
    kernel = np.ones(width) / width
    positive = np.clip(attribution, 0, None)
    smooth = np.stack([np.convolve(positive[:, lead], kernel, mode="same") for lead in range(positive.shape[1])], 1)
    return np.clip(smooth / max(float(np.quantile(smooth, SHADING_QUANTILE)), 1e-12), 0, 1)


def plot_explanation(explanation: Explanation) -> plt.Figure:
    """The 12 leads (`ecgkeras.report.ecg.plot_ecg`), each with one strip per class showing its evidence."""
    signal, rate = explanation.signal, explanation.sampling_rate
    seconds = signal.shape[0] / rate
    evidence = {name: _smoothed_evidence(values, rate) for name, values in explanation.attributions.items()}
    colors = dict(zip(evidence, CLASS_COLORS))

    def strips(ax: plt.Axes, lead: int, time: np.ndarray, low: float, high: float) -> float:
        band = (high - low) * BAND_HEIGHT
        for k, (name, values) in enumerate(evidence.items()):  # one strip per class under the trace
            shade = np.zeros((1, len(time), 4))
            shade[..., :3] = plt.matplotlib.colors.to_rgb(colors[name])
            shade[..., 3] = values[:, lead]
            top = low - k * band
            ax.imshow(shade, extent=(0, seconds, top - band, top), aspect="auto", interpolation="bilinear", zorder=2)
            if len(evidence) == 1:  # a single class is also shaded behind the trace
                shade[..., 3] *= 0.35
                ax.imshow(shade, extent=(0, seconds, low, high), aspect="auto", interpolation="bilinear", zorder=1)
        return low - len(evidence) * band

    probabilities = explanation.table.set_index("class")
    shown = " · ".join(f"{name} p={probabilities.loc[name, 'probability']:.2f} "
                       f"({'≥' if probabilities.loc[name, 'predicted'] else '<'} threshold "
                       f"{probabilities.loc[name, 'threshold']:.2f})" for name in evidence)
    if explanation.left_out:
        shown += f"\nalso predicted, not drawn: {', '.join(explanation.left_out)} (name them with --classes to draw them)"
    fig = plot_ecg(signal, rate, decorate=strips, title=(
        f"{explanation.record.name} under {explanation.run_name}: {shown}\n"
        f"strips under each lead (top to bottom in legend order): evidence for each class "
        f"({explanation.method.replace('_', ' ')}, positive part, {SMOOTHING_SECONDS * 1000:.0f} ms "
        f"smoothing, scaled per class); {GRID}"))
    fig.legend(handles=[Patch(color=colors[name], alpha=0.6, label=name) for name in evidence],
               loc="upper right", ncol=len(evidence), frameon=False, bbox_to_anchor=(0.99, 0.935))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def save_explanation(explanation: Explanation, out: str | Path | None = None) -> list[Path]:
    """Write the figure as PNG and PDF (`out` with either suffix, or none); returns both paths."""
    from ecgkeras.report.figures import save_figure

    out = Path(out) if out else Path(f"{explanation.record.with_suffix('').name}_explained")
    if out.suffix.lower() in {".png", ".pdf"}:
        out = out.with_suffix("")
    if not out.parent.is_dir():
        raise EcgkerasError(f"output folder {out.parent} does not exist: create it or pick another --out")
    fig = plot_explanation(explanation)
    try:
        return save_figure(fig, out.parent, out.name)
    finally:
        plt.close(fig)
