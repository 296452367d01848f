"""ecgkeras.training (its config and fit modules): convergence, the recipe's knobs, and bounded memory: batches are read,
standardized and cropped on the fly (the references are the in-memory pipeline the package used
before); peak memory is measured with tracemalloc, which sees NumPy's allocations."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import CROP, STRIDE, peak_numpy_bytes

from ecgkeras import EcgkerasError
from ecgkeras.data.ptbxl import Signals, Standardizer, load_ptbxl
from ecgkeras.models import build_model
from ecgkeras.runs import predict_ecg
from ecgkeras.training import (TrainingConfig, compile_model, convergence, make_dataset, precision_policy,
                               predict_probabilities, resolve_precision, train_model, warmup_schedule)


@pytest.mark.slow
def test_a_run_that_stops_early_has_converged(two_runs):
    status = json.loads((two_runs[0].run_dir / "metrics.json").read_text())["convergence"]
    assert status["stopped_by"] == "early_stopping" and status["converged"]
    assert status["epochs_run"] < 30 and status["epochs_since_best"] == 1  # stopped one epoch after the best
    assert status["best_epoch"] == status["epochs_run"] - 1
    assert not {"best_epoch", "epochs_run"} & set(two_runs[0].timings)  # stored once, under convergence


@pytest.mark.slow
def test_a_run_at_the_epoch_cap_has_not_converged(two_runs):
    status = two_runs[1].convergence
    assert status["stopped_by"] == "epoch_cap" and not status["converged"]
    assert status["epochs_run"] == status["epoch_cap"] == 8
    assert status == convergence(two_runs[1].history, two_runs[1].config.training)  # recomputable from the files


def test_convergence_by_hand():
    import pandas as pd

    config = TrainingConfig(epochs=6, patience=2)
    history = pd.DataFrame({"loss": [1.0] * 6, "val_auprc": [0.1, 0.3, 0.3, 0.4, 0.5, 0.5]})
    assert convergence(history, config) == {  # best epoch 5 (first of the tie), 1 epoch before the cap
        "stopped_by": "epoch_cap", "converged": False, "epochs_run": 6, "epoch_cap": 6, "best_epoch": 5,
        "epochs_since_best": 1, "patience": 2}
    stopped = convergence(history.iloc[:4].assign(val_auprc=[0.1, 0.5, 0.4, 0.5]), config)
    assert stopped["stopped_by"] == "early_stopping" and stopped["best_epoch"] == 2  # a tie is no improvement
    assert convergence(history.assign(loss=[1.0, float("nan"), 1, 1, 1, 1]), config)["stopped_by"] == "nan"


def test_clipping_and_warm_up_are_configured():
    model = compile_model(build_model("cnn", (256, 12), 3, filters=[8, 8], kernel_sizes=[3, 3]),
                          TrainingConfig(global_clipnorm=1.0), keras.ops.zeros((4, 3)).numpy())
    assert model.optimizer.global_clipnorm == 1.0
    schedule = warmup_schedule(TrainingConfig(learning_rate=1e-3, warmup_epochs=3))
    assert [schedule(epoch, 5e-4) for epoch in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 5e-4])
    for bad in ({"global_clipnorm": 0}, {"warmup_epochs": -1}):
        with pytest.raises(EcgkerasError, match=next(iter(bad))):
            TrainingConfig(**bad)


def test_adams_slots_exist_before_the_first_training_step():
    # created inside the first trace of the training step instead, they make tf.function trace it twice
    model = compile_model(build_model("cnn", (256, 12), 3, filters=[8, 8], kernel_sizes=[3, 3]), TrainingConfig(),
                          keras.ops.zeros((4, 3)).numpy())
    slots = [variable.path for variable in model.optimizer.variables]
    assert model.optimizer.built and len(slots) > 2 * len(model.trainable_variables)  # momentum and velocity each
    model.train_on_batch(np.zeros((4, 256, 12), "float32"), np.zeros((4, 3), "float32"))
    assert [variable.path for variable in model.optimizer.variables] == slots


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def old_standardized(part, standardizer) -> np.ndarray:
    """What the pipeline used to feed: the whole part standardized in one array."""
    return standardizer.transform(np.asarray(part.X))


def epoch(dataset) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


def test_fitting_and_an_epoch_never_materialise_the_split(synthetic500):
    train, val = synthetic500.train, synthetic500.val
    standardizer = Standardizer.fit(train.X)  # warm: TensorFlow's and the cache's one-time allocations
    epoch(make_dataset(train.X[:8], train.Y[:8], 4, shuffle=True, standardizer=standardizer))

    def fit_and_read_an_epoch():
        Standardizer.fit(train.X)
        for _ in make_dataset(train.X, train.Y, 8, shuffle=True, seed=1, crop_length=2500,
                              standardizer=standardizer):
            pass
        for _ in make_dataset(val.X, val.Y, 8, standardizer=standardizer):
            pass

    peak = peak_numpy_bytes(fit_and_read_an_epoch)  # a copy of the split alone would be train.X.nbytes
    assert train.X.nbytes > 50e6
    assert peak < train.X.nbytes / 2, f"peaked at {peak / 1e6:.1f} MB for a {train.X.nbytes / 1e6:.0f} MB split"


@pytest.mark.slow
def test_train_model_feeds_the_pipeline_views_of_the_memory_map(synthetic500, tmp_path, monkeypatch):
    from ecgkeras.training import fit as training

    received = []
    real_make_dataset = training.make_dataset

    def recording(X, *args, **kwargs):
        received.append(X)
        return real_make_dataset(X, *args, **kwargs)

    monkeypatch.setattr(training, "make_dataset", recording)
    train, val = synthetic500.train, synthetic500.val
    train, val = train._replace(X=train.X.take(slice(0, 16)), Y=train.Y[:16]), val._replace(
        X=val.X.take(slice(0, 8)), Y=val.Y[:8])
    model = keras.Sequential([keras.Input((5000, 12)), keras.layers.GlobalAveragePooling1D(),
                                       keras.layers.Dense(train.Y.shape[1], activation="sigmoid")])
    train_model(model, train, val, tmp_path, TrainingConfig(epochs=1, batch_size=8, verbose=0),
                standardizer=Standardizer.fit(train.X))
    assert len(received) == 2
    assert all(isinstance(X, Signals) and X.source is synthetic500.signals for X in received)


def test_shuffled_batches_are_the_old_pipelines_batches(synthetic500):
    """The same seeded permutation each epoch as shuffling the records themselves, standardized the same."""
    train = synthetic500.train
    standardizer = Standardizer.fit(train.X)
    ids = train.ecg_ids[:, None].astype(np.float32)  # labels that name the record

    def old_pipeline():
        keras.utils.set_random_seed(3)
        return tf.data.Dataset.from_tensor_slices((old_standardized(train, standardizer), ids)).shuffle(
            len(ids), seed=3, reshuffle_each_iteration=True).batch(32)

    def new_pipeline(seed=3):
        keras.utils.set_random_seed(seed)
        return make_dataset(train.X, ids, 32, shuffle=True, seed=seed, standardizer=standardizer)

    old, new = old_pipeline(), new_pipeline()
    epochs = []
    for _ in range(2):
        old_batches, new_batches = epoch(old), epoch(new)
        assert len(old_batches) == len(new_batches) == int(np.ceil(len(ids) / 32))
        for (old_x, old_y), (new_x, new_y) in zip(old_batches, new_batches):
            np.testing.assert_array_equal(new_y, old_y)
            np.testing.assert_allclose(new_x, old_x, rtol=1e-6, atol=1e-6)  # float32 precision
        order = np.concatenate([y[:, 0] for _, y in new_batches])
        assert sorted(order) == sorted(train.ecg_ids)  # a permutation of the split
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    again = new_pipeline()
    np.testing.assert_array_equal(np.concatenate([y[:, 0] for _, y in epoch(again)]), epochs[0])
    other = np.concatenate([y[:, 0] for _, y in epoch(new_pipeline(seed=4))])
    assert not np.array_equal(other, epochs[0])


def test_unshuffled_batches_equal_whole_array_standardization(synthetic500):
    val = synthetic500.val
    standardizer = Standardizer.fit(synthetic500.train.X)
    expected = old_standardized(val, standardizer)
    batches = epoch(make_dataset(val.X, val.Y, 7, standardizer=standardizer))
    np.testing.assert_allclose(np.concatenate([x for x, _ in batches]), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), val.Y.astype(np.float32))
    centred = epoch(make_dataset(val.X, val.Y, 7, crop_length=1000, standardizer=standardizer))
    np.testing.assert_allclose(np.concatenate([x for x, _ in centred]), expected[:, 2000:3000], atol=1e-6)


def test_random_crops_are_windows_of_the_record_and_seeded(synthetic500):
    val = synthetic500.val
    standardizer = Standardizer.fit(synthetic500.train.X)
    expected = old_standardized(val, standardizer)
    index = val.ecg_ids[:, None].astype(np.float32)

    def crops(seed):
        dataset = make_dataset(val.X, index, 8, shuffle=True, seed=seed, crop_length=700, standardizer=standardizer)
        return [(x, y) for batch in epoch(dataset) for x, y in zip(*batch)]

    first, again = crops(5), crops(5)
    starts = []
    for (x, y), (x2, _) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        record = expected[list(val.ecg_ids).index(int(y[0]))]
        matches = [s for s in range(5000 - 700 + 1) if np.array_equal(record[s:s + 700], x)]
        assert matches, "a crop is not a window of its record"
        starts.append(matches[0])
    assert len(set(starts)) > len(starts) // 2  # crops start at many places


def old_predict(model, Z, crop_length, stride):
    """The package's prediction before streaming: every window of every record stacked in one array."""
    starts = list(range(0, Z.shape[1] - crop_length + 1, stride))
    if starts[-1] != Z.shape[1] - crop_length:
        starts.append(Z.shape[1] - crop_length)
    windows = np.stack([Z[:, s:s + crop_length] for s in starts], axis=1)
    probs = model.predict(windows.reshape(-1, crop_length, Z.shape[-1]), batch_size=256, verbose=0)
    return probs.reshape(len(Z), len(starts), -1).mean(axis=1)


