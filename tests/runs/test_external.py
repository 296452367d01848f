"""ecgkeras.runs.external (`ecgkeras evaluate`): a run scored on a Challenge-format copy of its own test fold
reproduces its test-fold predictions and per-class results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import refused, run_main

from ecgkeras.evaluation import all_metrics, per_class_table
from ecgkeras.runs.external import evaluate_external, per_class_frame


@pytest.mark.slow
def test_external_validation_on_a_copy_of_the_test_fold_reproduces_it(real_run, challenge_test_fold,
                                                                      tmp_path, capsys):
    evaluation = evaluate_external(real_run.run_dir, challenge_test_fold, progress=False)
    predictions = real_run.predictions
    row_of = {f"E{int(ecg_id):05d}": k for k, ecg_id in enumerate(predictions["test_ecg_ids"])}
    rows = [row_of[ecg_id] for ecg_id in evaluation["predictions"]["ecg_ids"]]
    columns = [real_run.classes.index(name) for name in evaluation["classes"]]
    stored = predictions["test_prob"][np.ix_(rows, columns)]
    np.testing.assert_allclose(evaluation["predictions"]["prob"], stored, atol=1e-5)  # the same input, the same model
    y_true = np.asarray(evaluation["predictions"]["true"])
    tuned = real_run.thresholds("tuned")[columns]
    expected = all_metrics(y_true, stored, tuned)
    for name in ("macro_auroc", "macro_auprc", "micro_f1", "hamming_loss"):
        assert evaluation["metrics"]["tuned"][name] == pytest.approx(expected[name], abs=1e-4), name
    # classes all of whose PTB-XL statements have a SNOMED-CT code: their labels round-trip through #Dx
    whole = [name for name in evaluation["classes"] if (y_true[:, evaluation["classes"].index(name)]
                                                        == predictions["test_true"][rows, real_run.classes.index(name)]).all()]
    assert {"CLBBB", "CRBBB", "LVH", "_AVB"} <= set(whole)
    table = per_class_frame(evaluation, "tuned")
    expected_table = per_class_table(y_true, stored, tuned, evaluation["classes"])
    np.testing.assert_allclose(table[["support", "f1", "threshold"]], expected_table[["support", "f1", "threshold"]],
                               atol=1e-6)
    assert evaluation["thresholds"] == "tuned on the run's own validation fold"
    assert set(evaluation["metrics"]["tuned"]["ci95"]) >= {"macro_auprc", "micro_f1"}

    out = tmp_path / "external.json"
    code, stdout, _ = run_main(["evaluate", "--run", real_run.run_dir, "--data-dir", challenge_test_fold,
                                "--out", out], capsys)
    assert code == 0 and "shared classes" in stdout and "macro_auprc" in stdout and "leads matched by name" in stdout
    assert json.loads(out.read_text())["n_records"] == evaluation["n_records"]


@pytest.mark.slow
def test_a_dataset_without_labels_is_refused_before_scoring(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    refused(["evaluate", "--run", tiny_run.run_dir, "--data-dir", tmp_path / "empty"], capsys, "empty")
