"""ecgkeras.data.ptbxl, the PTB-XL data layer: labels, folds, signals, cache, errors and standardization.

Expected values are computed here directly from the two CSVs (pandas + ast.literal_eval) and
from wfdb, independently of `ecgkeras.data.ptbxl`, on the real PTB-XL subset (500 records, v1.0.1).
Destructive tests work on small copies of it in tmp_path; nothing is written to the shared folder.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from helpers import one_line_error, peak_numpy_bytes

from ecgkeras.data import ptbxl as data
from ecgkeras.data.ptbxl import Signals, Standardizer, load_ptbxl, read_ecg
from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write, atomic_write_text


PTBXL_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


SUBSET_FOLD_COUNTS = [58, 51, 34, 42, 47, 33, 44, 44, 81, 66]  # SOURCE.md of the subset


SUBSET_SUPERCLASS_COUNTS = {"NORM": 297, "STTC": 96, "CD": 78, "MI": 73, "HYP": 40}


SMALL_IDS = list(range(1, 21))  # ecg_id 1..20 for the small copies


def expected_labels(data_dir: Path, level: str = "subclass") -> tuple[list[str], pd.Series, pd.DataFrame]:
    """Direct reading of the CSVs: the class list, each record's class set and the database."""
    statements = pd.read_csv(data_dir / "scp_statements.csv", index_col=0)
    database = pd.read_csv(data_dir / "ptbxl_database.csv", index_col="ecg_id")
    diagnostic = statements[statements["diagnostic"] == 1.0]
    column = {"subclass": "diagnostic_subclass", "superclass": "diagnostic_class"}[level]
    mapping = dict(zip(diagnostic.index, diagnostic[column]))
    codes = database["scp_codes"].apply(ast.literal_eval)
    per_record = codes.apply(lambda c: frozenset(mapping[code] for code in c if code in mapping))
    return sorted(set(mapping.values())), per_record, database