@pytest.mark.slow
def test_predict_gives_the_same_probabilities_as_before_on_a_saved_run(tiny_run, synthetic_ptbxl, cache_dir,
                                                                       tmp_path):
    data = load_ptbxl(synthetic_ptbxl, cache_dir=cache_dir, progress=False)
    model = keras.models.load_model(tiny_run.run_dir / "model.keras", compile=False)
    standardizer = tiny_run.standardizer
    np.testing.assert_array_equal(tiny_run.predictions["test_ecg_ids"], data.test.ecg_ids)
    before = old_predict(model, old_standardized(data.test, standardizer), CROP, STRIDE)
    np.testing.assert_allclose(tiny_run.predictions["test_prob"], before, rtol=1e-5, atol=1e-6)
    streamed = predict_probabilities(model, data.test.X, crop_length=CROP, window_stride=STRIDE,
                                     standardizer=standardizer)
    np.testing.assert_allclose(streamed, before, rtol=1e-5, atol=1e-6)
    # one record file, by a name with a dot (its suffix is part of the name)
    i = 3
    stem = synthetic_ptbxl / data.meta["filename_lr"].iloc[np.flatnonzero(data.folds == 10)[i]]
    dotted = tmp_path / "patient.1"
    (tmp_path / "patient.1.hea").write_text((stem.parent / f"{stem.name}.hea").read_text())
    (tmp_path / f"{stem.name}.dat").write_bytes((stem.parent / f"{stem.name}.dat").read_bytes())
    for name in (dotted, f"{dotted}.hea"):
        table = predict_ecg(tiny_run.run_dir, name).set_index("class")
        np.testing.assert_allclose(table.loc[tiny_run.classes, "probability"], before[i], rtol=1e-5, atol=1e-6)


