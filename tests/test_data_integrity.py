"""Nothing lost, nothing silent: the data read is the data checked, one definition of a complete run,
and predict/explain refuse what they cannot do in one line (exit status 2, no traceback)."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgkeras.cli import main
from ecgkeras.data import ptbxl as data
from ecgkeras.data.ptbxl import LEADS, load_ptbxl
from ecgkeras.errors import EcgkerasError
from ecgkeras.quiet import QUIET_ENV
from ecgkeras.runs import MODEL_FILE, PREDICTIONS_FILE, RunConfig, find_runs, is_complete, load_run, run_experiment

TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16],
        "rnn_units": 8, "head_units": 16, "verbose": 0}
CROP = 500  # the tiny run trains on 5 s windows of the 10 s records


@pytest.fixture(autouse=True)
def undo_quiet_setting(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Exit code, standard error (asserted to be one line without a traceback) and standard output."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return exit_info.value.code, err, captured.out


def one_line(excinfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


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


def listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the database CSV

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
    message = one_line(excinfo, str(csv), "truncated", "ecgkeras download")
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
    one_line(excinfo, data.DATABASE_CSV, "ecg_id 3", needle)


def test_a_duplicated_ecg_id_is_refused(real_ptbxl, tmp_path):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    database = pd.read_csv(folder / data.DATABASE_CSV)
    database.loc[4, "ecg_id"] = 2
    database.to_csv(folder / data.DATABASE_CSV, index=False)
    with pytest.raises(EcgkerasError) as excinfo:
        data.read_database(folder)
    one_line(excinfo, data.DATABASE_CSV, "ecg_id 2", "more than once")


@pytest.mark.parametrize("name", [data.DATABASE_CSV, data.STATEMENTS_CSV])
def test_a_csv_that_is_not_text_is_one_line_error(real_ptbxl, tmp_path, name):
    folder = copy_ptbxl(real_ptbxl, tmp_path / "ptbxl")
    (folder / name).write_bytes(bytes(range(256)) * 8)
    with pytest.raises(EcgkerasError) as excinfo:
        load_ptbxl(folder, cache_dir=tmp_path / "cache", progress=False)
    one_line(excinfo, name)


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
    one_line(excinfo, "ecg_id 5", data.DATABASE_CSV, "outside the data folder")
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- the signal cache

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


# --------------------------------------------------------------------------- records given to predict/explain

def write_record(folder: Path, name: str, n_samples: int, leads=LEADS, fs: int = 100) -> Path:
    signal = np.random.default_rng(0).normal(0, 0.3, (n_samples, len(leads)))
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal,
                fmt=["16"] * len(leads), write_dir=str(folder))
    return folder / name


@pytest.mark.parametrize("top", ["0", "-3", "two"])
def test_predict_top_must_be_a_positive_integer(tmp_path, capsys, top):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--run", str(tmp_path), "--top", top, "record"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--top" in err and "positive integer" in err and top in err


def _fake_study(tmp_path: Path) -> Path:
    """A study folder with two run folders (records alone: it is never read as a run)."""
    for run in ("cnn/seed-0", "cnn/seed-1"):
        (tmp_path / "study" / run).mkdir(parents=True)
        (tmp_path / "study" / run / "metrics.json").write_text("{}")
    return tmp_path / "study"


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_study_folder_given_as_run_names_its_run_folders(tmp_path, capsys, command):
    study = _fake_study(tmp_path)
    code, err, _ = run_cli([command, "--run", study, "record"], capsys)
    assert code == 2 and "study folder" in err and str(study / "cnn" / "seed-0") in err and "cnn/seed-1" in err


@pytest.mark.parametrize("role", ["staging", "previous"])
def test_a_staging_folder_given_as_run_names_the_run_folder(tmp_path, capsys, role):
    staging = tmp_path / "cnn" / f".seed-0.{role}"
    staging.mkdir(parents=True)
    code, err, _ = run_cli(["predict", "--run", staging, "record"], capsys)
    assert code == 2 and str(tmp_path / "cnn" / "seed-0") in err and "not a run" in err


# --------------------------------------------------------------------------- with a trained run

@pytest.fixture(scope="module")
def crop_run(synthetic_ptbxl, tmp_path_factory):
    """A complete tiny CNN run trained on crops, in a study folder (study/cnn/seed-0)."""
    config = RunConfig.from_parameters(data_dir=str(synthetic_ptbxl), architecture="cnn", crop_length=CROP, **TINY)
    return run_experiment(config, tmp_path_factory.mktemp("integrity") / "study" / "cnn" / "seed-0", progress=False)


@pytest.fixture
def study_copy(crop_run, tmp_path) -> Path:
    """A copy of the tiny run's study folder, to damage."""
    shutil.copytree(crop_run.run_dir.parents[1], tmp_path / "study")
    return tmp_path / "study"


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
def test_a_damaged_run_is_not_complete_and_aggregate_says_so(study_copy, capsys, name, damage):
    run_dir = study_copy / "cnn" / "seed-0"
    assert is_complete(run_dir)
    damage(run_dir / name)
    before = listing(study_copy)
    assert not is_complete(run_dir)
    with pytest.raises(EcgkerasError) as excinfo:
        load_run(run_dir)
    one_line(excinfo, name)
    with pytest.raises(EcgkerasError) as excinfo:  # not silently left out of a summary
        find_runs(study_copy)
    one_line(excinfo, str(run_dir), "ecgkeras study")
    for command in (["aggregate", study_copy], ["report", study_copy], ["predict", "--run", run_dir, "x"]):
        code, err, _ = run_cli(command, capsys)
        assert code == 2 and name in err, (command, err)
    assert listing(study_copy) == before  # nothing written, nothing removed


