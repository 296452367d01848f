"""ecgkeras.tuning.slurm: `tune --executor slurm`, the workers as one job array on a real single-node SLURM
cluster (the `slurm` fixture installs and starts it; never skipped), sharing the journal file."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_MODEL, ecgkeras, finish

from ecgkeras.runs.record import load_run
from ecgkeras.study.layout import SLURM_DIR, SLURM_JOBS_FILE
from ecgkeras.tuning.layout import SUMMARY_FILE, trial_folder, tuning_dir

SETTINGS = [arg for name, value in {**TINY_MODEL, "crop_length": 500, "verbose": 0}.items()
            for arg in ("-p", name, json.dumps(value))]


@pytest.mark.slow
def test_a_job_array_of_workers_spends_every_budget_and_a_rerun_follows_it_instead_of_submitting(
        slurm, synthetic_ptbxl, tmp_path):
    out = tmp_path / "study"
    args = ["tune", "--data-dir", str(synthetic_ptbxl), "--out", str(out), *SETTINGS, "--architectures", "cnn",
            "cnn-gru", "--trials", "1", "--epochs", "1", "--pruner", "none", "--executor", "slurm", "--jobs", "2",
            "--cpus-per-run", "1", "--time", "20"]
    rc, stdout, stderr = finish(ecgkeras(*args, "--no-wait"), timeout=120)
    assert rc == 0 and "(submitted)" in stdout and "rerun this command" in stdout, (stdout, stderr)
    jobs = json.loads((tuning_dir(out) / SLURM_DIR / SLURM_JOBS_FILE).read_text())
    assert len(jobs) == 2

    rc, stdout, stderr = finish(ecgkeras(*args), timeout=600)  # waits for the queued array, submits nothing
    assert rc == 0 and "(submitted earlier)" in stdout, (stdout, stderr)
    assert json.loads((tuning_dir(out) / SLURM_DIR / SLURM_JOBS_FILE).read_text()) == jobs
    summary = json.loads((tuning_dir(out) / SUMMARY_FILE).read_text())
    array = jobs[0].split("_")[0]
    for architecture in ("cnn", "cnn-gru"):
        result = summary["architectures"][architecture]
        assert result["finished"] and result["trials"]["complete"] == 1, summary  # not one trial more
        for number in range(1):
            execution = load_run(trial_folder(out, architecture, number)).execution
            assert execution["executor"] == "slurm" and execution["slurm_job_id"] == array  # by the array's workers
