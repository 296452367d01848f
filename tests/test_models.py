"""ecgkeras.models: every registered architecture builds with the right temporal module; each kind trains one epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import TINY_MODEL

from ecgkeras import EcgkerasError, load_ptbxl
from ecgkeras.models import ARCHITECTURES, PAPER_ARCHITECTURES, build_model, recurrent_layer_count
from ecgkeras.training import TrainingConfig, train_model


@pytest.fixture(scope="module")
def tiny(synthetic_ptbxl):
    """32 training and 16 validation records of the synthetic PTB-XL, first 4 s (keeps the test fast)."""
    data = load_ptbxl(synthetic_ptbxl, progress=False)
    train, val = data.train, data.val
    return (train._replace(X=train.X[:32, :400], Y=train.Y[:32]),
            val._replace(X=val.X[:16, :400], Y=val.Y[:16]))


def test_the_papers_seven_architectures_are_registered():
    assert PAPER_ARCHITECTURES == ("cnn", "cnn-lstm", "cnn-lstm-x2", "cnn-gru", "cnn-gru-x2",
                                   "cnn-bilstm", "cnn-bilstm-x2")
    assert {"cnn-bigru", "cnn-bilstm-x3"} <= set(ARCHITECTURES)
    assert ARCHITECTURES["cnn-bilstm-x2"].display_name == "CNN-BiLSTM x2"


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_builds_with_the_registered_temporal_module(name, tiny):
    train, _ = tiny
    model = build_model(name, train.X.shape[1:], train.Y.shape[1], **TINY_MODEL)
    assert model.output_shape == (None, 23)
    assert model.layers[-1].activation is keras.activations.sigmoid
    assert recurrent_layer_count(model) == ARCHITECTURES[name].depth


# Every cell, direction and depth once (training is the same code for all; tracing each costs seconds)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "cnn-lstm", "cnn-gru-x2", "cnn-bilstm-x3", "cnn-bigru"])
def test_architecture_trains_one_epoch(name, tiny, tmp_path):
    train, val = tiny
    model = build_model(name, train.X.shape[1:], train.Y.shape[1], **TINY_MODEL)
    history = train_model(model, train, val, tmp_path, TrainingConfig(epochs=1, batch_size=16, verbose=0))
    assert len(history) == 1 and np.isfinite(history["loss"]).all()
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "history.csv").is_file()


def test_only_the_temporal_module_differs():
    def front_end_weights(model):
        return [w.shape for layer in model.layers if layer.name.startswith(("conv", "bn")) for w in layer.weights]

    baseline = build_model("cnn", (1000, 12), 23)
    for name in ARCHITECTURES:
        assert front_end_weights(build_model(name, (1000, 12), 23)) == front_end_weights(baseline)


def test_depth_parameter_and_cudnn_friendly_recurrent_layers():
    model = build_model("cnn-gru", (1000, 12), 23, depth=3)
    assert recurrent_layer_count(model) == 3
    for layer in model.layers:
        if isinstance(layer, keras.layers.GRU):
            assert layer.recurrent_dropout == 0 and not layer.unroll and layer.reset_after


def test_500_hz_front_end_gives_the_recurrent_layers_the_same_number_of_steps():
    steps = {}
    for rate, length in ((100, 1000), (500, 5000)):
        model = build_model("cnn-lstm", (length, 12), 23, sampling_rate=rate)
        steps[rate] = model.get_layer("lstm1").input.shape[1]
    assert steps[100] == steps[500] == 62


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "cnn-transformer"}, "unknown architecture 'cnn-transformer': choose one of cnn, "),
    ({"input_shape": (8, 12)}, "too few"),
    ({"input_shape": (1000,)}, "expected \\(time steps, leads\\)"),
    ({"n_classes": 0}, "at least one class"),
    ({"name": "cnn", "depth": 2}, "does not apply"),
])
def test_bad_model_arguments_give_one_line_errors(kwargs, match):
    args = {"name": "cnn-lstm", "input_shape": (1000, 12), "n_classes": 23, **kwargs}
    with pytest.raises(EcgkerasError, match=match) as error:
        build_model(args.pop("name"), args.pop("input_shape"), args.pop("n_classes"), **args)
    assert "\n" not in str(error.value)


def test_recurrent_readout_pools_the_last_sequence_or_takes_the_final_state():
    last = build_model("cnn-lstm-x2", (1000, 12), 5, rnn_units=8)
    pooled = build_model("cnn-lstm-x2", (1000, 12), 5, rnn_units=8, rnn_readout="pool")
    assert "pooled" in {layer.name for layer in pooled.layers} and "pooled" not in {layer.name for layer in last.layers}
    assert pooled.get_layer("lstm2").output.shape == (None, 62, 8) and last.get_layer("lstm2").output.shape == (None, 8)
    assert pooled.output.shape == last.output.shape == (None, 5)
    with pytest.raises(EcgkerasError, match="rnn_readout"):
        build_model("cnn-gru", (1000, 12), 5, rnn_readout="mean")