def copy_subset(src: Path, dst: Path, ids=SMALL_IDS, rates=(100,)) -> Path:
    """A PTB-XL folder in `dst` holding only `ids` (CSV rows filtered, record files copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "scp_statements.csv", dst / "scp_statements.csv")
    database = pd.read_csv(src / "ptbxl_database.csv", index_col="ecg_id")
    database.loc[list(ids)].to_csv(dst / "ptbxl_database.csv")
    for ecg_id in ids:
        for rate in rates:
            stem = database.loc[ecg_id, data.FILENAME_COLUMN[rate]]
            (dst / stem).parent.mkdir(parents=True, exist_ok=True)
            for suffix in (".hea", ".dat"):
                shutil.copyfile(src / (stem + suffix), dst / (stem + suffix))
    return dst


def record_path(folder: Path, ecg_id: int, rate: int = 100) -> Path:
    return folder / f"records{rate}" / "00000" / f"{ecg_id:05d}_{'lr' if rate == 100 else 'hr'}"


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if p.is_file()) if cache_dir.exists() else []


def load_quiet(*args, **kwargs):
    kwargs.setdefault("progress", False)
    return load_ptbxl(*args, **kwargs)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache_real")


@pytest.fixture(scope="module")
def real100(real_ptbxl, module_cache):
    """The real subset at 100 Hz, subclass labels (its signal cache is reused by the level tests)."""
    return load_quiet(real_ptbxl, 100, cache_dir=module_cache)


@pytest.fixture(scope="module")
def small(real_ptbxl, tmp_path_factory) -> Path:
    """Read-only small copy (20 records, both rates)."""
    return copy_subset(real_ptbxl, tmp_path_factory.mktemp("small") / "ptbxl", rates=(100, 500))


def test_subset_is_what_source_md_says(real_ptbxl):
    classes, per_record, database = expected_labels(real_ptbxl, "superclass")
    assert len(database) == 500
    assert np.bincount(database["strat_fold"], minlength=11)[1:].tolist() == SUBSET_FOLD_COUNTS
    counts = {name: sum(name in labels for labels in per_record) for name in classes}
    assert counts == SUBSET_SUPERCLASS_COUNTS


def test_real_100hz_shape_classes_and_labels(real_ptbxl, real100):
    classes, per_record, database = expected_labels(real_ptbxl, "subclass")
    labelled = per_record[per_record.map(len) > 0]
    assert real100.X.dtype == np.float32
    assert real100.X.shape == (len(labelled), 1000, 12)
    assert real100.Y.dtype == np.uint8 and real100.Y.shape == (len(labelled), 23)
    assert real100.classes == classes and len(classes) == 23
    assert real100.sampling_rate == 100 and real100.label_level == "subclass"
    # the same records in the CSV's order, with the CSV's folds
    np.testing.assert_array_equal(real100.ecg_ids, labelled.index.to_numpy())
    np.testing.assert_array_equal(real100.folds, database.loc[labelled.index, "strat_fold"].to_numpy())
    assert list(real100.meta.index) == list(labelled.index)
    # every row, and so every per-class count, equals the direct reading
    for row, labels in zip(real100.Y, labelled):
        assert {real100.classes[j] for j in np.flatnonzero(row)} == set(labels)
    expected_counts = [sum(name in labels for labels in labelled) for name in classes]
    assert real100.Y.sum(axis=0).tolist() == expected_counts
    # dropped: records with no diagnostic code at all
    assert real100.n_dropped == int((per_record.map(len) == 0).sum()) > 0
    assert not np.isin(per_record[per_record.map(len) == 0].index, real100.ecg_ids).any()


def test_real_100hz_values_equal_wfdb(real_ptbxl, real100):
    for i in (0, 137, len(real100.ecg_ids) - 1):
        filename = real100.meta["filename_lr"].iloc[i]
        signal, fields = wfdb.rdsamp(str(real_ptbxl / filename))
        assert [name.upper() for name in fields["sig_name"]] == PTBXL_LEADS
        np.testing.assert_allclose(real100.X[i], signal, rtol=1e-6, atol=1e-6)


def test_split_parts_use_default_folds(real100):
    expected = {"train": range(1, 9), "val": [9], "test": [10]}
    total = 0
    for name, folds in expected.items():
        part = getattr(real100, name)
        mask = np.isin(real100.folds, list(folds))
        assert len(part.X) == len(part.Y) == len(part.ecg_ids) == mask.sum() > 0
        np.testing.assert_array_equal(part.ecg_ids, real100.ecg_ids[mask])
        np.testing.assert_array_equal(part.X, real100.X[mask])
        np.testing.assert_array_equal(part.Y, real100.Y[mask])
        for got, want in zip(real100.part(name), part):
            np.testing.assert_array_equal(got, want)
        total += len(part.ecg_ids)
    assert total == len(real100.ecg_ids)
    with pytest.raises(EcgkerasError) as excinfo:
        real100.part("holdout")
    one_line_error(excinfo, "holdout")


def test_custom_folds(real_ptbxl, module_cache):
    _, per_record, database = expected_labels(real_ptbxl)
    ds = load_quiet(real_ptbxl, train_folds=(1, 2), val_folds=(3,), test_folds=(4,), cache_dir=module_cache)
    in_folds = database["strat_fold"].isin([1, 2, 3, 4]) & (per_record.map(len) > 0)
    np.testing.assert_array_equal(ds.ecg_ids, database.index[in_folds].to_numpy())
    assert ds.n_dropped == 500 - in_folds.sum()
    assert set(ds.folds[np.isin(ds.ecg_ids, ds.train.ecg_ids)]) == {1, 2}
    assert set(ds.val.ecg_ids) == set(database.index[in_folds & (database["strat_fold"] == 3)])
    assert set(ds.test.ecg_ids) == set(database.index[in_folds & (database["strat_fold"] == 4)])


@pytest.mark.parametrize("folds", [dict(train_folds=range(1, 9), val_folds=(8,)),
                                   dict(val_folds=(9, 10), test_folds=(10,))])
def test_overlapping_folds_raise(real_ptbxl, folds):
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(real_ptbxl, **folds)
    one_line_error(excinfo, "overlap")


def test_500hz_values_equal_wfdb(small):
    ds = load_quiet(small, 500, use_cache=False)
    _, per_record, _ = expected_labels(small)
    assert ds.X.dtype == np.float32
    assert ds.X.shape == ((per_record.map(len) > 0).sum(), 5000, 12)
    for i, ecg_id in enumerate(ds.ecg_ids):
        signal, fields = wfdb.rdsamp(str(record_path(small, ecg_id, 500)))
        assert fields["fs"] == 500 and fields["sig_len"] == 5000
        assert [name.upper() for name in fields["sig_name"]] == PTBXL_LEADS
        np.testing.assert_allclose(ds.X[i], signal, rtol=1e-6, atol=1e-6)
    assert list(data.LEADS) == PTBXL_LEADS


def test_superclass_level(real_ptbxl, module_cache):
    ds = load_quiet(real_ptbxl, label_level="superclass", cache_dir=module_cache)
    assert ds.classes == sorted(["NORM", "MI", "STTC", "CD", "HYP"])
    assert dict(zip(ds.classes, ds.Y.sum(axis=0).tolist())) == SUBSET_SUPERCLASS_COUNTS
    _, per_record, _ = expected_labels(real_ptbxl, "superclass")
    assert ds.n_dropped == int((per_record.map(len) == 0).sum())


@pytest.mark.parametrize("level", ["diagnostic", "form", "rhythm", "all"])
def test_statement_levels(real_ptbxl, module_cache, level):
    statements = pd.read_csv(real_ptbxl / "scp_statements.csv", index_col=0)
    database = pd.read_csv(real_ptbxl / "ptbxl_database.csv", index_col="ecg_id")
    codes = statements.index if level == "all" else statements.index[statements[level] == 1.0]
    expected = sorted(codes)
    assert len(expected) == {"diagnostic": 44, "form": 19, "rhythm": 12, "all": 71}[level]
    assert data.level_classes(data.read_statements(real_ptbxl), level) == expected
    ds = load_quiet(real_ptbxl, label_level=level, cache_dir=module_cache)
    assert ds.classes == expected
    record_codes = database["scp_codes"].apply(ast.literal_eval).apply(lambda c: set(c) & set(expected))
    kept = record_codes[record_codes.map(len) > 0]
    np.testing.assert_array_equal(ds.ecg_ids, kept.index.to_numpy())
    assert ds.Y.sum(axis=0).tolist() == [sum(code in c for c in kept) for code in expected]
    assert ds.n_dropped == 500 - len(kept)


@pytest.mark.parametrize("level,n_classes", [("subclass", 23), ("superclass", 5), ("diagnostic", 44)])
def test_class_list_independent_of_loaded_records(real_ptbxl, tmp_path, level, n_classes):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2, 3])
    ds = load_quiet(folder, label_level=level, use_cache=False)
    assert ds.classes == data.level_classes(data.read_statements(real_ptbxl), level)
    assert len(ds.classes) == n_classes and ds.Y.shape[1] == n_classes
    assert (ds.Y.sum(axis=0) == 0).any()  # classes no loaded record has stay as columns


def test_unknown_label_level(real_ptbxl):
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(real_ptbxl, label_level="superclasses")
    one_line_error(excinfo, "label_level", "superclasses")
    with pytest.raises(EcgkerasError) as excinfo:
        data.code_to_class(data.read_statements(real_ptbxl), "nope")
    one_line_error(excinfo, "label_level")


def test_cache_second_load_bit_identical(real_ptbxl, real100, module_cache, monkeypatch):
    uncached = load_quiet(real_ptbxl, use_cache=False)
    np.testing.assert_array_equal(real100.X, uncached.X)
    assert real100.X.dtype == uncached.X.dtype == np.float32
    folders = [p for p in module_cache.iterdir() if p.name.startswith("ptbxl-100hz-")]
    assert len(folders) == 1
    assert {p.name for p in folders[0].iterdir()} == {"signals.npy", "manifest.json"}
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["shape"] == [500, 1000, 12] and manifest["dtype"] == "float32"

    def no_reading(*args, **kwargs):
        raise AssertionError("records were read although a valid cache exists")

    monkeypatch.setattr(data, "read_signals", no_reading)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_quiet(real_ptbxl, cache_dir=module_cache)
    assert np.array_equal(again.X, uncached.X) and np.array_equal(again.Y, uncached.Y)


def test_default_cache_dir_follows_env(small, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKERAS_CACHE", str(tmp_path / "envcache"))
    assert data.default_cache_dir() == tmp_path / "envcache"
    load_quiet(small)
    assert {p.name for p in cache_files(tmp_path / "envcache")} == {"signals.npy", "manifest.json"}


def _build_cache(folder: Path, cache_dir: Path) -> tuple[np.ndarray, Path]:
    reference = load_quiet(folder, use_cache=False).X
    np.testing.assert_array_equal(load_quiet(folder, cache_dir=cache_dir).X, reference)
    (cache_folder,) = cache_dir.iterdir()
    return reference, cache_folder


def _reload_warns(folder: Path, cache_dir: Path, match: str, reference: np.ndarray) -> None:
    with warnings.catch_warnings(record=True) as caught:  # (an exception here propagates as is)
        warnings.simplefilter("always")
        rebuilt = load_quiet(folder, cache_dir=cache_dir)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any(re.search(match, message) for message in messages), messages
    np.testing.assert_array_equal(rebuilt.X, reference)
    with warnings.catch_warnings():  # rebuilt correctly: the next load is a clean cache hit
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_quiet(folder, cache_dir=cache_dir).X, reference)


def test_interrupted_write_is_rebuilt(small, tmp_path):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    (cache_folder / "manifest.json").unlink()
    signals = cache_folder / "signals.npy"
    signals.write_bytes(signals.read_bytes()[:signals.stat().st_size // 3])
    _reload_warns(small, tmp_path / "cache", "incomplete|broken", reference)


def test_interrupted_rebuild_with_stray_tmp_is_rebuilt(small, tmp_path):
    """Killed while rewriting: manifest already removed, a half-written temp file beside it."""
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    (cache_folder / "manifest.json").unlink()
    (cache_folder / ".signals.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY" + b"\0" * 100)
    _reload_warns(small, tmp_path / "cache", "incomplete|broken", reference)


def test_stray_tmp_from_killed_first_write(small, tmp_path):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    for path in cache_folder.iterdir():
        path.unlink()
    stray = cache_folder / ".signals.npy.k1ll3d.tmp"
    stray.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    an_hour_ago = time.time() - 3600  # a write in progress (recent file) must not be removed
    os.utime(stray, (an_hour_ago, an_hour_ago))
    with pytest.warns(UserWarning):
        rebuilt = load_quiet(small, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(rebuilt.X, reference)
    assert {p.name for p in cache_folder.iterdir()} == {"signals.npy", "manifest.json"}


def test_write_interrupted_mid_save_leaves_no_usable_cache(small, tmp_path, monkeypatch):
    """Ctrl-C while the records stream into the cache: no manifest, no temp file, next load rebuilds."""
    reference = load_quiet(small, use_cache=False).X
    real_read = data.read_ecg
    calls = []

    def interrupted_read(path, sampling_rate):
        calls.append(path)
        if len(calls) == 5:  # four records already written to the temporary file
            raise KeyboardInterrupt
        return real_read(path, sampling_rate)

    monkeypatch.setattr(data, "read_ecg", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        load_quiet(small, cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []
    monkeypatch.setattr(data, "read_ecg", real_read)
    np.testing.assert_array_equal(load_quiet(small, cache_dir=tmp_path / "cache").X, reference)
    assert {p.name for p in cache_files(tmp_path / "cache")} == {"signals.npy", "manifest.json"}


def test_truncated_cache_with_manifest_is_rebuilt(small, tmp_path):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    signals = cache_folder / "signals.npy"
    signals.write_bytes(signals.read_bytes()[:-4096])
    _reload_warns(small, tmp_path / "cache", "broken|stale", reference)


def test_corrupted_manifest_is_rebuilt(small, tmp_path):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    (cache_folder / "manifest.json").write_text('{"key": "abc", "shape": [')
    _reload_warns(small, tmp_path / "cache", "broken", reference)


@pytest.mark.parametrize("text", ["[]", "null"])
def test_manifest_not_an_object_is_rebuilt(small, tmp_path, text):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    (cache_folder / "manifest.json").write_text(text)
    _reload_warns(small, tmp_path / "cache", "broken", reference)


def test_changed_record_list_changes_cache_key_metadata_does_not(real_ptbxl, tmp_path):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl")
    cache_dir = tmp_path / "cache"
    first = load_quiet(folder, cache_dir=cache_dir)
    database_csv = folder / "ptbxl_database.csv"
    database = pd.read_csv(database_csv, index_col="ecg_id")
    database.drop(index=first.ecg_ids[0]).to_csv(database_csv)  # drop a labelled record
    second = load_quiet(folder, cache_dir=cache_dir)
    assert len(second.ecg_ids) == len(first.ecg_ids) - 1
    np.testing.assert_array_equal(second.X, first.X[1:])
    assert len(list(cache_dir.iterdir())) == 2
    # same records, other metadata (the signals do not depend on it): the cache is reused as is
    database = pd.read_csv(database_csv, index_col="ecg_id")
    database["age"] = database["age"] + 1
    database.to_csv(database_csv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_quiet(folder, cache_dir=cache_dir).X, second.X)
    assert len(list(cache_dir.iterdir())) == 2
    assert all(p.name.startswith("ptbxl-100hz-") for p in cache_dir.iterdir())


def _rewrite_record(path: Path, scale: float) -> None:
    """Rewrite a record in place with every sample scaled (same format, so the same file sizes)."""
    record = wfdb.rdrecord(str(path))
    wfdb.wrsamp(path.name, fs=record.fs, units=record.units, sig_name=record.sig_name,
                p_signal=record.p_signal * scale, fmt=record.fmt, adc_gain=record.adc_gain,
                baseline=record.baseline, write_dir=str(path.parent))


def test_second_folder_with_the_same_csv_gets_its_own_signals(real_ptbxl, tmp_path):
    """A filtered or repaired copy of PTB-XL shares the CSV byte for byte but not the signals."""
    original = copy_subset(real_ptbxl, tmp_path / "original")
    repaired = copy_subset(real_ptbxl, tmp_path / "repaired")
    _rewrite_record(record_path(repaired, 3), 0.5)
    assert (original / "ptbxl_database.csv").read_bytes() == (repaired / "ptbxl_database.csv").read_bytes()
    cache_dir = tmp_path / "cache"
    load_quiet(original, cache_dir=cache_dir)
    got = load_quiet(repaired, cache_dir=cache_dir)
    np.testing.assert_array_equal(got.X, load_quiet(repaired, use_cache=False).X)
    row = list(got.ecg_ids).index(3)
    np.testing.assert_allclose(got.X[row], wfdb.rdsamp(str(record_path(repaired, 3)))[0], atol=1e-5)
    assert len(list(cache_dir.iterdir())) == 2


def test_changed_record_rebuilds_the_cache_with_a_warning(real_ptbxl, tmp_path):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl")
    cache_dir = tmp_path / "cache"
    before = load_quiet(folder, cache_dir=cache_dir)
    path = record_path(folder, 3)
    size = path.with_suffix(".dat").stat().st_size
    _rewrite_record(path, 2.0)
    assert path.with_suffix(".dat").stat().st_size == size  # only the modification time tells
    _reload_warns(folder, cache_dir, "changed", load_quiet(folder, use_cache=False).X)
    row = list(before.ecg_ids).index(3)
    after = load_quiet(folder, cache_dir=cache_dir)
    assert not np.allclose(after.X[row], before.X[row])
    np.testing.assert_array_equal(np.delete(np.asarray(after.X), row, 0), np.delete(np.asarray(before.X), row, 0))


def test_record_truncated_after_caching_is_noticed(real_ptbxl, tmp_path):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl")
    load_quiet(folder, cache_dir=tmp_path / "cache")
    _truncated_dat(record_path(folder, 3))
    with pytest.warns(UserWarning, match="changed"), pytest.raises(EcgkerasError) as excinfo:
        load_quiet(folder, cache_dir=tmp_path / "cache")
    one_line_error(excinfo, "00003_lr.dat", "truncated")


@pytest.mark.parametrize("content", [b"", b"garbage, not an array\n" * 50, b"\x93NUMPY\x01\x00"],
                         ids=["0-byte", "text", "header only"])
def test_zero_byte_or_garbage_cache_is_rebuilt(small, tmp_path, content):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    (cache_folder / "signals.npy").write_bytes(content)
    _reload_warns(small, tmp_path / "cache", "broken", reference)


@contextlib.contextmanager
def unwritable_folder(path: Path):
    """A folder nobody can create files in: chmod 555, or for root (whom modes do not stop) chattr +i."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a folder read-only for root here (chattr +i unsupported)")
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o555)
        undo = ["chmod", "755", str(path)]
    try:
        yield path
    finally:
        subprocess.run(undo, check=True)


