"""The `ecgkeras` command: listings, dataset commands and one-line errors with exit status 2."""

import pytest

from ecgkeras.cli import main
from ecgkeras.models import ARCHITECTURES


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err.strip()


def test_architectures_lists_every_registered_name_with_parameters(capsys):
    main(["architectures"])
    out = capsys.readouterr().out
    for name, arch in ARCHITECTURES.items():
        assert name in out and arch.display_name in out
    assert "235,799" in out  # CNN-BiLSTM at 100 Hz, 23 classes


def test_synth_writes_a_dataset_and_prints_its_summary(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path / "synth"), "--records", "40", "--seed", "3"])
    out = capsys.readouterr().out
    assert "23 classes" in out and (tmp_path / "synth" / "ptbxl_database.csv").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["synth", "--out", "{tmp}/s", "--records", "5"], "n_records"),
    (["study", "--data-dir", "{tmp}/missing", "--out", "{tmp}/study"], "PTB-XL folder not found"),
    (["study", "--out", "{tmp}/study"], "--data-dir"),
    (["aggregate", "{tmp}"], "no complete run"),
    (["download", "--dest", "{tmp}/d", "--url", "http://127.0.0.1:9/ptbxl.zip"], "127.0.0.1:9"),
])
def test_bad_input_is_a_one_line_error_with_exit_status_2(args, fragment, tmp_path, capsys):
    code, err = run_cli([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    assert err.startswith("ecgkeras: error:") and fragment in err and "\n" not in err
