"""The search space: declared beside the schema, listed by `ecgkeras parameters`, and a --space file
checked (one-line errors) before `tune` writes anything."""

from __future__ import annotations

import json

import pytest

from ecgkeras.errors import EcgkerasError
from ecgkeras.tuning.space import architecture_space, default_space, load_space
from helpers import refused, run_main


def test_parameters_lists_the_tunable_ones(capsys):
    code, out, _ = run_main(["parameters"], capsys)
    assert code == 0
    tunable = [line.split()[0] for line in out.splitlines() if "[tunable:" in line and line.startswith("  ")]
    assert tunable == list(default_space())
    assert "learning_rate" in tunable and "epochs" not in tunable
    assert "log-uniform" in next(line for line in out.splitlines() if line.split()[:1] == ["learning_rate"])


def test_a_space_file_narrows_widens_and_removes(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": {"low": 1e-5, "high": 0.1, "log": True},
                                "batch_size": {"choices": [8, 8, 32]}, "loss": None}))
    space = load_space(path)
    assert (space["learning_rate"].low, space["learning_rate"].high, space["learning_rate"].log) == (1e-5, 0.1, True)
    assert space["batch_size"].choices == (8, 32)
    assert "loss" not in space


def test_the_cnn_searches_no_recurrent_parameter_and_fixed_ones_leave_the_space():
    space = architecture_space(default_space(), "cnn", {"learning_rate": 0.01})
    assert "rnn_units" not in space and "learning_rate" not in space and "dropout" in space
    assert "rnn_units" in architecture_space(default_space(), "cnn-gru", {})


@pytest.mark.parametrize("content, fragments", [
    ("{not json", ("is not valid JSON",)),
    ('["learning_rate"]', ("expected a mapping",)),
    ('{"learnig_rate": {"low": 0.1, "high": 0.2}}', ("unknown parameter 'learnig_rate'", "tunable ones are")),
    ('{"epochs": {"low": 1, "high": 5}}', ("epochs is not tunable", "-p epochs")),
    ('{"dropout": {"low": 0.1, "high": 1.5}}', ("dropout high 1.5", "must be")),
    ('{"dropout": {"low": 0.4, "high": 0.1}}', ("must be below high",)),
    ('{"batch_size": {"choices": []}}', ("non-empty list",)),
    ('{"batch_size": {"low": 8.5, "high": 64}}', ("expected an integer",)),
    ('{"loss": {"choices": ["mse"]}}', ("loss choice 'mse'", "one of")),
    ('{"loss": {"low": 1, "high": 2}}', ("text parameter",)),
    ('{"dropout": {"low": 0, "high": 0.5, "log": true}}', ("log scale needs low > 0",)),
    ('{"dropout": {"min": 0, "max": 0.5}}', ("give {",)),
])
def test_a_bad_space_file_is_refused_before_anything_is_written(tmp_path, capsys, content, fragments):
    space = tmp_path / "space.json"
    space.write_text(content)
    out = tmp_path / "study"
    refused(["tune", "--data-dir", tmp_path / "no-data", "--out", out, "--architectures", "cnn", "--trials", "2",
             "--space", space], capsys, f"--space {space}", *fragments)
    assert not out.exists()


def test_a_yaml_space_file(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "space.yaml"
    path.write_text("rnn_units:\n  choices: [16, 32]\n")
    assert load_space(path)["rnn_units"].choices == (16, 32)
    path.write_text("rnn_units: [unclosed\n")
    with pytest.raises(EcgkerasError, match="not valid YAML"):
        load_space(path)


@pytest.mark.parametrize("extra, fragments", [
    (["--trials", "0"], ("--trials 0",)),
    (["--trials", "2", "--pruner", "sometimes"], ("--pruner sometimes", "median, hyperband, none")),
    (["--trials", "2", "-p", "seed", "3"], ("set by tune itself",)),
    (["--trials", "2", "--storage", "nosuchdb://somewhere"], ("--storage nosuchdb://somewhere", "cannot open")),
])
def test_bad_tune_options_are_refused_before_anything_is_written(tmp_path, capsys, extra, fragments):
    out = tmp_path / "study"
    refused(["tune", "--data-dir", tmp_path / "no-data", "--out", out, "--architectures", "cnn", *extra], capsys,
            *fragments)
    assert not out.exists()