def test_read_only_cache_location_is_a_one_line_error(small, tmp_path):
    with unwritable_folder(tmp_path / "readonly") as folder:
        for cache_dir in (folder, folder / "sub"):
            with pytest.raises(EcgkerasError) as excinfo:
                load_quiet(small, cache_dir=cache_dir)
            one_line_error(excinfo, str(folder), "cache_dir", "ECGKERAS_CACHE")


def test_read_only_cache_that_is_complete_still_serves(small, tmp_path):
    reference, cache_folder = _build_cache(small, tmp_path / "cache")
    with unwritable_folder(cache_folder), warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_quiet(small, cache_dir=tmp_path / "cache").X, reference)


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_honour_the_umask(small, tmp_path, mask, mode):
    with umask(mask):
        atomic_write_text(tmp_path / "metrics.json", "{}")
        atomic_write(tmp_path / "predictions.npz", lambda handle: np.savez(handle, x=np.zeros(3)))
        load_quiet(small, cache_dir=tmp_path / "cache")
    written = [tmp_path / "metrics.json", tmp_path / "predictions.npz", *cache_files(tmp_path / "cache")]
    assert len(written) == 4
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {
        path.name: oct(mode) for path in written}


def test_default_first_load_reads_serially_in_order(small, tmp_path, monkeypatch):
    """Measured on 2 cores: a thread pool reads slower than a serial loop (benchmarks/RESULTS.md)."""
    real_read = data.read_ecg
    seen = []

    def watched_read(path, sampling_rate):
        seen.append((threading.current_thread() is threading.main_thread(), Path(path).name))
        return real_read(path, sampling_rate)

    monkeypatch.setattr(data, "read_ecg", watched_read)
    load_quiet(small, cache_dir=tmp_path / "cache")
    database = pd.read_csv(small / "ptbxl_database.csv")
    assert seen == [(True, Path(name).name) for name in database["filename_lr"]]


