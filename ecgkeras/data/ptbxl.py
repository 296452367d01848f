"""PTB-XL as PhysioNet distributes it: metadata, labels, folds, signals and an on-disk cache.

`load_ptbxl` is the entry point. It reads `ptbxl_database.csv` and `scp_statements.csv`,
builds the multi-label target at the chosen level the way the PTB-XL benchmark does
(Strodthoff et al. 2020: a code counts whatever its likelihood), reads the WFDB records
with wfdb, streaming them into a memory-mappable `.npy` cache.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import itertools
import json
import logging
import mmap
import os
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import pandas as pd
import wfdb
from tqdm import tqdm

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

LEADS: tuple[str, ...] = ("I", "II", "III", "AVR", "AVL", "AVF",
                          "V1", "V2", "V3", "V4", "V5", "V6")
LABEL_LEVELS: tuple[str, ...] = ("subclass", "superclass", "diagnostic", "form", "rhythm", "all")
FILENAME_COLUMN: dict[int, str] = {100: "filename_lr", 500: "filename_hr"}
DEFAULT_FOLDS: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,)}
DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
CACHE_FORMAT = 3  # 2: keyed on the resolved data folder, checked against every record file's stat;
# 3: the manifest holds the CRC-32 of the array's data, verified whenever the cache is opened
CHECKSUM_BLOCK = 16 << 20  # bytes read at a time when verifying a cache's checksum
# Records are read serially by default: on 2 cores a thread pool read 0.7-0.9x as fast as a serial loop
# (wfdb parses headers in Python, under the GIL; benchmarks/RESULTS.md, loading).
DEFAULT_READ_JOBS = 1
HOW_TO_GET = ("get PTB-XL with `ecgkeras download --dest DIR`, make a synthetic copy with "
              "`ecgkeras synth --out DIR`, or point PTBXL_DIR at an existing copy")
REDOWNLOAD = "re-download PTB-XL (`ecgkeras download --dest DIR`) or regenerate the synthetic copy (`ecgkeras synth`)"


class Signals:
    """Records of a (records, time, leads) float32 array, read only when indexed.

    `source` is a whole array: the signal cache's read-only memory map (or, with the cache off, an
    in-memory array); `rows` are the records of this view, in order. Indexing reads just the records
    asked for (and unmaps them again, so nothing stays resident); `load()` or
    `np.asarray(view)` read the whole view into memory, which is what a caller asks for explicitly.
    """

    def __init__(self, source: np.ndarray, rows: np.ndarray | None = None):
        self.source = source
        self.rows = np.arange(len(source)) if rows is None else np.asarray(rows, dtype=np.intp)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.source.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def ndim(self) -> int:
        return self.source.ndim

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        kind = "memory map" if isinstance(self.source, np.memmap) else "array"
        return f"Signals({self.shape}, {self.dtype}, {kind})"

    def take(self, positions) -> "Signals":
        """A view of the records at `positions` (indices or a boolean mask); reads nothing."""
        return Signals(self.source, self.rows[positions])

    def read(self, positions) -> np.ndarray:
        """The records at `positions` (indices into this view) as a new array."""
        rows = self.rows[np.asarray(positions, dtype=np.intp)]
        if isinstance(self.source, np.memmap):
            return _read_rows(self.source, rows)
        return self.source[rows]

    def load(self) -> np.ndarray:
        """The whole view as an in-memory array."""
        return self.read(np.arange(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.load()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if first is Ellipsis:
            return self.load()[key]
        positions = np.arange(len(self))[first]
        records = self.read(np.atleast_1d(positions))
        if np.ndim(positions) == 0:
            return records[0][rest]
        return records[(slice(None), *rest)]


def _read_rows(memmap: np.memmap, rows: np.ndarray) -> np.ndarray:
    """Rows of a memory map, copied; then its pages are dropped from this process (not from the page
    cache), so reading a whole epoch does not leave the file resident in the process's memory."""
    out = np.asarray(memmap[rows])
    if isinstance(memmap.base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        memmap.base.madvise(mmap.MADV_DONTNEED)
    return out


class Part(NamedTuple):
    """One split of the dataset: signals (a `Signals` view or an array), labels and record ids."""

    X: Signals | np.ndarray
    Y: np.ndarray
    ecg_ids: np.ndarray

    def load(self) -> "Part":
        """The same part with its signals read into memory."""
        return self._replace(X=np.asarray(self.X))


@dataclass
class PTBXL:
    """PTB-XL records with multi-label targets at one label level.

    `signals` is every record of the cache, dropped ones included (a read-only memory map, or an
    in-memory array with `use_cache=False`), `rows` the kept records' rows in it. `X` is a
    `Signals` view of the kept records, float32 (records, time, 12 leads) in millivolts, read on
    indexing; `Y` is uint8 (records, classes) with columns in the order of `classes`, `folds` holds
    each record's `strat_fold`.
    """

    signals: np.ndarray
    rows: np.ndarray
    Y: np.ndarray
    classes: list[str]
    ecg_ids: np.ndarray
    folds: np.ndarray
    meta: pd.DataFrame
    data_dir: Path
    sampling_rate: int
    label_level: str
    split_folds: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_FOLDS))
    n_dropped: int = 0

    @property
    def X(self) -> Signals:
        return Signals(self.signals, self.rows)

    def part(self, name: str) -> Part:
        """The records of split `name` ('train', 'val' or 'test')."""
        if name not in self.split_folds:
            raise EcgkerasError(f"unknown split {name!r}: use one of {sorted(self.split_folds)}")
        mask = np.isin(self.folds, self.split_folds[name])
        return Part(Signals(self.signals, self.rows[mask]), self.Y[mask], self.ecg_ids[mask])

    @property
    def train(self) -> Part:
        return self.part("train")

    @property
    def val(self) -> Part:
        return self.part("val")

    @property
    def test(self) -> Part:
        return self.part("test")

    def summary(self) -> pd.DataFrame:
        """Positive records per class and split (a quick look at imbalance)."""
        counts = {name: self.part(name).Y.sum(axis=0) for name in self.split_folds}
        return pd.DataFrame(counts, index=pd.Index(self.classes, name="class")).astype(int)


