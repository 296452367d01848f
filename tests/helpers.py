"""What several test files share: the tiny-model settings, fake run folders and small CLI helpers."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from ecgkeras.cli import main
from ecgkeras.files import FOLDER_MARKER
from ecgkeras.models import ARCHITECTURES
from ecgkeras.runs import RECORD_FORMAT, RunConfig

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- tiny settings

# Two conv blocks pooling by 4 give the recurrent layers as many steps as the default four pooling by 2, with
# half the layers to trace: a tiny CNN run costs 3.1 s of CPU instead of 4.6 s, a CNN-GRU 5.2 s instead of 5.7 s
TINY_MODEL = {"filters": [8, 16], "kernel_sizes": [7, 5], "pool_size": 4, "rnn_units": 8, "head_units": 16}
SMALL_MODEL = {"filters": [16, 16, 32, 32], "rnn_units": 16, "head_units": 32}  # for runs that must learn
TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, **TINY_MODEL}  # a study's -p settings
TINY_RUN = {**TINY, "verbose": 0}  # the same for run_experiment, without Keras' progress lines
CROP = 500  # the shared tiny run trains on 5 s windows of the 10 s records
STRIDE = 300  # and is evaluated on windows 0, 300 and 500 (the last one moved to end with the record)


def tiny_args(**changes) -> list[str]:
    """`-p NAME VALUE` for the TINY settings, with `changes`."""
    return [arg for name, value in {**TINY, **changes}.items() for arg in ("-p", name, json.dumps(value))]


TINY_ARGS = tiny_args()

# --------------------------------------------------------------------------- fixtures built once


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(folder)` once per test session; pytest-xdist workers share one result (the first to ask
    builds it under a file lock in the workers' common temporary folder, the others wait and reuse it)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = root / f"{name}.pickle"
        if not result.is_file():
            shutil.rmtree(root / name, ignore_errors=True)  # what a failed attempt left
            (root / name).mkdir()
            result.write_bytes(pickle.dumps(build(root / name)))
        return pickle.loads(result.read_bytes())


# --------------------------------------------------------------------------- assertions and the CLI


def one_line_error(excinfo, *needles: str) -> str:
    """The exception's message is one line holding every needle."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def run_cli(args, capsys) -> tuple[int, str]:
    """`ecgkeras ARGS` in-process, expected to exit: its exit code and standard error (stripped)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    return exit_info.value.code, capsys.readouterr().err.strip()


def run_cli_one_line(args, capsys) -> tuple[int, str]:
    """`run_cli`, asserting that standard error is one line without a traceback."""
    code, err = run_cli(args, capsys)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return code, err


def run_main(args, capsys) -> tuple[int, str, str]:
    """Run `ecgkeras ARGS` in-process: exit code, stdout, stderr (code 0 when it returns)."""
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(args, capsys, *fragments: str) -> str:
    """`ecgkeras ARGS` exits 2 with one `ecgkeras: error:` line (the last) holding every fragment."""
    code, _, err = run_main(args, capsys)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()  # before the error: the data's warnings and the cache's progress bar
    assert lines[-1].startswith("ecgkeras: error:") and sum("error" in line for line in lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# --------------------------------------------------------------------------- the command in a child process


def interruptible() -> None:
    """preexec_fn: Ctrl-C as in a terminal. pytest-xdist workers ignore SIGINT, and a child would inherit
    that (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ecgkeras(*args: str, **kwargs) -> subprocess.Popen:
    """Start the `ecgkeras` command line in a child process (this checkout's code), interruptible by SIGINT."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ecgkeras.cli", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible, **kwargs)


def study_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["study", "--data-dir", str(data), "--out", str(out), *TINY_ARGS, *extra]


def finish(process: subprocess.Popen, timeout: float = 400) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def completed_count(stdout: str) -> int:
    return int(re.search(r"(\d+) run\(s\) completed", stdout).group(1))


def fake_gpus(folder: Path, count: int) -> str:
    """A PATH whose `nvidia-smi -L` lists `count` GPUs: device pinning tested on a machine without any."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: Fake GPU (UUID: GPU-{i})'\n" for i in range(count)))
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def mark(folder: Path, kind: str) -> Path:
    """A folder as ecgkeras leaves it: some files and its marker."""
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("old\n")
    (folder / FOLDER_MARKER).write_text(json.dumps({"kind": kind, "entries": ["index.html"]}))
    return folder


