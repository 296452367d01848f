"""ecgkeras.runs.record: one definition of a complete run; damaged or misplaced run folders are
one-line errors, never silently left out."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import listing, one_line_error, run_cli, run_cli_one_line

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.runs import MODEL_FILE, PREDICTIONS_FILE, RECORD_FILE, find_runs, is_complete, load_run, predict_ecg


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _flip_a_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:  # inside the first stored member's data: only its CRC can tell
        info = archive.infolist()[-1]
    middle = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    content[middle] ^= 0xFF
    path.write_bytes(bytes(content))


def _drop_an_array(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "test_prob"}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


DAMAGES = [(MODEL_FILE, _truncate), (MODEL_FILE, _flip_a_byte), (MODEL_FILE, _zero_bytes),
           (PREDICTIONS_FILE, _delete), (PREDICTIONS_FILE, _zero_bytes), (PREDICTIONS_FILE, _truncate),
           (PREDICTIONS_FILE, _drop_an_array)]


@pytest.mark.slow
@pytest.mark.parametrize("name, damage", DAMAGES, ids=[f"{n}-{d.__name__[1:]}" for n, d in DAMAGES])
def test_a_damaged_run_is_not_complete_and_aggregate_says_so(tiny_run_copy, capsys, name, damage):
    run_dir = tiny_run_copy / "cnn" / "seed-0"
    assert is_complete(run_dir)
    damage(run_dir / name)
    before = listing(tiny_run_copy)
    assert not is_complete(run_dir)
    with pytest.raises(EcgkerasError) as excinfo:
        load_run(run_dir)
    one_line_error(excinfo, name)
    with pytest.raises(EcgkerasError) as excinfo:  # not silently left out of a summary
        find_runs(tiny_run_copy)
    one_line_error(excinfo, str(run_dir), "ecgkeras study")
    for command in (["aggregate", tiny_run_copy], ["report", tiny_run_copy], ["predict", "--run", run_dir, "x"]):
        code, err = run_cli_one_line(command, capsys)
        assert code == 2 and name in err, (command, err)
    assert listing(tiny_run_copy) == before  # nothing written, nothing removed


def _fake_study(tmp_path: Path) -> Path:
    """A study folder with two run folders (records alone: it is never read as a run)."""
    for run in ("cnn/seed-0", "cnn/seed-1"):
        (tmp_path / "study" / run).mkdir(parents=True)
        (tmp_path / "study" / run / "metrics.json").write_text("{}")
    return tmp_path / "study"


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_study_folder_given_as_run_names_its_run_folders(tmp_path, capsys, command):
    study = _fake_study(tmp_path)
    code, err = run_cli_one_line([command, "--run", study, "record"], capsys)
    assert code == 2 and "study folder" in err and str(study / "cnn" / "seed-0") in err and "cnn/seed-1" in err


@pytest.mark.parametrize("role", ["staging", "previous"])
def test_a_staging_folder_given_as_run_names_the_run_folder(tmp_path, capsys, role):
    staging = tmp_path / "cnn" / f".seed-0.{role}"
    staging.mkdir(parents=True)
    code, err = run_cli_one_line(["predict", "--run", staging, "record"], capsys)
    assert code == 2 and str(tmp_path / "cnn" / "seed-0") in err and "not a run" in err


@pytest.mark.slow
def test_malformed_run_files_give_one_line_errors(tiny_run, tmp_path, capsys):
    for content, message in (("{}", "not a complete run record"), ("", "not valid JSON"),
                             ('{"config": 1}', "not a complete run record")):
        broken = tmp_path / f"broken-{len(content)}"
        shutil.copytree(tiny_run.run_dir, broken)
        (broken / RECORD_FILE).write_text(content)
        with pytest.raises(EcgkerasError, match=message):
            load_run(broken)
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_run.run_dir, truncated)
    model = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(model[: len(model) // 2])
    record = tiny_run.config.data_dir + "/records100/00000/00001_lr"
    code, err = run_cli(["predict", "--run", truncated, record], capsys)
    assert code == 2 and "model.keras" in err and "damaged" in err and "\n" not in err
    with pytest.raises(EcgkerasError, match="damaged"):
        predict_ecg(truncated, record)


def test_incomplete_run_folder_is_refused(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "history.csv").write_text("epoch,loss\n1,0.5\n")
    assert not is_complete(broken)
    with pytest.raises(EcgkerasError, match="incomplete"):
        load_run(broken)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--run", str(broken), "x"])
    assert exit_info.value.code == 2
    assert find_runs(tmp_path) == []