# --------------------------------------------------------------------------- metadata

def _require_file(path: Path) -> Path:
    if not path.parent.is_dir():
        raise EcgkerasError(f"PTB-XL folder not found: {path.parent}; {HOW_TO_GET}")
    if not path.is_file():
        raise EcgkerasError(f"{path.name} missing in {path.parent}: not a PTB-XL folder; {HOW_TO_GET}")
    return path


def read_statements(data_dir: str | Path) -> pd.DataFrame:
    """`scp_statements.csv` indexed by SCP code."""
    path = _require_file(Path(data_dir) / STATEMENTS_CSV)
    statements = _read_csv(path, index_col=0)
    needed = {"diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"}
    if missing := needed - set(statements.columns):
        raise EcgkerasError(f"{path} lacks columns {sorted(missing)}: not PTB-XL's scp_statements.csv")
    return statements


def read_database(data_dir: str | Path) -> pd.DataFrame:
    """`ptbxl_database.csv` indexed by ecg_id, with `scp_codes` parsed into dicts."""
    path = _require_file(Path(data_dir) / DATABASE_CSV)
    meta = _read_csv(path)
    needed = {"ecg_id", "scp_codes", "strat_fold", *FILENAME_COLUMN.values()}
    if missing := needed - set(meta.columns):
        raise EcgkerasError(f"{path} lacks columns {sorted(missing)}: not PTB-XL's ptbxl_database.csv")
    _check_rows(path, meta)
    meta = meta.assign(ecg_id=meta["ecg_id"].astype(np.int64), strat_fold=meta["strat_fold"].astype(np.int64))
    meta = meta.set_index("ecg_id")
    meta["scp_codes"] = [_parse_scp_codes(path, ecg_id, text) for ecg_id, text in meta["scp_codes"].items()]
    return meta


def _read_csv(path: Path, **options) -> pd.DataFrame:
    """A CSV file, or a one-line error when it cannot be parsed (cut off, not text)."""
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise EcgkerasError(f"cannot read {path} ({reason}): the file is truncated or damaged; {REDOWNLOAD}") from None