def peak_numpy_bytes(function) -> int:
    """Peak bytes NumPy (and Python) allocated while `function` ran, in any thread."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- fake run folders (no training)

CLASSES = ["NORM", "AMI", "IMI", "LVH"]
N_TEST = 150
SEEDS = (0, 1)
ARCHS = ("cnn", "cnn-lstm", "cnn-bilstm")  # registry order
DISPLAY = ["CNN", "CNN-LSTM", "CNN-BiLSTM"]
# Known test-fold values (tuned policy) per architecture, seeds 0 and 1. Lowest Hamming loss:
# CNN-LSTM; highest macro-AUPRC: CNN-BiLSTM (different rows on purpose).
AUPRC = {"cnn": (0.40, 0.44), "cnn-lstm": (0.46, 0.47), "cnn-bilstm": (0.50, 0.56)}
HAMMING = {"cnn": (0.050, 0.054), "cnn-lstm": (0.031, 0.033), "cnn-bilstm": (0.040, 0.036)}
PARAMETERS = {"cnn": 100_000, "cnn-lstm": 150_000, "cnn-bilstm": 200_000}
# Signal share of the fake probabilities: CNN-LSTM predicts exactly like CNN (a self-comparison),
# CNN-BiLSTM nearly perfectly.
SIGNAL = {"cnn": 0.2, "cnn-lstm": 0.2, "cnn-bilstm": 0.85}

RNG = np.random.default_rng(3)
Y_TEST = (RNG.random((N_TEST, len(CLASSES))) < 0.3).astype(np.uint8)
NOISE = RNG.random((N_TEST, len(CLASSES)))
ECG_IDS = np.arange(1000, 1000 + N_TEST)


def recall_of(arch: str, seed: int) -> list[float]:
    return [round(0.1 * (k + 1) + 0.05 * ARCHS.index(arch) + 0.02 * seed, 6) for k in range(len(CLASSES))]


def known_metrics(arch: str, seed: int, policy: str) -> dict:
    auprc, hamming = AUPRC[arch][seed], HAMMING[arch][seed] + (0.01 if policy == "fixed" else 0)
    return _metrics_of(auprc, hamming)


def _metrics_of(auprc: float, hamming: float) -> dict:
    return {"hamming_loss": hamming, "macro_auprc": auprc, "micro_f1": auprc + 0.2, "subset_accuracy": auprc + 0.1,
            "macro_auroc": 0.8 + auprc / 10, "macro_f1": auprc - 0.05, "micro_auprc": auprc,
            "n_classes_scored": len(CLASSES), "ci95": {}}
def write_run(run_dir, arch, seed, data_dir, ecg_ids=ECG_IDS, synthetic=False, prob=None, n_parameters=None,
              seconds_per_epoch=None, parameters=None):
    """A complete run folder in the record format of `run_experiment`, with known values (for an architecture
    outside ARCHS, or with `prob` given: those probabilities and placeholder metrics)."""
    run_dir.mkdir(parents=True)
    config = RunConfig.from_parameters(data_dir=str(data_dir), architecture=arch, seed=seed, bootstrap_resamples=0,
                                       **(parameters or {}))
    known = prob is None and arch in ARCHS and seed in SEEDS
    prob = SIGNAL[arch] * Y_TEST + (1 - SIGNAL[arch]) * NOISE if prob is None else prob
    support = Y_TEST.sum(axis=0)
    per_class = [{"class": name, "support": int(support[k]), "precision": 0.5,
                  "recall": recall_of(arch, seed)[k] if known else 0.5,
                  "f1": 0.5, "auprc": 0.5, "auroc": 0.7, "threshold": 0.5} for k, name in enumerate(CLASSES)]
    record = {
        "format": RECORD_FORMAT, "status": "complete", "config": config.to_dict(), "versions": {},
        "architecture": {"name": arch, "display_name": ARCHITECTURES[arch].display_name},
        "classes": CLASSES,
        "data": {"n_train": 800, "n_val": 100, "n_test": N_TEST, "n_dropped": 0, "input_shape": [1000, 12],
                 "split_folds": {"train": list(range(1, 9)), "val": [9], "test": [10]},
                 "provenance": {"synthetic": synthetic, "data_dir": str(data_dir), "database_sha256": "0" * 64}},
        "standardizer": {"mean": [0.0] * 12, "std": [1.0] * 12},
        "n_parameters": PARAMETERS[arch] if n_parameters is None else n_parameters,
        "timings": {"epochs_run": 2, "best_epoch": 2, "seconds_per_epoch": (
            10.0 * (ARCHS.index(arch) + 1) + seed if seconds_per_epoch is None else seconds_per_epoch),
                    "first_epoch_seconds": 20.0, "training_seconds": 40.0, "inference_ms_per_ecg": 1.5},
        "thresholds": {"fixed": [0.5] * len(CLASSES), "tuned": [0.5] * len(CLASSES)},
        "metrics": {split: {policy: known_metrics(arch, seed, policy) if known else _metrics_of(0.5, 0.05)
                            for policy in ("fixed", "tuned")} for split in ("val", "test")},
        "per_class": {split: {policy: per_class for policy in ("fixed", "tuned")} for split in ("val", "test")},
    }
    np.savez_compressed(run_dir / "predictions.npz", classes=np.asarray(CLASSES), val_ecg_ids=ecg_ids,
                        val_true=Y_TEST, val_prob=prob, test_ecg_ids=ecg_ids, test_true=Y_TEST, test_prob=prob)
    (run_dir / "history.csv").write_text("epoch,auprc,loss,val_auprc,val_loss\n0,0.30,0.60,0.35,0.55\n"
                                         "1,0.40,0.50,0.38,0.52\n")
    with zipfile.ZipFile(run_dir / "model.keras", "w") as model:  # whole, with Keras' entries; never loaded
        for name in ("metadata.json", "config.json", "model.weights.h5"):
            model.writestr(name, "{}")
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))


# --------------------------------------------------------------------------- ECGs in other forms (Challenge format)

CHALLENGE_LEADS = ["V1", "V2", "V3", "V4", "V5", "V6", "i", "ii", "iii", "aVR", "aVL", "aVF"]  # renamed, reordered


def write_ecg_copy(source: Path, out_dir: Path, name: str, rate: float | None = None, leads=CHALLENGE_LEADS,
                   unit: str = "mV", mat: bool = True, comments: list[str] | None = None) -> Path:
    """A copy of the WFDB record `source` as `out_dir/name`: resampled to `rate` (scipy's resample_poly),
    its leads renamed and reordered as `leads` (names as in PTB-XL's order, e.g. 'i' for I), samples in
    `unit` (mV, uV, or any other text written as is), signal in a Challenge `.mat` (MATLAB v4 `val`,
    header "16+24") or a `.dat`, with header `comments` (#Age, #Sex, #Dx ...). Returns the record path."""
    import wfdb
    from scipy.io import savemat
    from scipy.signal import resample_poly

    from ecgkeras.data.ptbxl import LEADS
    from ecgkeras.data.records import canonical_lead, resampling_factors

    record = wfdb.rdrecord(str(source))
    signal, fs = record.p_signal, record.fs
    if rate is not None and rate != fs:
        signal, fs = resample_poly(signal, *resampling_factors(fs, rate), axis=0), rate
    order = [LEADS.index(canonical_lead(lead) or lead) for lead in leads]
    scale = 1000.0 if unit == "uV" else 1.0
    gain = 1000.0 / scale  # 1 uV steps whatever the unit
    digital = np.round(signal[:, order] * scale * gain).astype(np.int16)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = {"record_name": name, "n_sig": len(order), "fs": fs, "sig_len": len(digital),
              "fmt": ["16"] * len(order), "adc_gain": [gain] * len(order), "baseline": [0] * len(order),
              "units": [unit] * len(order), "sig_name": list(leads), "comments": comments or []}
    if mat:
        savemat(out_dir / f"{name}.mat", {"val": digital.T}, format="4")
        wfdb.Record(**header, file_name=[f"{name}.mat"] * len(order), byte_offset=[24] * len(order),
                    adc_res=[16] * len(order), adc_zero=[0] * len(order), init_value=digital[0].tolist(),
                    checksum=[int(value) for value in (digital.astype(np.int64).sum(axis=0) & 0xFFFF)],
                    block_size=[0] * len(order)).wrheader(write_dir=str(out_dir))
    else:
        wfdb.wrsamp(name, fs=fs, units=header["units"], sig_name=header["sig_name"], d_signal=digital,
                    fmt=header["fmt"], adc_gain=header["adc_gain"], baseline=header["baseline"],
                    comments=header["comments"], write_dir=str(out_dir))
    return out_dir / name


def write_challenge_copy(ptbxl: Path, out_dir: Path, ecg_ids=None, rates=(None,), mat: bool = True,
                         folds: bool = False) -> Path:
    """PTB-XL records (all, or `ecg_ids`) in the Challenge format under `out_dir`: named by ecg_id (E00009),
    leads renamed and reordered, resampled to `rates` in turn (None: as they are), `#Dx` from their SCP
    codes through the inverse of `DX_TO_PTBXL` (plus 426783006, sinus rhythm, for PTB-XL's SR), `#Age`,
    `#Sex`, `#Patient`, and with `folds` PTB-XL's strat_fold as `#Fold`."""
    from ecgkeras.data.challenge import DX_TO_PTBXL
    from ecgkeras.data.ptbxl import read_database

    snomed = {}
    for code, mapped in DX_TO_PTBXL.items():
        snomed.setdefault(mapped.statement, code)
    meta = read_database(ptbxl)
    for k, (ecg_id, row) in enumerate(meta.loc[list(ecg_ids) if ecg_ids is not None else meta.index].iterrows()):
        codes = [snomed[code] for code in row["scp_codes"] if code in snomed] + (["426783006"] if "SR" in row["scp_codes"] else [])
        comments = [f"Age: {row['age']:g}", f"Sex: {'Male' if row['sex'] == 0 else 'Female'}",
                    f"Dx: {','.join(codes) or '426783006'}", f"Patient: {row['patient_id']:g}", "Rx: Unknown"]
        comments += [f"Fold: {row['strat_fold']}"] if folds else []
        write_ecg_copy(ptbxl / row["filename_lr"], out_dir, f"E{ecg_id:05d}", rates[k % len(rates)], mat=mat,
                       comments=comments)
    return out_dir
