"""Bounded memory: signals stay memory-mapped and batches are read, standardized and cropped on the fly.

The references are the in-memory pipeline the package used before: the whole split standardized at once
and fed through `tf.data.Dataset.from_tensor_slices`, and `model.predict` on the stacked windows.
Peak memory is measured with tracemalloc, which sees NumPy's allocations (a copy of a split would show).
"""

from __future__ import annotations

import tracemalloc

import keras
import numpy as np
import pytest
import tensorflow as tf
import wfdb

from ecgkeras.data.ptbxl import Signals, Standardizer, load_ptbxl
from ecgkeras.runs import RunConfig, predict_ecg, run_experiment
from ecgkeras.training import TrainingConfig, make_dataset, predict_probabilities, train_model

SMALL_MODEL = {"filters": [8, 8, 16, 16], "rnn_units": 8, "head_units": 16}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def synthetic500(synthetic_ptbxl, cache_dir):
    """The synthetic PTB-XL at 500 Hz (300 records: 72 MB of signals, so a copy of a split shows)."""
    return load_ptbxl(synthetic_ptbxl, 500, cache_dir=cache_dir, progress=False)


def peak_numpy_bytes(function) -> int:
    """Peak bytes NumPy (and Python) allocated while `function` ran, in any thread."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def old_standardized(part, standardizer) -> np.ndarray:
    """What the pipeline used to feed: the whole part standardized in one array."""
    return standardizer.transform(np.asarray(part.X))


def epoch(dataset) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


# --------------------------------------------------------------------------- memory map, no copies

def test_signals_are_a_read_only_memory_map_with_index_views(synthetic500, synthetic_ptbxl):
    ds = synthetic500
    assert isinstance(ds.signals, np.memmap) and not ds.signals.flags.writeable
    assert ds.signals.shape == (300, 5000, 12) and ds.signals.dtype == np.float32
    assert isinstance(ds.X, Signals) and ds.X.source is ds.signals
    np.testing.assert_array_equal(ds.X.rows, ds.rows)
    assert len(ds.rows) == len(ds.ecg_ids) == ds.X.shape[0] == 300 - ds.n_dropped
    for name in ("train", "val", "test"):
        part = ds.part(name)
        assert isinstance(part.X, Signals) and part.X.source is ds.signals  # a view, not a copy
        assert isinstance(part.load().X, np.ndarray) and not isinstance(part.load().X, np.memmap)
        np.testing.assert_array_equal(part.load().X, ds.signals[part.X.rows])
    # indexing reads exactly the records asked for, equal to wfdb's reading of them
    i = len(ds.ecg_ids) // 2
    signal, _ = wfdb.rdsamp(str(synthetic_ptbxl / ds.meta["filename_hr"].iloc[i]))
    np.testing.assert_allclose(ds.X[i], signal, atol=1e-5)
    np.testing.assert_array_equal(ds.X[[i, 0], 100:200, 3], np.asarray(ds.X)[[i, 0], 100:200, 3])
    np.testing.assert_array_equal(ds.X[2:5], ds.signals[ds.rows[2:5]])


def test_first_load_streams_into_the_cache(synthetic_ptbxl, tmp_path):
    def first_load():
        load_ptbxl(synthetic_ptbxl, 500, cache_dir=tmp_path / "cache", progress=False)

    peak = peak_numpy_bytes(first_load)
    size = 300 * 5000 * 12 * 4
    assert peak < size / 8, f"first load peaked at {peak / 1e6:.1f} MB for {size / 1e6:.0f} MB of signals"


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


def test_train_model_feeds_the_pipeline_views_of_the_memory_map(synthetic500, tmp_path, monkeypatch):
    from ecgkeras import training

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


# --------------------------------------------------------------------------- batches

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


# --------------------------------------------------------------------------- predictions

@pytest.fixture(scope="module")
def saved_run(synthetic_ptbxl, cache_dir, tmp_path_factory):
    config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn-lstm", epochs=1,
                                       batch_size=32, crop_length=400, window_stride=300,
                                       bootstrap_resamples=0, cache_dir=str(cache_dir), **SMALL_MODEL)
    return run_experiment(config, tmp_path_factory.mktemp("run") / "cnn-lstm", progress=False)


def old_predict(model, Z, crop_length, stride):
    """The package's prediction before streaming: every window of every record stacked in one array."""
    starts = list(range(0, Z.shape[1] - crop_length + 1, stride))
    if starts[-1] != Z.shape[1] - crop_length:
        starts.append(Z.shape[1] - crop_length)
    windows = np.stack([Z[:, s:s + crop_length] for s in starts], axis=1)
    probs = model.predict(windows.reshape(-1, crop_length, Z.shape[-1]), batch_size=256, verbose=0)
    return probs.reshape(len(Z), len(starts), -1).mean(axis=1)


def test_predict_gives_the_same_probabilities_as_before_on_a_saved_run(saved_run, synthetic_ptbxl, cache_dir,
                                                                       tmp_path):
    data = load_ptbxl(synthetic_ptbxl, cache_dir=cache_dir, progress=False)
    model = keras.models.load_model(saved_run.run_dir / "model.keras", compile=False)
    standardizer = saved_run.standardizer
    np.testing.assert_array_equal(saved_run.predictions["test_ecg_ids"], data.test.ecg_ids)
    before = old_predict(model, old_standardized(data.test, standardizer), 400, 300)
    np.testing.assert_allclose(saved_run.predictions["test_prob"], before, rtol=1e-5, atol=1e-6)
    streamed = predict_probabilities(model, data.test.X, crop_length=400, window_stride=300,
                                     standardizer=standardizer)
    np.testing.assert_allclose(streamed, before, rtol=1e-5, atol=1e-6)
    # one record file, by a name with a dot (its suffix is part of the name)
    i = 3
    stem = synthetic_ptbxl / data.meta["filename_lr"].iloc[np.flatnonzero(data.folds == 10)[i]]
    dotted = tmp_path / "patient.1"
    (tmp_path / "patient.1.hea").write_text((stem.parent / f"{stem.name}.hea").read_text())
    (tmp_path / f"{stem.name}.dat").write_bytes((stem.parent / f"{stem.name}.dat").read_bytes())
    for name in (dotted, f"{dotted}.hea"):
        table = predict_ecg(saved_run.run_dir, name).set_index("class")
        np.testing.assert_allclose(table.loc[saved_run.classes, "probability"], before[i], rtol=1e-5, atol=1e-6)
