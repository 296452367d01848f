"""ecgkeras.study.slurm: `--executor slurm` on a real single-node SLURM cluster (slurmctld, slurmd, munge on 127.0.0.1).

Not skipped when SLURM is missing: the fixture installs it (as root, from Debian) and fails
loudly if the cluster cannot start, so CI always runs these tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import completed_count, ecgkeras, finish, refused, run_main, study_args

from ecgkeras.runs import is_complete, load_run
from ecgkeras.study.layout import GRID_FILE, SLURM_DIR, SLURM_JOBS_FILE, grid


@pytest.mark.slow
def test_a_grid_submitted_without_waiting_is_followed_by_status_and_aggregated_by_rerunning(
        slurm, synthetic_ptbxl, tmp_path, capsys):
    out = tmp_path / "study"
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "cnn-gru", "--seeds", "0",
                      "--executor", "slurm", "--jobs", "2", "--cpus-per-run", "1", "--time", "20")
    rc, stdout, stderr = finish(ecgkeras(*args, "--no-wait"), timeout=120)
    assert rc == 0 and "2 submitted" in stdout and "ecgkeras status" in stdout, (stdout, stderr)
    jobs = json.loads((out / SLURM_DIR / SLURM_JOBS_FILE).read_text())
    assert sorted(jobs) == ["cnn-gru/seed-0", "cnn/seed-0"]

    rc, stdout, _ = run_main(["status", out], capsys)
    states = {line.split()[0]: line.split()[1] for line in stdout.splitlines()[:-1]}
    assert rc == 0 and set(states) == set(jobs)
    assert set(states.values()) <= {"queued", "running", "complete"}, stdout

    # the same command again waits for the queued array (submitting nothing twice), then aggregates
    rc, stdout, stderr = finish(ecgkeras(*args), timeout=600)
    assert rc == 0, (stdout, stderr)
    assert json.loads((out / SLURM_DIR / SLURM_JOBS_FILE).read_text()) == jobs
    assert completed_count(stdout) + int(stdout.split("completed, ")[1].split()[0]) == 2, stdout
    for run_dir in grid(out, ["cnn", "cnn-gru"], [0]):
        execution = load_run(run_dir).execution
        assert execution["executor"] == "slurm"
        assert jobs[run_dir.relative_to(out).as_posix()]["job_id"] == \
            f"{execution['slurm_job_id']}_{execution['slurm_array_task_id']}"
    assert "CNN-GRU" in (out / "summary" / "results_tuned.md").read_text()
    rc, stdout, _ = run_main(["status", out], capsys)
    assert rc == 0 and stdout.splitlines()[-1] == "2 complete"


@pytest.mark.slow
def test_a_failing_notebook_is_reported_with_its_log_and_not_retried(slurm, synthetic_ptbxl, tmp_path, capsys):
    out = tmp_path / "study"
    # a file where the run's staging folder goes makes its notebook fail inside the job, after planning
    (out / "cnn").mkdir(parents=True)
    (out / "cnn" / ".seed-0.staging").write_text("in the way")
    args = study_args(synthetic_ptbxl, out, "--architectures", "cnn", "--executor", "slurm", "--cpus-per-run", "1",
                      "--retries", "3")
    rc, stdout, _ = finish(ecgkeras(*args), timeout=600)
    assert rc == 1 and "FAILED" in stdout and "02_train_architecture.ipynb" in stdout
    run_dir = out / "cnn" / "seed-0"
    assert not is_complete(run_dir)
    log = json.loads((out / SLURM_DIR / SLURM_JOBS_FILE).read_text())["cnn/seed-0"]["log"]
    assert "cannot write the run folder" in open(log).read()
    rc, stdout, _ = run_main(["status", out], capsys)
    assert "cnn/seed-0" in stdout and "failed" in stdout and log in stdout


def test_slurm_without_sbatch_is_refused_before_anything_is_written(synthetic_ptbxl, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # in a child: importing submitit here
    out = tmp_path / "study"                                       # upsets pytest's capture
    rc, _, err = finish(ecgkeras("study", "--data-dir", str(synthetic_ptbxl), "--out", str(out),
                                 "--architectures", "cnn", "--executor", "slurm"), timeout=120)
    assert rc == 2 and err.strip().splitlines()[-1].startswith("ecgkeras: error: --executor slurm")
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("content", ["garbage", '{"cnn/seed-0": 3}', '{"cnn/seed-0": {"job_id": 1}}', "[]"])
def test_a_damaged_slurm_jobs_file_is_a_one_line_error(content, tmp_path, capsys):
    study = tmp_path / "study"
    (study / SLURM_DIR).mkdir(parents=True)
    (study / GRID_FILE).write_text('["cnn/seed-0"]')
    (study / SLURM_DIR / SLURM_JOBS_FILE).write_text(content)
    refused(["status", study], capsys, str(study / SLURM_DIR / SLURM_JOBS_FILE), "delete it")
