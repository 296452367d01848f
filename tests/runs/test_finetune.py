"""ecgkeras.runs.finetune (`ecgkeras finetune`): a run initialised from a trained run, on Challenge-format data."""

from __future__ import annotations

import json

import pytest
from helpers import listing, refused

from ecgkeras.runs import RunConfig, run_experiment
from ecgkeras.study.finetune import finetune
from ecgkeras.study.layout import GRID_FILE


@pytest.mark.slow
def test_a_finetuned_run_records_its_parent_and_starts_from_its_weights(real_run, challenge_subset, tmp_path):
    tuned = finetune(real_run.run_dir, challenge_subset, tmp_path / "finetuned", freeze_epochs=1,
                     parameters={"epochs": 2, "bootstrap_resamples": 0})
    assert tuned.parent["run_dir"] == str(real_run.run_dir.resolve()) and tuned.parent["new_head"]
    assert tuned.parent["freeze_epochs"] == 1 and tuned.config.data_dir == str(challenge_subset)
    assert tuned.classes != real_run.classes and tuned.history["phase"].tolist() == ["frozen", "all layers"]
    assert tuned.standardizer.to_dict() == real_run.standardizer.to_dict()
    scratch = run_experiment(RunConfig.from_parameters(**{**real_run.config.parameters(), "epochs": 1, "bootstrap_resamples": 0,
                                                          "data_dir": str(challenge_subset)}),
                             tmp_path / "scratch", progress=False)
    assert scratch.parent is None and scratch.classes == tuned.classes
    assert tuned.history["loss"].iloc[0] < scratch.history["loss"].iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [(["--freeze-epochs", "1"], "--freeze-epochs 1 must be between 0"),
                                          (["-p", "rnn_units", "4"], "rnn_units cannot change")])
def test_bad_finetune_options_are_refused_before_training(real_run, challenge_subset, tmp_path, capsys, args, needle):
    refused(["finetune", "--run", real_run.run_dir, "--data-dir", challenge_subset, "--out", tmp_path / "new", *args],
            capsys, needle)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["users_folder", "study", "inside_run"])
def test_finetune_out_onto_a_users_folder_a_study_or_into_a_run_is_refused_before_training(
        where, fake_study_copy, tmp_path, capsys):
    study = fake_study_copy  # two fake runs (no training), planned as a study's grid
    (study / GRID_FILE).write_text(json.dumps(["cnn/seed-0", "cnn-lstm/seed-0"]))
    parent = study / "cnn" / "seed-0"
    if where == "users_folder":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        fragment = "holds files that are not a run"
    else:
        out = study if where == "study" else parent / "sub"
        fragment = "study folder" if where == "study" else "inside the run folder"
    before = listing(study), listing(tmp_path)
    refused(["finetune", "--run", parent, "--data-dir", tmp_path, "--out", out, "--epochs", "1"], capsys, fragment)
    assert (listing(study), listing(tmp_path)) == before


def test_evaluate_out_must_be_a_json_file_and_is_checked_before_evaluating(fake_study, tmp_path, capsys):
    refused(["evaluate", "--run", fake_study / "cnn" / "seed-0", "--data-dir", tmp_path, "--out", tmp_path], capsys,
            f"--out {tmp_path}", ".json file")
