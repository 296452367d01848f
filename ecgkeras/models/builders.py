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

Other temporal modules on the same front-end (group `temporal`):
  cnn-tcn          a temporal convolutional network (Bai et al. 2018): `depth` (default 4) residual
                   blocks of two causal Conv1D (tcn_filters, tcn_kernel_size) with dilation 1, 2, 4, 8,
                   ReLU and dropout, a 1x1 convolution on the shortcut where the width changes;
                   receptive field 1 + 2 (k - 1)(2^depth - 1) = 61 of the 62 steps; pooled like the CNN.
  cnn-transformer  sinusoidal positional encoding, then `depth` (default 2) post-norm Transformer
                   encoder layers (Vaswani et al. 2017): MultiHeadAttention (attention_heads heads of
                   width filters[-1] / heads), dropout, residual, LayerNorm, a ReLU feed-forward of
                   transformer_units, residual, LayerNorm; pooled like the CNN.

The PTB-XL benchmark's strongest CNNs (group `benchmark`, Strodthoff et al. 2020), with their own
convolutional stacks instead of the front-end and the shared head on average+max pooling:
  inception1d      InceptionTime (Ismail Fawaz et al. 2020) as the benchmark configures it: 6
                   inception modules (inception_depth) without downsampling, each a 1x1 bottleneck
                   (32) then parallel convolutions of kernels 39, 19, 9 (inception_kernel_size 40,
                   halved, made odd) and a max-pool -> 1x1 branch, 32 filters each (concatenated to
                   128), BatchNorm, ReLU; a residual shortcut (1x1 conv + BatchNorm) every 3 modules.
  xresnet1d101     ResNet-101 in 1D with the "bag of tricks" of He et al. 2019: a stem of three
                   convolutions (32, 32, 64; the first strided) and a max-pool, bottleneck blocks
                   (3, 4, 23, 3) of widths 64, 128, 256, 512 x expansion 4, kernel 5 in the middle
                   convolution, downsampling in that convolution (ResNet-B), an average-pool before
                   the shortcut's 1x1 convolution (ResNet-D), the last BatchNorm of every block
                   initialised to zero.
At 500 Hz every architecture starts with the same stem average-pooling to 100 Hz resolution.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers

from ecgkeras.models.registry import ModelConfig, check_model, get_architecture, stem_pool_factor

RECURRENT_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}


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


def tcn_module(x, depth: int = 4, filters: int = 64, kernel_size: int = 3, dropout: float = 0.2):
    """`depth` residual blocks of two causal dilated convolutions, dilation 2**block (Bai et al. 2018)."""
    for block in range(1, depth + 1):
        shortcut = x
        for step in (1, 2):
            x = layers.Conv1D(filters, kernel_size, padding="causal", dilation_rate=2 ** (block - 1),
                              activation="relu", kernel_initializer="he_normal", name=f"tcn{block}_conv{step}")(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"tcn{block}_dropout{step}")(x)
        if shortcut.shape[-1] != filters:
            shortcut = layers.Conv1D(filters, 1, name=f"tcn{block}_shortcut")(shortcut)
        x = layers.Activation("relu", name=f"tcn{block}_relu")(layers.Add(name=f"tcn{block}_add")([x, shortcut]))
    return x


