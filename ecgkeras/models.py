"""The architectures of the study: one convolutional front-end, different temporal modules.

Every model is `front-end -> temporal module -> head`. Only the temporal module differs
between architectures (a controlled comparison), so the CNN baseline is exactly the
front-end plus the pooled head. Builders are pure functions returning an uncompiled
`keras.Model`; `build_model` builds any registered architecture by name.

Defaults (chosen for PTB-XL at 100 Hz, 10 s = 1000 samples):
  front-end  4 blocks of Conv1D-BatchNorm-ReLU-MaxPool(2), filters 64, 64, 128, 128,
             kernels 7, 5, 5, 3; 1000 samples -> 62 steps of 128 features. At 500 Hz a
             stem average-pooling by sampling_rate/100 first brings the signal to 100 Hz
             resolution, so the recurrent layers see a comparable number of steps.
  temporal   recurrent layers of 64 units (per direction), tanh/sigmoid, no recurrent
             dropout, no unrolling: the settings that let Keras use the cuDNN kernel on a
             GPU. Dropout sits between layers instead. The last layer returns its final
             state (rnn_readout="last"); stacked layers before it return sequences. With
             rnn_readout="pool" the last layer returns its sequence too, summarised by the
             CNN's global average and max pooling.
  head       dropout 0.3, Dense(128, ReLU), dropout 0.3, Dense(n_classes, sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import keras
from keras import layers

from ecgkeras.errors import EcgkerasError
from ecgkeras.schema import Schema, Search, parameter

RECURRENT_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}
RNN_READOUTS: tuple[str, ...] = ("last", "pool")
RECURRENT_ONLY: tuple[str, ...] = ("rnn_units", "rnn_dropout", "depth", "rnn_readout")  # no effect on the CNN


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its readable name and temporal module."""

    name: str
    display_name: str
    cell: str | None = None  # "lstm", "gru" or None for the CNN baseline
    bidirectional: bool = False
    depth: int = 0
    in_paper: bool = False


def _registry() -> dict[str, Architecture]:
    archs = [Architecture("cnn", "CNN", in_paper=True)]
    for cell, bidirectional in (("lstm", False), ("gru", False), ("lstm", True), ("gru", True)):
        label = ("Bi" if bidirectional else "") + cell.upper()
        key = ("bi" if bidirectional else "") + cell
        for depth in (1, 2, 3):
            suffix = "" if depth == 1 else f"-x{depth}"
            display = f"CNN-{label}" + ("" if depth == 1 else f" x{depth}")
            in_paper = depth <= 2 and key != "bigru"
            archs.append(Architecture(f"cnn-{key}{suffix}", display, cell, bidirectional, depth, in_paper))
    return {arch.name: arch for arch in archs}


ARCHITECTURES: dict[str, Architecture] = _registry()
PAPER_ARCHITECTURES: tuple[str, ...] = tuple(name for name, arch in ARCHITECTURES.items() if arch.in_paper)


def get_architecture(name: str) -> Architecture:
    """The registered architecture `name`, or a one-line error listing the valid names."""
    if name not in ARCHITECTURES:
        raise EcgkerasError(f"unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


@dataclass
class ModelConfig(Schema):
    """The builder's hyperparameters, shared by every architecture (defaults for 100 Hz input)."""

    kind: ClassVar[str] = "model parameter"

    filters: tuple[int, ...] = parameter((64, 64, 128, 128), "filters of each conv block", minimum=1)
    kernel_sizes: tuple[int, ...] = parameter((7, 5, 5, 3), "kernel size of each conv block", minimum=1)
    pool_size: int = parameter(2, "max-pooling factor after each conv block", minimum=1)
    rnn_units: int = parameter(64, "units of each recurrent layer (per direction)", minimum=1,
                               search=Search(choices=(32, 64, 128)))
    rnn_dropout: float = parameter(0.2, "dropout between stacked recurrent layers", minimum=0, maximum=1,
                                   below_maximum=True, search=Search(0.0, 0.5))
    depth: int | None = parameter(None, "recurrent layers; None: the architecture's own", minimum=1)
    rnn_readout: str = parameter("last", "what the head sees of the last recurrent layer: last (its final "
                                 "state, the paper's design) or pool (average and max over its sequence)",
                                 choices=RNN_READOUTS, search=Search(choices=RNN_READOUTS))
    head_units: int = parameter(128, "units of the head's dense layer", minimum=1,
                                search=Search(choices=(64, 128, 256)))
    dropout: float = parameter(0.3, "dropout in the head", minimum=0, maximum=1, below_maximum=True,
                               search=Search(0.0, 0.5))

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.filters) != len(self.kernel_sizes):
            raise EcgkerasError(f"filters {self.filters} and kernel_sizes {self.kernel_sizes} "
                                "must have the same length (one per conv block)")