def test_missing_data_folder(tmp_path):
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(tmp_path / "no-such-ptbxl")
    one_line_error(excinfo, "no-such-ptbxl", "ecgkeras download")


@pytest.mark.parametrize("name", ["ptbxl_database.csv", "scp_statements.csv"])
def test_missing_csv(real_ptbxl, tmp_path, name):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2])
    (folder / name).unlink()
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(folder, cache_dir=tmp_path / "cache")
    one_line_error(excinfo, name, "ecgkeras download")
    assert cache_files(tmp_path / "cache") == []


def _missing_dat(path: Path) -> None:
    path.with_suffix(".dat").unlink()


def _truncated_dat(path: Path) -> None:
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10_000])


def _corrupt_dat(path: Path) -> None:
    dat = path.with_suffix(".dat")
    raw = bytearray(dat.read_bytes())
    raw[2400] ^= 0xFF  # low byte of one sample: the lead's 16-bit checksum must change
    dat.write_bytes(bytes(raw))


def _header_length(n_samples: int):
    def edit(path: Path) -> None:
        hea = path.with_suffix(".hea")
        lines = hea.read_text().splitlines(keepends=True)
        fields = lines[0].split()
        assert fields[3] == "1000"
        lines[0] = " ".join(fields[:3] + [str(n_samples)]) + "\n"
        hea.write_text("".join(lines))
    return edit