def _check_rows(path: Path, meta: pd.DataFrame) -> None:
    """Every row of the database is whole: an integer ecg_id (once) and fold, record paths inside the folder."""
    needed = ["ecg_id", "strat_fold", *FILENAME_COLUMN.values()]
    ids = pd.to_numeric(meta["ecg_id"], errors="coerce")
    folds = pd.to_numeric(meta["strat_fold"], errors="coerce")
    whole = meta[needed].notna().all(axis=1) & (ids % 1 == 0) & (folds % 1 == 0)
    for column in FILENAME_COLUMN.values():
        whole &= meta[column].map(lambda name: isinstance(name, str) and bool(name.strip()))
    if not whole.all():
        row = int(np.flatnonzero(~whole.to_numpy())[0])
        blank = [column for column in needed if pd.isna(meta[column].iloc[row])]
        what = f"{', '.join(blank)} empty" if blank else "a malformed ecg_id, strat_fold or record path"
        raise EcgkerasError(f"{path}: data row {row + 1} (ecg_id {meta['ecg_id'].iloc[row]}) has {what}: the file "
                            f"is truncated or damaged; {REDOWNLOAD}")
    if (duplicated := ids[ids.duplicated()]).size:
        raise EcgkerasError(f"{path}: ecg_id {int(duplicated.iloc[0])} appears more than once; {REDOWNLOAD}")
    for column in FILENAME_COLUMN.values():
        for ecg_id, name in zip(ids, meta[column]):
            normal = os.path.normpath(name)
            if os.path.isabs(normal) or normal == ".." or normal.startswith(f"..{os.sep}"):
                raise EcgkerasError(f"{path}: {column} of ecg_id {int(ecg_id)} is {name!r}, outside the data "
                                    f"folder {path.parent}; record paths must be relative to it: {REDOWNLOAD}")


def _parse_scp_codes(path: Path, ecg_id: object, text: object) -> dict:
    """One `scp_codes` cell: a dictionary of SCP code -> likelihood."""
    try:
        codes = ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise EcgkerasError(f"{path}: unreadable scp_codes of ecg_id {ecg_id} ({type(exc).__name__}); "
                            "restore the original file") from exc
    if not isinstance(codes, dict):
        raise EcgkerasError(f"{path}: scp_codes of ecg_id {ecg_id} is {str(text)[:40]!r}, not a dictionary "
                            "of SCP codes such as {'NORM': 100.0}; restore the original file")
    return codes


def code_to_class(statements: pd.DataFrame, level: str) -> dict[str, str]:
    """Map each SCP code that counts at `level` to its class name."""
    if level not in LABEL_LEVELS:
        raise EcgkerasError(f"unknown label_level {level!r}: use one of {', '.join(LABEL_LEVELS)}")
    diagnostic = statements[statements["diagnostic"] == 1]
    if level == "subclass":
        return diagnostic["diagnostic_subclass"].to_dict()
    if level == "superclass":
        return diagnostic["diagnostic_class"].to_dict()
    if level == "all":
        return {code: code for code in statements.index}
    column = "diagnostic" if level == "diagnostic" else level
    return {code: code for code in statements.index[statements[column] == 1]}


def level_classes(statements: pd.DataFrame, level: str) -> list[str]:
    """The sorted class list of `level`, independent of which records are loaded."""
    return sorted(set(code_to_class(statements, level).values()))


def label_matrix(scp_codes: Iterable[dict], statements: pd.DataFrame, level: str
                 ) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels (records x classes) and the class list; any likelihood counts."""
    mapping = code_to_class(statements, level)
    classes = level_classes(statements, level)
    column = {name: i for i, name in enumerate(classes)}
    rows = list(scp_codes)
    Y = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    for i, codes in enumerate(rows):
        for code in codes:
            if code in mapping:
                Y[i, column[mapping[code]]] = 1
    return Y, classes


# --------------------------------------------------------------------------- signals

def record_name(path: str | Path) -> Path:
    """`path` without a `.hea` or `.dat` extension (only those: `patient.1` keeps its `.1`)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat") else path


