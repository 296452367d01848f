"""ecgkeras.models (its registry and builders): every registered architecture builds with the right temporal module; each kind trains one epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import TINY_MODEL

from conftest import built_once
from helpers import CROP, STRIDE, TINY_RUN

from ecgkeras import EcgkerasError, load_ptbxl
from ecgkeras.models import (ARCHITECTURES, PAPER_ARCHITECTURES, build_model, expand_architectures, group_members,
                             recurrent_layer_count)
from ecgkeras.runs import RunConfig, load_run, predict_ecg, run_experiment
from ecgkeras.training import TrainingConfig, train_model

NEW = ("inception1d", "xresnet1d101", "cnn-tcn", "cnn-transformer")
# Tiny widths of the new architectures' own parameters (the front-end's are in TINY_RUN)
TINY_NEW = {"tcn_filters": 8, "attention_heads": 2, "transformer_units": 16, "inception_filters": 4,
            "inception_depth": 3, "inception_kernel_size": 10, "xresnet_widths": [4, 8],
            "xresnet_blocks": [1, 1], "xresnet_expansion": 2}


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


def test_groups_name_the_paper_the_benchmark_and_the_temporal_modules():
    assert group_members("paper") == PAPER_ARCHITECTURES
    assert group_members("benchmark") == ("inception1d", "xresnet1d101")
    assert group_members("temporal") == ("cnn-tcn", "cnn-transformer")
    assert group_members("all") == tuple(ARCHITECTURES)
    assert expand_architectures(["cnn-tcn", "paper", "cnn"]) == ["cnn-tcn", *PAPER_ARCHITECTURES]
    with pytest.raises(EcgkerasError, match="or a group: paper, benchmark, temporal, all"):
        expand_architectures(["papers"])


@pytest.mark.parametrize("name", [name for name in ARCHITECTURES if name not in NEW])  # NEW: trained below
def test_architecture_builds_with_the_registered_temporal_module(name, tiny):
    train, _ = tiny
    model = build_model(name, train.X.shape[1:], train.Y.shape[1], **TINY_MODEL)
    assert model.output_shape == (None, 23)
    assert model.layers[-1].activation is keras.activations.sigmoid
    assert recurrent_layer_count(model) == ARCHITECTURES[name].depth


# Every cell and direction once, and stacking (training is the same code for all; tracing each costs seconds,
# a third BiLSTM layer 3.5 s more): the CNN, CNN-LSTM and CNN-GRU train in the shared tiny run, real run and
# tiny study, each cell bidirectional and the BiLSTM stacked here; deeper stacks are built above
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn-bilstm-x2", "cnn-bigru"])
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
        if not ARCHITECTURES[name].front_end:
            assert not front_end_weights(build_model(name, (1000, 12), 23, **TINY_NEW))
            continue
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


@pytest.fixture(scope="module")
def new_runs(synthetic_ptbxl, tmp_path_factory) -> dict[str, str]:
    """One epoch of each new architecture (tiny widths, CROP-sample windows) through `run_experiment`."""
    def build(folder):
        for name in NEW:
            config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture=name, crop_length=CROP,
                                               window_stride=STRIDE, **TINY_RUN, **TINY_NEW)
            run_experiment(config, folder / name / "seed-0", progress=False)
        return {name: str(folder / name / "seed-0") for name in NEW}

    return built_once(tmp_path_factory, "new-architectures", build)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_new_architecture_trains_saves_reloads_and_predicts_through_its_run_record(name, new_runs, synthetic_ptbxl):
    run = load_run(new_runs[name])
    assert run.architecture == name and run.display_name == ARCHITECTURES[name].display_name
    model = run.load_model()
    assert model.count_params() == run.n_parameters and recurrent_layer_count(model) == 0
    assert np.isfinite(run.history["loss"]).all() and len(run.history) == 1
    predictions = run.predictions
    data = load_ptbxl(synthetic_ptbxl, progress=False)
    first = np.flatnonzero(data.ecg_ids == predictions["test_ecg_ids"][0])[0]
    table = predict_ecg(run.run_dir, synthetic_ptbxl / data.meta["filename_lr"].iloc[first]).set_index("class")
    np.testing.assert_allclose(table.loc[run.classes, "probability"], predictions["test_prob"][0], rtol=1e-4,
                               atol=1e-5)


def test_new_architectures_follow_their_papers_defaults():
    inception = build_model("inception1d", (1000, 12), 23)
    assert [inception.get_layer(f"inception1_conv{k}").kernel_size for k in (39, 19, 9)] == [(39,), (19,), (9,)]
    assert inception.get_layer("inception6_concat").output.shape == (None, 1000, 128)
    assert {layer.name for layer in inception.layers} >= {"shortcut3_add", "shortcut6_add"}
    xresnet = build_model("xresnet1d101", (1000, 12), 23, xresnet_widths=[4, 4, 8, 8], xresnet_expansion=2)
    blocks = [layer.name for layer in xresnet.layers if layer.name.endswith("_add")]
    assert len(blocks) == 3 + 4 + 23 + 3  # ResNet-101's bottleneck blocks
    assert xresnet.get_layer("stage2_block1_shortcut_pool")  # ResNet-D
    assert xresnet.get_layer("stage2_block1_middle_conv").strides == (2,)  # ResNet-B
    assert float(np.abs(xresnet.get_layer("stage1_block1_expand_bn").gamma.numpy()).max()) == 0  # zero-init
    tcn = build_model("cnn-tcn", (1000, 12), 23)
    assert [tcn.get_layer(f"tcn{b}_conv1").dilation_rate for b in (1, 2, 3, 4)] == [(1,), (2,), (4,), (8,)]
    transformer = build_model("cnn-transformer", (1000, 12), 23, depth=1)
    assert sum(isinstance(layer, keras.layers.MultiHeadAttention) for layer in transformer.layers) == 1
    assert transformer.get_layer("positions")


def test_the_transformers_position_encoding_is_sinusoidal_and_changes_the_output_with_order():
    from ecgkeras.models import SinusoidalPositions

    zeros = keras.ops.convert_to_numpy(SinusoidalPositions()(np.zeros((1, 5, 4), "float32")))[0]
    np.testing.assert_allclose(zeros[:, 0], np.sin(np.arange(5)), atol=1e-6)
    np.testing.assert_allclose(zeros[:, 1], np.cos(np.arange(5)), atol=1e-6)
    np.testing.assert_allclose(zeros[:, 2], np.sin(np.arange(5) / 100), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "cnn-transformers"}, "unknown architecture 'cnn-transformers': choose one of cnn, "),
    ({"name": "inception1d", "depth": 2}, "does not apply"),
    ({"name": "xresnet1d101", "input_shape": (20, 12)}, "too few for xresnet1d101, which downsamples by 32"),
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