def test_auto_precision_is_float32_on_a_cpu_and_restores_the_global_policy():
    assert resolve_precision("auto") == ("mixed_float16" if tf.config.list_physical_devices("GPU") else "float32")
    with precision_policy("mixed_bfloat16") as policy:
        model = build_model("cnn-gru", (400, 12), 23, filters=(8, 8, 16, 16), rnn_units=8, head_units=16)
    assert policy == "mixed_bfloat16" and keras.config.dtype_policy().name == "float32"
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"  # the loss, metrics and thresholds see float32 probabilities
    with pytest.raises(EcgkerasError, match="precision='float16': must be one of auto, float32"):
        TrainingConfig(precision="float16")


@pytest.mark.slow
def test_a_mixed_precision_run_records_its_policy_and_repeats_exactly(synthetic_ptbxl, tmp_path):
    from helpers import TINY_RUN

    from ecgkeras.runs import RunConfig, run_experiment

    def run(name):
        config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn", crop_length=CROP,
                                           precision="mixed_bfloat16", **TINY_RUN)  # bfloat16 is emulated on many CPUs
        return run_experiment(config, tmp_path / name, progress=False)

    first, again = run("a"), run("b")
    assert first.execution["precision"] == "mixed_bfloat16" and "cpu_features" in first.execution
    assert first.predictions["test_prob"].dtype == np.float32
    np.testing.assert_array_equal(first.predictions["test_prob"], again.predictions["test_prob"])