def _non_finite(path: Path) -> None:
    record = wfdb.rdrecord(str(path))
    signal = record.p_signal.copy()
    signal[500, 3] = np.nan
    wfdb.wrsamp(path.name, fs=record.fs, units=record.units, sig_name=record.sig_name,
                p_signal=signal, fmt=["16"] * 12, adc_gain=record.adc_gain,
                baseline=record.baseline, write_dir=str(path.parent))


BROKEN_RECORDS = {
    "missing .dat": (_missing_dat, ["00003_lr.dat", "missing"]),
    "truncated .dat": (_truncated_dat, ["00003_lr.dat", "truncated"]),
    "corrupt .dat": (_corrupt_dat, ["00003_lr.dat", "checksum"]),
    "header says more samples": (_header_length(1100), ["00003_lr"]),
    "header says fewer samples": (_header_length(900), ["00003_lr"]),
    "non-finite samples": (_non_finite, ["00003_lr.dat", "non-finite"]),
}


@pytest.mark.parametrize("case", list(BROKEN_RECORDS))
def test_broken_record_is_one_line_error_and_leaves_no_cache(real_ptbxl, tmp_path, case):
    breaker, needles = BROKEN_RECORDS[case]
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2, 3, 4, 5])
    path = record_path(folder, 3)
    np.testing.assert_array_equal(read_ecg(path, 100), wfdb.rdsamp(str(path))[0].astype(np.float32))
    breaker(path)
    with pytest.raises(EcgkerasError) as excinfo:
        read_ecg(path, 100)
    one_line_error(excinfo, *needles)
    cache_dir = tmp_path / "cache"
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(folder, cache_dir=cache_dir, n_jobs=2)
    one_line_error(excinfo, *needles)
    assert cache_files(cache_dir) == []  # no manifest, no signals, no temp file