def read_wfdb(path: str | Path, fix: str = "re-download PTB-XL or regenerate the dataset"):
    """One WFDB record's header and its samples in the header's units, float32 (time, channels), checked.

    The signal file is the header's: a `.dat` (any WFDB format) or the Challenge's `.mat` (a MATLAB
    array `val`, channels x samples, read with scipy whatever its MATLAB version). `fix` ends the errors.
    """
    path = Path(path)
    header_file = path.parent / f"{path.name}.hea"  # not with_suffix: a record name may contain dots
    if not header_file.is_file():
        raise EcgkerasError(f"record file missing: {header_file}; {fix}")
    if not (path.parent / f"{path.name}.mat").is_file():  # rdrecord alone: wfdb parses the header once, not twice
        try:
            record = wfdb.rdrecord(str(path), physical=False)
        except Exception:  # read again step by step below, for the error that names what is broken
            record = None
        if record is not None and not _names_mat_files(record):
            return record, _checked_samples(path, record, fix)
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises ValueError/IndexError/... on broken files
        raise EcgkerasError(f"{header_file} is not a readable WFDB header ({' '.join(str(exc).split())}): give "
                            "a WFDB record (a .hea header and the signal file it names)") from exc
    if _names_mat_files(header):
        return header, _read_mat(path.parent / sorted(header.file_name)[0], header, fix)
    try:
        record = wfdb.rdrecord(str(path), physical=False)
    except FileNotFoundError as exc:  # the signal file its header names
        raise EcgkerasError(f"record file missing: {exc.filename}; {fix}") from exc
    except Exception as exc:
        raise EcgkerasError(f"cannot read record {path}.dat ({exc}): the file is truncated or does "
                            f"not match its header; {fix}") from exc
    return record, _checked_samples(path, record, fix)


def _names_mat_files(header) -> bool:
    files = set(header.file_name or [])
    return bool(files) and all(str(name).lower().endswith(".mat") for name in files)


def _checked_samples(path: Path, record, fix: str) -> np.ndarray:
    """The samples of a record wfdb read, in its header's units, after checking length and checksums."""
    if record.d_signal.shape != (record.sig_len, record.n_sig):
        raise EcgkerasError(f"record {path}.dat holds {record.d_signal.shape[0]} samples but its header "
                            f"says {record.sig_len}; {fix}")
    if record.checksum is not None and record.calc_checksum() != record.checksum:
        raise EcgkerasError(f"record {path}.dat does not match the checksums in its header "
                            f"(corrupt file); {fix}")
    signal = record.dac(return_res=32)
    if not np.isfinite(signal).all():
        raise EcgkerasError(f"record {path}.dat contains non-finite samples; exclude or repair it")
    return signal


def _read_mat(path: Path, header, fix: str) -> np.ndarray:
    """The Challenge's signal file: `val` (channels x samples, digital) scaled by the header's gains."""
    from scipy.io import loadmat

    if not path.is_file():
        raise EcgkerasError(f"record file missing: {path}; {fix}")
    try:
        digital = np.asarray(loadmat(path)["val"], dtype=np.float64)
    except Exception as exc:  # scipy: ValueError, KeyError (no val), TypeError ...
        raise EcgkerasError(f"cannot read {path} ({type(exc).__name__}: {' '.join(str(exc).split())}): the "
                            f"Challenge's .mat holds the array 'val' (leads x samples); {fix}") from None
    if digital.ndim != 2 or digital.shape != (header.n_sig, header.sig_len):
        raise EcgkerasError(f"{path} holds an array of shape {digital.shape}, its header says {header.n_sig} "
                            f"leads x {header.sig_len} samples; {fix}")
    gain = np.asarray(header.adc_gain, dtype=np.float64)
    baseline = np.asarray(header.baseline, dtype=np.float64)
    signal = ((digital.T - baseline) / np.where(gain == 0, 200.0, gain)).astype(np.float32)  # WFDB: gain 0 means 200
    if not np.isfinite(signal).all():
        raise EcgkerasError(f"{path} contains non-finite samples; exclude or repair it")
    return signal


def read_ecg(path: str | Path, sampling_rate: int) -> np.ndarray:
    """One PTB-XL record as float32 (time, 12) in mV, checked against its header (rate and leads as PTB-XL's)."""
    header, signal = read_wfdb(path)
    if header.fs != sampling_rate:
        raise EcgkerasError(f"record {path} is sampled at {header.fs:g} Hz, not {sampling_rate} Hz; "
                            "pass the matching sampling_rate")
    names = tuple(name.upper() for name in header.sig_name)
    if names != LEADS:
        raise EcgkerasError(f"record {path}.hea has leads {names}, expected PTB-XL's {LEADS}")
    return signal


class RecordReader(NamedTuple):
    """How a dataset's records become signals: `read(path)` -> float32 (time, 12); `kind` names it in the cache
    key (None: PTB-XL's own); `suffixes` are the files whose size and time the cache's manifest checks."""

    kind: str | None
    read: Callable[[Path], np.ndarray]
    suffixes: tuple[str, ...] = (".hea", ".dat")


