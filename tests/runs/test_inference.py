"""ecgkeras.runs.inference: `predict` on record files; what it cannot read is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from helpers import CROP, run_cli_one_line, write_ecg_copy

from ecgkeras.cli import main
from ecgkeras.data.ptbxl import LEADS
from ecgkeras.runs import predict_ecg


@pytest.mark.slow
def test_predict_cli_on_a_real_record(real_run, real_ptbxl, capsys):
    record = real_ptbxl / "records100" / "00000" / "00009_lr"
    main(["predict", "--run", str(real_run.run_dir), str(record)])
    out = capsys.readouterr().out
    assert "00009_lr" in out and "probability" in out
    table = predict_ecg(real_run.run_dir, record)
    assert len(table) == 23 and table["probability"].between(0, 1).all()


@pytest.mark.slow
def test_a_record_at_another_rate_with_other_lead_names_predicts_as_the_original(real_run, real_ptbxl, tmp_path,
                                                                                 capsys):
    record = real_ptbxl / "records100" / "00000" / "00009_lr"
    original = predict_ecg(real_run.run_dir, record).set_index("class")["probability"]
    assert predict_ecg(real_run.run_dir, real_ptbxl / "records500" / "00000" / "00009_hr").attrs[
        "conversions"]["resampling"].startswith("500 Hz -> 100 Hz")
    for rate in (250, 360, 1000):
        copy = write_ecg_copy(record, tmp_path, f"copy{rate}", rate, unit="uV" if rate == 360 else "mV")
        table = predict_ecg(real_run.run_dir, copy).set_index("class")
        assert np.abs(table["probability"] - original).max() < 0.02, rate
        assert table.attrs["conversions"]["source_rate"] == rate
    same = write_ecg_copy(record, tmp_path, "renamed")  # 100 Hz, leads renamed and reordered only
    assert np.abs(predict_ecg(real_run.run_dir, same).set_index("class")["probability"] - original).max() < 1e-6
    main(["predict", "--run", str(real_run.run_dir), str(copy)])
    assert "conversions: 1000 Hz -> 100 Hz (scipy.signal.resample_poly, up 1, down 10); leads renamed" in \
        capsys.readouterr().out


def write_record(folder: Path, name: str, n_samples: int, leads=LEADS, fs: int = 100) -> Path:
    signal = np.random.default_rng(0).normal(0, 0.3, (n_samples, len(leads)))
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal,
                fmt=["16"] * len(leads), write_dir=str(folder))
    return folder / name


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_record_shorter_than_the_crop_is_one_line_error(tiny_run, tmp_path, capsys, command):
    record = write_record(tmp_path, "short", CROP - 100)
    code, err = run_cli_one_line([command, "--run", tiny_run.run_dir, record, *(["--out", tmp_path / "x"]
                                                                         if command == "explain" else [])], capsys)
    assert code == 2 and str(record) in err and f"{CROP - 100} samples" in err and f"at least {CROP}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.dat", "short.hea"]


@pytest.mark.slow
@pytest.mark.parametrize("make, needle", [
    (lambda folder: write_record(folder, "eleven", 1000, LEADS[:11]), "lacks lead(s) V6"),
    (lambda folder: (folder / "text.hea").write_text("not a header\n") and folder / "text", "not a readable WFDB header"),
    (lambda folder: (folder / "hidden").mkdir() or folder, "is a folder"),
    (lambda folder: (folder / "nodat.hea").write_text(
        (write_record(folder, "r", 1000).with_suffix(".hea")).read_text().replace("r.dat", "gone.dat"))
     and folder / "nodat", "gone.dat"),
])
def test_a_record_predict_cannot_read_is_one_line_error(tiny_run, tmp_path, capsys, make, needle):
    record = make(tmp_path)
    code, err = run_cli_one_line(["predict", "--run", tiny_run.run_dir, record], capsys)
    assert code == 2 and needle in err
