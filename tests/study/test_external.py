"""ecgkeras.study.external: `study --external` validates every run on another dataset, once, and the summary
shows the external results beside the test fold's."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import TINY, TINY_ARGS, refused

from ecgkeras.report.aggregate import run_study
from ecgkeras.report.summary import write_summary
from ecgkeras.runs import load_run


def test_an_external_folder_that_is_no_dataset_is_refused_before_anything_is_written(synthetic_ptbxl, tmp_path,
                                                                                     capsys):
    (tmp_path / "notes").mkdir()
    out = tmp_path / "study"
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", *TINY_ARGS,
             "--external", tmp_path / "notes"], capsys, f"--external {tmp_path / 'notes'}", "Challenge-format")
    assert not out.exists()


@pytest.mark.slow
def test_every_run_is_validated_once_and_the_summary_sets_it_beside_the_test_fold(tiny_study_copy, synthetic_ptbxl,
                                                                                 challenge_subset):
    out = tiny_study_copy
    run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY, aggregate=False,
              external=[challenge_subset])
    evaluations = {run: load_run(out / run / "seed-0").external_evaluations() for run in ("cnn", "cnn-gru")}
    assert all(list(found) == [challenge_subset.name] for found in evaluations.values()), evaluations
    written = (out / "cnn" / "seed-0" / "external" / f"{challenge_subset.name}.json").stat().st_mtime_ns
    run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY, aggregate=False,
              external=[challenge_subset])  # a rerun keeps the evaluations on disk
    assert (out / "cnn" / "seed-0" / "external" / f"{challenge_subset.name}.json").stat().st_mtime_ns == written

    summary = write_summary(out, bootstrap_resamples=10)
    table = pd.read_csv(summary / "external.csv")
    assert list(table["architecture"]) == ["cnn", "cnn-gru"] and set(table["dataset"]) == {challenge_subset.name}
    assert {"macro_auroc test fold", "macro_auroc external"} <= set(table.columns)
    assert (table["shared classes"] > 0).all() and (table["seeds"] == 1).all()
    assert "external" in (summary / "README.md").read_text()