def conv_front_end(x, filters: Sequence[int] = (64, 64, 128, 128), kernel_sizes: Sequence[int] = (7, 5, 5, 3),
                   pool_size: int = 2, stem_pool: int = 1):
    """Shared convolutional front-end: (time, leads) -> (time / (stem_pool * pool_size**blocks), filters[-1])."""
    if stem_pool > 1:
        x = layers.AveragePooling1D(stem_pool, name="stem_pool")(x)
    for block, (n_filters, kernel) in enumerate(zip(filters, kernel_sizes), start=1):
        x = layers.Conv1D(n_filters, kernel, padding="same", use_bias=False, name=f"conv{block}")(x)
        x = layers.BatchNormalization(name=f"bn{block}")(x)
        x = layers.Activation("relu", name=f"relu{block}")(x)
        x = layers.MaxPooling1D(pool_size, name=f"pool{block}")(x)
    return x


def recurrent_module(x, cell: str, depth: int, units: int = 64, bidirectional: bool = False,
                     dropout: float = 0.2, readout: str = "last"):
    """`depth` stacked recurrent layers (cuDNN-compatible settings).

    Returns the last layer's final state (`readout="last"`) or its whole output sequence
    summarised by `pooled_features` (`readout="pool"`).
    """
    for level in range(1, depth + 1):
        last = level == depth
        layer = RECURRENT_CELLS[cell](units, return_sequences=not last or readout == "pool", name=f"{cell}{level}")
        if bidirectional:
            layer = layers.Bidirectional(layer, name=f"bi{cell}{level}")
        x = layer(x)
        if not last and dropout:
            x = layers.Dropout(dropout, name=f"dropout_rnn{level}")(x)
    return pooled_features(x) if readout == "pool" else x


def pooled_features(x):
    """Global average and max pooling over time, concatenated (the CNN baseline's summary)."""
    return layers.Concatenate(name="pooled")(
        [layers.GlobalAveragePooling1D(name="avg_pool")(x), layers.GlobalMaxPooling1D(name="max_pool")(x)])


def classification_head(x, n_classes: int, head_units: int = 128, dropout: float = 0.3):
    """Dropout, a ReLU dense layer, dropout and one sigmoid unit per class (float32 under any precision
    policy, so the loss, metrics, thresholds and saved predictions stay float32)."""
    x = layers.Dropout(dropout, name="head_dropout1")(x)
    x = layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout2")(x)
    return layers.Dense(n_classes, activation="sigmoid", name="probabilities", dtype="float32")(x)


def check_model(name: str, input_shape: tuple[int | None, int], n_classes: int, config: ModelConfig,
                sampling_rate: int = 100) -> None:
    """Refuse a model that cannot be built (no class, an input the front-end cannot fill, a depth the
    architecture lacks); `build_model` calls it, and a study before it writes anything."""
    arch = get_architecture(name)
    if n_classes < 1:
        raise EcgkerasError(f"n_classes={n_classes}: a model needs at least one class")
    if len(input_shape) != 2:
        raise EcgkerasError(f"input_shape={tuple(input_shape)}: expected (time steps, leads)")
    reduction = _stem_pool(sampling_rate) * config.pool_size ** len(config.filters)
    if input_shape[0] is not None and input_shape[0] < reduction:
        raise EcgkerasError(f"input_shape={tuple(input_shape)}: {input_shape[0]} time steps are too few for "
                            f"the front-end, which downsamples by {reduction}; use longer records or crops")
    if config.depth is not None and arch.cell is None:
        raise EcgkerasError(f"depth={config.depth} does not apply to {name!r}: the CNN baseline has no "
                            "recurrent layers")


def _stem_pool(sampling_rate: int) -> int:
    """The front-end's averaging factor: records above 100 Hz are brought down to about 100 Hz first."""
    return max(1, sampling_rate // 100)


def build_model(name: str, input_shape: tuple[int, int], n_classes: int, config: ModelConfig | None = None,
                *, sampling_rate: int = 100, **options: Any) -> keras.Model:
    """Build the registered architecture `name` as an uncompiled functional model.

    `config` (default `ModelConfig()`) holds the hyperparameters; keyword `options` override
    single fields, e.g. `build_model("cnn-gru", (1000, 12), 23, depth=3)` for a x3 variant, or
    `rnn_readout="pool"` to pool the last recurrent layer's sequence instead of reading its final state.
    """
    arch = get_architecture(name)
    config = ModelConfig.from_dict({**(config.to_dict() if config else {}), **options})
    check_model(name, input_shape, n_classes, config, sampling_rate)
    inputs = keras.Input(shape=tuple(input_shape), name="ecg")
    x = conv_front_end(inputs, config.filters, config.kernel_sizes, config.pool_size,
                       _stem_pool(sampling_rate))
    if arch.cell is None:
        x = pooled_features(x)
    else:
        x = recurrent_module(x, arch.cell, config.depth or arch.depth, config.rnn_units, arch.bidirectional,
                             config.rnn_dropout,
                             config.rnn_readout)
    outputs = classification_head(x, n_classes, config.head_units, config.dropout)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def recurrent_layer_count(model: keras.Model) -> int:
    """Number of recurrent layers in `model` (a bidirectional wrapper counts once)."""
    return sum(isinstance(layer, (layers.LSTM, layers.GRU, layers.Bidirectional)) for layer in model.layers)