def iter_ecgs(data_dir: str | Path, filenames: list[str], sampling_rate: int,
                 n_jobs: int | None = None, progress: bool = True,
                 read: Callable[[Path], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Each record of `filenames` in order (read with `read`, default `read_ecg`), checked to be as long as the first.

    Serial by default (`DEFAULT_READ_JOBS`); `n_jobs` > 1 reads in that many threads.
    """
    paths = [Path(data_dir) / name for name in filenames]
    read = read or partial(read_ecg, sampling_rate=sampling_rate)
    with contextlib.ExitStack() as stack:
        signals: Iterable[np.ndarray] = map(read, paths)
        if (n_jobs or DEFAULT_READ_JOBS) > 1:
            pool = ThreadPoolExecutor(max_workers=n_jobs)
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            signals = pool.map(read, paths)
        length = None
        for path, signal in zip(paths, tqdm(signals, total=len(paths), unit="ecg", disable=not progress,
                                            desc=f"reading {sampling_rate} Hz records")):
            length = length or signal.shape[0]
            if signal.shape[0] != length:
                raise EcgkerasError(f"record {path} has {signal.shape[0]} samples, {paths[0]} has {length}; "
                                    "the records of a dataset must be equally long (PTB-XL's are all 10 s)")
            yield signal


def read_signals(data_dir: str | Path, filenames: list[str], sampling_rate: int,
                 n_jobs: int | None = None, progress: bool = True,
                 read: Callable[[Path], np.ndarray] | None = None) -> np.ndarray:
    """Read records into one in-memory float32 array (records, time, 12), filled as they are read."""
    signals = None
    for i, signal in enumerate(iter_ecgs(data_dir, filenames, sampling_rate, n_jobs, progress, read)):
        if signals is None:
            signals = np.empty((len(filenames), *signal.shape), np.float32)
        signals[i] = signal
    return signals if signals is not None else np.zeros((0, 0, len(LEADS)), np.float32)


def _write_npy(handle: BinaryIO, records: Iterator[np.ndarray], n_records: int) -> int:
    """Stream `n_records` equally shaped float32 records into `handle` as one `.npy` array; returns the
    CRC-32 of the array's data bytes, computed as they are written (no second pass)."""
    first = next(records, None)
    if first is None:
        np.save(handle, np.zeros((0, 0, len(LEADS)), np.float32))
        return zlib.crc32(b"")
    np.lib.format.write_array_header_1_0(handle, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
        "shape": (n_records, *first.shape)})
    checksum = 0
    for signal in itertools.chain([first], records):
        block = np.ascontiguousarray(signal, np.float32).tobytes()
        handle.write(block)
        checksum = zlib.crc32(block, checksum)
    return checksum


def _data_checksum(path: Path) -> int:
    """CRC-32 of a `.npy` file's data bytes (everything after its header), read block by block."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        read_header(handle)
        checksum, buffer = 0, bytearray(CHECKSUM_BLOCK)
        while n := handle.readinto(buffer):
            checksum = zlib.crc32(memoryview(buffer)[:n], checksum)
    return checksum


# --------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    """`$ECGKERAS_CACHE`, else `~/.cache/ecgkeras`."""
    return Path(os.environ.get("ECGKERAS_CACHE", Path.home() / ".cache" / "ecgkeras"))


def _dataset_key(data_dir: Path, filenames: list[str], sampling_rate: int, kind: str | None = None) -> str:
    """Which signal array a cache folder holds: the resolved data folder, the record list, the rate (and the reader)."""
    identity = [CACHE_FORMAT, str(data_dir.resolve()), sampling_rate, filenames, *([kind] if kind else [])]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def _records_fingerprint(data_dir: Path, filenames: list[str], suffixes: tuple[str, ...] = (".hea", ".dat")) -> str:
    """Size and modification time of every record's files (one stat each), hashed."""
    digest = hashlib.sha256()
    folder = os.path.join(data_dir, "")
    for name in filenames:
        for suffix in suffixes:  # plain strings: pathlib would take longer than the stats
            try:
                stat = os.stat(f"{folder}{name}{suffix}")
                digest.update(f"{stat.st_size} {stat.st_mtime_ns};".encode())
            except OSError:
                digest.update(b"missing;")
    return digest.hexdigest()


def _cache_paths(cache_dir: Path, key: str, sampling_rate: int) -> tuple[Path, Path]:
    folder = cache_dir / f"ptbxl-{sampling_rate}hz-{key}"
    return folder / "signals.npy", folder / "manifest.json"


def _remove_stale_temporaries(folder: Path, min_age_s: float = 600.0) -> None:
    """Delete temporary files left by a killed cache write (old enough not to be in progress)."""
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > min_age_s:
                warnings.warn(f"removing {tmp}, left by an interrupted cache write")
                tmp.unlink()


def _read_cache(signals_path: Path, manifest_path: Path, key: str, fingerprint: str) -> np.ndarray | None:
    """The cached array (read-only memory map), or None if absent, broken or stale."""
    _remove_stale_temporaries(signals_path.parent)
    if not manifest_path.exists():
        if signals_path.exists():
            warnings.warn(f"incomplete signal cache {signals_path.parent} (no manifest): rebuilding it")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("manifest is not a JSON object")
        signals = np.load(signals_path, mmap_mode="r", allow_pickle=False)
        valid = (manifest["key"] == key and list(signals.shape) == manifest["shape"]
                 and str(signals.dtype) == manifest["dtype"]
                 and signals_path.stat().st_size == manifest["bytes"])
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:  # 0-byte, garbage, truncated
        warnings.warn(f"broken signal cache {signals_path.parent} ({type(exc).__name__}: {exc}): rebuilding it")
        return None
    if not valid:
        warnings.warn(f"stale signal cache {signals_path.parent}: rebuilding it")
        return None
    if manifest.get("records") != fingerprint:
        warnings.warn(f"record files changed since the signal cache {signals_path.parent} was built "
                      "(size or modification time): rebuilding it")
        return None
    if _data_checksum(signals_path) != manifest.get("crc32"):  # last: it reads the whole file
        log.warning("the signal cache %s does not match the checksum it was written with (its contents "
                    "changed on disk): rebuilding it", signals_path.parent)
        return None
    return signals


def _unwritable(folder: Path, exc: OSError) -> EcgkerasError:
    return EcgkerasError(f"cannot write the signal cache in {folder} ({exc.strerror or exc}): pass "
                         "cache_dir (a writable folder), set ECGKERAS_CACHE to one, or use_cache=False")


def _write_cache(records: Iterator[np.ndarray], n_records: int, signals_path: Path, manifest_path: Path,
                 key: str, fingerprint: str) -> None:
    """Stream the records into the cache; signals first, manifest last (only then is it complete)."""
    try:
        signals_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.unlink(missing_ok=True)
        checksums = []
        atomic_write(signals_path, lambda handle: checksums.append(_write_npy(handle, records, n_records)))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _unwritable(signals_path.parent, exc) from exc
        raise
    signals = np.load(signals_path, mmap_mode="r")
    manifest = {"key": key, "records": fingerprint, "shape": list(signals.shape), "dtype": str(signals.dtype),
                "bytes": signals_path.stat().st_size, "crc32": checksums[0], "format": CACHE_FORMAT}
    atomic_write_text(manifest_path, json.dumps(manifest))


def load_signals(data_dir: str | Path, filenames: list[str], sampling_rate: int,
                 cache_dir: str | Path | None = None, use_cache: bool = True,
                 n_jobs: int | None = None, progress: bool = True, reader: RecordReader | None = None) -> np.ndarray:
    """Signals of `filenames`: the cache's read-only memory map when valid, else read with wfdb (through
    `reader`, default PTB-XL's `read_ecg`) straight into the cache (or, with `use_cache=False`, into memory)."""
    data_dir = Path(data_dir)
    reader = reader or RecordReader(None, partial(read_ecg, sampling_rate=sampling_rate))
    if not use_cache:
        return read_signals(data_dir, filenames, sampling_rate, n_jobs, progress, reader.read)
    key = _dataset_key(data_dir, filenames, sampling_rate, reader.kind)
    fingerprint = _records_fingerprint(data_dir, filenames, reader.suffixes)
    signals_path, manifest_path = _cache_paths(Path(cache_dir or default_cache_dir()), key, sampling_rate)
    cached = _read_cache(signals_path, manifest_path, key, fingerprint)
    if cached is not None:
        log.info("signals from cache %s", signals_path)
        return cached
    records = iter_ecgs(data_dir, filenames, sampling_rate, n_jobs, progress, reader.read)
    _write_cache(records, len(filenames), signals_path, manifest_path, key, fingerprint)
    return np.load(signals_path, mmap_mode="r")


# --------------------------------------------------------------------------- entry point

def load_ptbxl(data_dir: str | Path, sampling_rate: int = 100, label_level: str = "subclass",
               train_folds: Iterable[int] = DEFAULT_FOLDS["train"],
               val_folds: Iterable[int] = DEFAULT_FOLDS["val"],
               test_folds: Iterable[int] = DEFAULT_FOLDS["test"],
               cache_dir: str | Path | None = None, use_cache: bool = True,
               n_jobs: int | None = None, progress: bool = True) -> PTBXL:
    """Load PTB-XL (or a synthetic copy in its layout) with labels at `label_level`.

    Records without any label at that level are dropped (their number is in `n_dropped`).
    Signals are cached under `cache_dir` (default `$ECGKERAS_CACHE` or `~/.cache/ecgkeras`) and stay
    there: the dataset holds a read-only memory map of the cache and reads records when indexed.
    """
    if sampling_rate not in FILENAME_COLUMN:
        raise EcgkerasError(f"sampling_rate={sampling_rate!r} is not available: PTB-XL has 100 or 500 Hz")
    if label_level not in LABEL_LEVELS:
        raise EcgkerasError(f"unknown label_level {label_level!r}: use one of {', '.join(LABEL_LEVELS)}")
    split_folds = {"train": tuple(train_folds), "val": tuple(val_folds), "test": tuple(test_folds)}
    used = [fold for folds in split_folds.values() for fold in folds]
    if len(used) != len(set(used)):
        raise EcgkerasError(f"train/val/test folds overlap: {split_folds}; give each fold to one split")

    data_dir = Path(data_dir)
    statements = read_statements(data_dir)
    meta = read_database(data_dir)
    Y, classes = label_matrix(meta["scp_codes"], statements, label_level)
    keep = (Y.sum(axis=1) > 0) & meta["strat_fold"].isin(used).to_numpy()
    n_dropped = int((~keep).sum())
    if n_dropped:
        log.warning("dropped %d of %d records with no %s label or outside the folds",
                    n_dropped, len(meta), label_level)

    filenames = meta[FILENAME_COLUMN[sampling_rate]].tolist()
    signals = load_signals(data_dir, filenames, sampling_rate, cache_dir, use_cache, n_jobs, progress)
    meta = meta[keep]
    return PTBXL(signals=signals, rows=np.flatnonzero(keep), Y=Y[keep], classes=classes,
                 ecg_ids=meta.index.to_numpy(), folds=meta["strat_fold"].to_numpy(), meta=meta,
                 data_dir=data_dir, sampling_rate=sampling_rate, label_level=label_level,
                 split_folds=split_folds, n_dropped=n_dropped)


# --------------------------------------------------------------------------- standardization

@dataclass
class Standardizer:
    """Per-lead mean and standard deviation, fitted on the training part only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: Signals | np.ndarray) -> "Standardizer":
        """Fit on (records, time, leads) signals, reading a few MB of them at a time."""
        total = np.zeros(X.shape[-1])
        squares = np.zeros(X.shape[-1])
        chunk = max(1, (8 << 20) // max(1, X.shape[1] * X.shape[2] * 8))  # records in 8 MB of float64
        for start in range(0, len(X), chunk):  # memory stays flat whatever the dataset's size
            part = np.asarray(X[start:start + chunk], dtype=np.float64).reshape(-1, X.shape[-1])
            total += part.sum(axis=0)
            squares += np.einsum("ij,ij->j", part, part)
        count = X.shape[0] * X.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardized float32 copy of `X` (one batch, or a whole part read into memory)."""
        if X.shape[-1] != self.mean.shape[0]:
            raise EcgkerasError(f"signals have {X.shape[-1]} leads, the standardizer was fitted "
                                f"on {self.mean.shape[0]}")
        return ((np.asarray(X) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, list[float]]) -> "Standardizer":
        return cls(np.asarray(values["mean"], np.float32), np.asarray(values["std"], np.float32))