def test_record_at_wrong_sampling_rate(real_ptbxl, tmp_path):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2, 3], rates=(100, 500))
    database = pd.read_csv(folder / "ptbxl_database.csv", index_col="ecg_id")
    database.loc[2, "filename_lr"] = database.loc[2, "filename_hr"]
    database.to_csv(folder / "ptbxl_database.csv")
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(folder, 100, cache_dir=tmp_path / "cache")
    one_line_error(excinfo, "00002_hr", "500 Hz", "sampling_rate")
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.parametrize("rate", [250, 1000, "100"])
def test_unavailable_sampling_rate(small, rate):
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(small, rate)
    one_line_error(excinfo, "sampling_rate", str(rate))


@pytest.mark.parametrize("cell", ["5", "[1, 2]", "'NORM'", "{'NORM': 100.0"])
def test_scp_codes_that_are_not_a_dictionary(real_ptbxl, tmp_path, cell):
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2, 3])
    database = pd.read_csv(folder / "ptbxl_database.csv", index_col="ecg_id")
    database["scp_codes"] = database["scp_codes"].astype(object)
    database.loc[2, "scp_codes"] = cell
    database.to_csv(folder / "ptbxl_database.csv")
    with pytest.raises(EcgkerasError) as excinfo:
        load_quiet(folder, cache_dir=tmp_path / "cache")
    one_line_error(excinfo, "ptbxl_database.csv", "ecg_id 2", "scp_codes")
    assert cache_files(tmp_path / "cache") == []