@pytest.mark.slow
def test_status_does_not_call_a_truncated_model_complete(study_copy, capsys):
    from ecgkeras.study.notebooks import TRAIN_NOTEBOOK

    run_dir = study_copy / "cnn" / "seed-0"
    (run_dir / f"{TRAIN_NOTEBOOK}.ipynb").write_text("{}")
    main(["status", str(study_copy)])
    assert "complete" in capsys.readouterr().out.splitlines()[0]
    _truncate(run_dir / MODEL_FILE)
    main(["status", str(study_copy)])
    assert "complete" not in capsys.readouterr().out.splitlines()[0]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_record_shorter_than_the_crop_is_one_line_error(crop_run, tmp_path, capsys, command):
    record = write_record(tmp_path, "short", CROP - 100)
    code, err, _ = run_cli([command, "--run", crop_run.run_dir, record, *(["--out", tmp_path / "x"]
                                                                         if command == "explain" else [])], capsys)
    assert code == 2 and str(record) in err and f"{CROP - 100} samples" in err and f"at least {CROP}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.dat", "short.hea"]


@pytest.mark.slow
@pytest.mark.parametrize("make, needle", [
    (lambda folder: write_record(folder, "eleven", 1000, LEADS[:11]), "leads"),
    (lambda folder: write_record(folder, "fast", 1000, fs=500), "500 Hz"),
    (lambda folder: (folder / "text.hea").write_text("not a header\n") and folder / "text", "not a readable WFDB header"),
    (lambda folder: (folder / "hidden").mkdir() or folder, "is a folder"),
    (lambda folder: (folder / "nodat.hea").write_text(
        (write_record(folder, "r", 1000).with_suffix(".hea")).read_text().replace("r.dat", "gone.dat"))
     and folder / "nodat", "gone.dat"),
])
def test_a_record_predict_cannot_read_is_one_line_error(crop_run, tmp_path, capsys, make, needle):
    record = make(tmp_path)
    code, err, _ = run_cli(["predict", "--run", crop_run.run_dir, record], capsys)
    assert code == 2 and needle in err


@pytest.mark.slow
def test_explain_says_which_predicted_classes_it_left_out(crop_run, synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    import ecgkeras.explain as explain
    from ecgkeras.runs import predict_ecg

    def everything_predicted(run_dir, record):
        return predict_ecg(run_dir, record).assign(predicted=True)

    monkeypatch.setattr(explain, "predict_ecg", everything_predicted)
    record = synthetic_ptbxl / "records100" / "00000" / "00001_lr"
    main(["explain", "--run", str(crop_run.run_dir), str(record), "--out", str(tmp_path / "fig"),
          "--method", "gradient_x_input"])
    out = capsys.readouterr().out
    drawn = out.splitlines()[0].split("attribution of ")[1].split(" (")[0].split(", ")
    left = out.splitlines()[1].split("not drawn: ")[1].split(";")[0].split(", ")
    assert len(drawn) == explain.MAX_AUTO_CLASSES and sorted(drawn + left) == sorted(crop_run.classes)
    assert f"--classes {' '.join(left)}" in out
    explanation = explain.explain_ecg(crop_run.run_dir, record, method="gradient_x_input")
    fig = explain.plot_explanation(explanation)
    assert "not drawn: " + ", ".join(left) in fig._suptitle.get_text()


@pytest.mark.slow
def test_explain_refuses_more_classes_than_one_figure_draws(crop_run, synthetic_ptbxl, tmp_path, capsys):
    record = synthetic_ptbxl / "records100" / "00000" / "00001_lr"
    code, err, _ = run_cli(["explain", "--run", crop_run.run_dir, record, "--out", tmp_path / "fig",
                            "--classes", *crop_run.classes[:13]], capsys)
    assert code == 2 and "13 classes" in err and "at most" in err
    assert list(tmp_path.iterdir()) == []