@keras.saving.register_keras_serializable(package="ecgkeras")
class SinusoidalPositions(layers.Layer):
    """Adds the fixed sinusoidal position encoding of Vaswani et al. 2017 to (batch, time, features)."""

    def call(self, x):
        steps, width = keras.ops.shape(x)[1], x.shape[-1]
        position = keras.ops.cast(keras.ops.arange(steps), x.dtype)[:, None]
        rates = keras.ops.power(10000.0, -keras.ops.cast(2 * (keras.ops.arange(width) // 2), x.dtype) / width)
        angles = position * rates[None, :]
        even = keras.ops.arange(width) % 2 == 0
        return x + keras.ops.where(even[None, :], keras.ops.sin(angles), keras.ops.cos(angles))[None]


def transformer_module(x, depth: int = 2, heads: int = 4, units: int = 128, dropout: float = 0.2):
    """Positional encoding, then `depth` post-norm Transformer encoder layers of the input's width."""
    width = x.shape[-1]
    x = SinusoidalPositions(name="positions")(x)
    for level in range(1, depth + 1):
        attended = layers.MultiHeadAttention(heads, max(1, width // heads), dropout=dropout,
                                             name=f"attention{level}")(x, x)
        attended = layers.Dropout(dropout, name=f"attention{level}_dropout")(attended)
        x = layers.LayerNormalization(name=f"attention{level}_norm")(
            layers.Add(name=f"attention{level}_add")([x, attended]))
        forward = layers.Dense(units, activation="relu", name=f"feed_forward{level}_in")(x)
        forward = layers.Dropout(dropout, name=f"feed_forward{level}_dropout")(
            layers.Dense(width, name=f"feed_forward{level}_out")(forward))
        x = layers.LayerNormalization(name=f"feed_forward{level}_norm")(
            layers.Add(name=f"feed_forward{level}_add")([x, forward]))
    return x


def inception_network(x, filters: int = 32, depth: int = 6, kernel_size: int = 40):
    """InceptionTime's stack (no downsampling): `depth` inception modules, a residual shortcut every 3."""
    kernels = [kernel_size // 2 ** i - (1 - kernel_size // 2 ** i % 2) for i in range(3)]  # 40 -> 39, 19, 9
    shortcut = x
    for module in range(1, depth + 1):
        name = f"inception{module}"
        bottleneck = (layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_bottleneck")(x)
                      if x.shape[-1] > 1 else x)
        branches = [layers.Conv1D(filters, k, padding="same", use_bias=False, name=f"{name}_conv{k}")(bottleneck)
                    for k in kernels]
        pooled = layers.MaxPooling1D(3, strides=1, padding="same", name=f"{name}_maxpool")(x)
        branches.append(layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_poolconv")(pooled))
        x = layers.Concatenate(name=f"{name}_concat")(branches)
        x = layers.Activation("relu", name=f"{name}_relu")(layers.BatchNormalization(name=f"{name}_bn")(x))
        if module % 3 == 0:
            projected = layers.BatchNormalization(name=f"shortcut{module}_bn")(
                layers.Conv1D(x.shape[-1], 1, use_bias=False, name=f"shortcut{module}_conv")(shortcut))
            x = layers.Activation("relu", name=f"shortcut{module}_relu")(
                layers.Add(name=f"shortcut{module}_add")([x, projected]))
            shortcut = x
    return x


def _conv_bn(x, filters: int, kernel_size: int, name: str, strides: int = 1, relu: bool = True,
             zero_gamma: bool = False):
    x = layers.Conv1D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def xresnet_network(x, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (3, 4, 23, 3),
                    expansion: int = 4, kernel_size: int = 5):
    """XResNet (He et al. 2019's tricks) in 1D: 3-convolution stem, bottleneck stages, ResNet-B and -D."""
    for step, stem_filters in enumerate((32, 32, 64), start=1):
        x = _conv_bn(x, stem_filters, kernel_size, f"stem{step}", strides=2 if step == 1 else 1)
    x = layers.MaxPooling1D(3, strides=2, padding="same", name="stem_maxpool")(x)
    for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
        for block in range(1, count + 1):
            name = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            out = _conv_bn(x, width, 1, f"{name}_reduce")
            out = _conv_bn(out, width, kernel_size, f"{name}_middle", strides=strides)  # ResNet-B
            out = _conv_bn(out, width * expansion, 1, f"{name}_expand", relu=False, zero_gamma=True)
            shortcut = x
            if strides > 1:  # ResNet-D: average first, then the 1x1 projection
                shortcut = layers.AveragePooling1D(2, padding="same", name=f"{name}_shortcut_pool")(shortcut)
            if shortcut.shape[-1] != width * expansion:
                shortcut = _conv_bn(shortcut, width * expansion, 1, f"{name}_shortcut", relu=False)
            x = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([out, shortcut]))
    return x


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
    depth = config.depth or arch.depth
    if arch.front_end:
        x = conv_front_end(inputs, config.filters, config.kernel_sizes, config.pool_size,
                           stem_pool_factor(sampling_rate))
    elif (stem := stem_pool_factor(sampling_rate)) > 1:
        x = layers.AveragePooling1D(stem, name="stem_pool")(inputs)
    else:
        x = inputs
    if arch.module == "rnn":
        x = recurrent_module(x, arch.cell, depth, config.rnn_units, arch.bidirectional, config.rnn_dropout,
                             config.rnn_readout)
    else:
        if arch.module == "tcn":
            x = tcn_module(x, depth, config.tcn_filters, config.tcn_kernel_size, config.rnn_dropout)
        elif arch.module == "transformer":
            x = transformer_module(x, depth, config.attention_heads, config.transformer_units, config.rnn_dropout)
        elif arch.module == "inception":
            x = inception_network(x, config.inception_filters, config.inception_depth, config.inception_kernel_size)
        elif arch.module == "xresnet":
            x = xresnet_network(x, config.xresnet_widths, config.xresnet_blocks, config.xresnet_expansion,
                                config.xresnet_kernel_size)
        x = pooled_features(x)
    outputs = classification_head(x, n_classes, config.head_units, config.dropout)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def recurrent_layer_count(model: keras.Model) -> int:
    """Number of recurrent layers in `model` (a bidirectional wrapper counts once)."""
    return sum(isinstance(layer, (layers.LSTM, layers.GRU, layers.Bidirectional)) for layer in model.layers)