def test_record_name_with_a_dot_keeps_its_suffix(real_ptbxl, tmp_path):
    """`00003_lr.1` is a record name (header `00003_lr.1.hea`), not `00003_lr` with an extension."""
    folder = copy_subset(real_ptbxl, tmp_path / "ptbxl", ids=[1, 2, 3])
    path = record_path(folder, 3)
    dotted = path.parent / "00003_lr.1"
    path.with_suffix(".hea").rename(dotted.parent / "00003_lr.1.hea")  # its .dat stays as the header names it
    expected = wfdb.rdsamp(str(dotted))[0]
    np.testing.assert_allclose(read_ecg(dotted, 100), expected, atol=1e-6)
    assert data.record_name(dotted) == dotted
    assert data.record_name(f"{dotted}.hea") == data.record_name(f"{dotted}.dat") == dotted
    database = pd.read_csv(folder / "ptbxl_database.csv", index_col="ecg_id")
    database.loc[3, "filename_lr"] += ".1"
    database.to_csv(folder / "ptbxl_database.csv")
    ds = load_quiet(folder, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(ds.X[list(ds.ecg_ids).index(3)], expected, atol=1e-6)
    with pytest.raises(EcgkerasError) as excinfo:
        read_ecg(path.parent / "00003_lr.2", 100)
    one_line_error(excinfo, "00003_lr.2.hea", "missing")


def test_standardizer_fitted_on_train_only(real_ptbxl, real100):
    _, _, database = expected_labels(real_ptbxl)
    train_mask = database.loc[real100.ecg_ids, "strat_fold"].between(1, 8).to_numpy()
    train_X = real100.X[train_mask].astype(np.float64)
    standardizer = Standardizer.fit(real100.train.X)
    np.testing.assert_allclose(standardizer.mean, train_X.mean(axis=(0, 1)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(standardizer.std, train_X.std(axis=(0, 1)), rtol=1e-5, atol=1e-7)
    assert standardizer.mean.shape == standardizer.std.shape == (12,)
    # fitting on everything would give other values: the test tells the two apart
    everything = np.asarray(real100.X, dtype=np.float64)
    assert not np.allclose(standardizer.mean, everything.mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)


def test_standardizer_transform_and_round_trip(real100):
    standardizer = Standardizer.fit(real100.train.X)
    Z = standardizer.transform(real100.train.X)
    assert Z.dtype == np.float32 and Z.shape == real100.train.X.shape
    np.testing.assert_allclose(Z.mean(axis=(0, 1), dtype=np.float64), 0.0, atol=1e-4)
    np.testing.assert_allclose(Z.std(axis=(0, 1), dtype=np.float64), 1.0, atol=1e-4)
    restored = Standardizer.from_dict(json.loads(json.dumps(standardizer.to_dict())))
    np.testing.assert_array_equal(restored.mean, standardizer.mean)
    np.testing.assert_array_equal(restored.std, standardizer.std)
    np.testing.assert_array_equal(restored.transform(real100.val.X), standardizer.transform(real100.val.X))


def test_standardizer_lead_count_mismatch(real100):
    standardizer = Standardizer.fit(real100.train.X)
    with pytest.raises(EcgkerasError) as excinfo:
        standardizer.transform(real100.val.X[..., :11])
    one_line_error(excinfo, "11", "12")


def copy_ptbxl(src: Path, dst: Path, ids=(1, 2, 3, 4, 5)) -> Path:
    """A PTB-XL folder holding only `ids` at 100 Hz (rows filtered, record files copied)."""
    dst.mkdir(parents=True)
    shutil.copyfile(src / data.STATEMENTS_CSV, dst / data.STATEMENTS_CSV)
    database = pd.read_csv(src / data.DATABASE_CSV, index_col="ecg_id").loc[list(ids)]
    database.to_csv(dst / data.DATABASE_CSV)
    for stem in database["filename_lr"]:
        (dst / stem).parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".hea", ".dat"):
            shutil.copyfile(src / f"{stem}{suffix}", dst / f"{stem}{suffix}")
    return dst


def _cut_inside_a_quoted_field(text: str) -> str:
    return text[:text.rindex("'NORM'")]


def _cut_after_scp_codes(text: str) -> str:
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    return text[:text.rindex(last) + last.index("}\",") + 3] + "\n"


@pytest.mark.parametrize("cut", [_cut_inside_a_quoted_field, _cut_after_scp_codes])
def test_a_truncated_database_csv_is_one_line_error_naming_file_and_row(real_ptbxl, tmp_path, cut):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    csv = folder / data.DATABASE_CSV
    csv.write_text(cut(csv.read_text()))
    with pytest.raises(EcgkerasError) as excinfo:
        load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    message = one_line_error(excinfo, str(csv), "truncated", "ecgkeras download")
    assert "row" in message
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("column, value, needle", [
    ("strat_fold", "x", "ecg_id 3"),
    ("strat_fold", "", "strat_fold empty"),
    ("filename_lr", "", "filename_lr empty"),
])
def test_a_malformed_database_row_is_named(real_ptbxl, tmp_path, column, value, needle):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    database = pd.read_csv(folder / data.DATABASE_CSV, index_col="ecg_id").astype({column: object})
    database.loc[3, column] = value
    database.to_csv(folder / data.DATABASE_CSV)
    with pytest.raises(EcgkerasError) as excinfo:
        data.read_database(folder)
    one_line_error(excinfo, data.DATABASE_CSV, "ecg_id 3", needle)


def test_a_duplicated_ecg_id_is_refused(real_ptbxl, tmp_path):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    database = pd.read_csv(folder / data.DATABASE_CSV)
    database.loc[4, "ecg_id"] = 2
    database.to_csv(folder / data.DATABASE_CSV, index=False)
    with pytest.raises(EcgkerasError) as excinfo:
        data.read_database(folder)
    one_line_error(excinfo, data.DATABASE_CSV, "ecg_id 2", "more than once")


@pytest.mark.parametrize("name", [data.DATABASE_CSV, data.STATEMENTS_CSV])
def test_a_csv_that_is_not_text_is_one_line_error(real_ptbxl, tmp_path, name):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    (folder / name).write_bytes(bytes(range(256)) * 8)
    with pytest.raises(EcgkerasError) as excinfo:
        load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    one_line_error(excinfo, name)


@pytest.mark.parametrize("outside", ["../../outside/00005_lr", "/{tmp}/outside/00005_lr", "records100/../../x"])
def test_a_record_path_outside_the_data_folder_is_refused(real_ptbxl, tmp_path, outside):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "data" / "ptbxl")
    (tmp_path / "outside").mkdir()  # a readable record there: the old code read it without a word
    for suffix in (".hea", ".dat"):
        shutil.copyfile(folder / f"records100/00000/00005_lr{suffix}", tmp_path / "outside" / f"00005_lr{suffix}")
    database = pd.read_csv(folder / data.DATABASE_CSV, index_col="ecg_id")
    database.loc[5, "filename_lr"] = outside.format(tmp=str(tmp_path).lstrip("/"))
    database.to_csv(folder / data.DATABASE_CSV)
    with pytest.raises(EcgkerasError) as excinfo:
        load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    one_line_error(excinfo, "ecg_id 5", data.DATABASE_CSV, "outside the data folder")
    assert not (tmp_path / "cache").exists()


def _cache_file(cache_dir: Path) -> Path:
    (folder,) = cache_dir.iterdir()
    return folder / "signals.npy"


def test_a_cache_whose_contents_changed_is_rebuilt_with_one_warning(real_ptbxl, tmp_path, caplog):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    reference = np.asarray(load_ptbxl(folder, use_cache=False, progress=False).X)
    load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    signals = _cache_file(tmp_path / "cache")
    manifest = json.loads((signals.parent / "manifest.json").read_text())
    assert manifest["format"] == data.CACHE_FORMAT == 3 and isinstance(manifest["crc32"], int)
    header = np.load(signals, mmap_mode="r").offset
    content = signals.read_bytes()
    signals.write_bytes(content[:header] + bytes(len(content) - header))  # same size, same header, zeros
    with caplog.at_level(logging.WARNING, logger="ecgkeras.data.ptbxl"):
        rebuilt = load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    warned = [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and str(signals.parent) in warned[0]
    np.testing.assert_array_equal(np.asarray(rebuilt.X), reference)
    assert signals.read_bytes() == content  # rebuilt as it was
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecgkeras.data.ptbxl"):
        load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    assert not [r for r in caplog.records if "checksum" in r.getMessage()]


def test_the_checksum_is_computed_while_writing_no_second_pass(real_ptbxl, tmp_path, monkeypatch):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    monkeypatch.setattr(data, "_data_checksum", lambda path: pytest.fail("the first load re-read the cache"))
    load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.undo()
    signals = _cache_file(tmp_path / "cache")
    assert json.loads((signals.parent / "manifest.json").read_text())["crc32"] == data._data_checksum(signals)


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
