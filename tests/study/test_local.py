"""ecgkeras.study.local: runs executed on this machine, each concurrent run on its own GPU slot; a failed run
stops no other, a failed rerun keeps the earlier notebook (Ctrl-C stopping the kernels: test_runner)."""

from __future__ import annotations

import pytest
from helpers import TINY, fake_gpus, run_main

from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import RunConfig, load_run
from ecgkeras.study.layout import GRID_FILE
from ecgkeras.study.local import execute_run
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK, to_ipynb
from ecgkeras.study.runner import Execution


@pytest.mark.slow
def test_concurrent_runs_get_their_own_gpu_slot_and_a_failed_run_stops_no_other(synthetic_ptbxl, tmp_path, monkeypatch):
    # Two fake GPUs, one run each at a time. A file where seed 0's staging folder goes makes its notebook fail
    # inside the kernel, after planning, while seed 1 trains: seed 2 then takes the slot seed 0 gave back.
    monkeypatch.setenv("PATH", fake_gpus(tmp_path / "bin", 2))
    (tmp_path / "s" / "cnn").mkdir(parents=True)
    (tmp_path / "s" / "cnn" / ".seed-0.staging").write_text("in the way")
    result = run_study(synthetic_ptbxl, tmp_path / "s", architectures=["cnn"], seeds=[0, 1, 2], parameters=TINY,
                       jobs=2, aggregate=False, execution=Execution(gpus=["0", "1"]))
    assert sorted(run_dir.name for run_dir in result.completed) == ["seed-1", "seed-2"]
    assert [run_dir.name for run_dir in result.failed] == ["seed-0"]
    for run_dir, reason in result.failed.items():
        assert str(run_dir / "02_train_architecture.ipynb") in reason and "cannot write the run folder" in reason
    contexts = [load_run(run_dir).execution for run_dir in result.completed]
    assert sorted(context["cuda_visible_devices"] for context in contexts) == ["0", "1"]
    assert all(context["executor"] == "local" and context["host"] and context["gpus"] == [] for context in contexts)
    assert all(context["devices"] == ["/device:CPU:0"] and context["gpu_names"] == [] for context in contexts)


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_executed_notebook_of_the_earlier_attempt(tmp_path, capsys):
    notebook = to_ipynb(TRAIN_NOTEBOOK, tmp_path / "nb")
    run_dir = tmp_path / "study" / "cnn" / "seed-0"
    executed = run_dir / f"{TRAIN_NOTEBOOK}.ipynb"
    config = RunConfig.from_parameters(data_dir=str(tmp_path / "nowhere"), architecture="cnn", **TINY)
    attempts = []
    for _ in range(2):
        with pytest.raises(Exception, match=str(executed)):
            execute_run(notebook, run_dir, config)
        attempts.append(executed.read_bytes())
    assert (run_dir / f"{TRAIN_NOTEBOOK}.attempt-1.ipynb").read_bytes() == attempts[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [f"{TRAIN_NOTEBOOK}.attempt-1.ipynb", executed.name]
    (tmp_path / "study" / GRID_FILE).write_text('["cnn/seed-0"]')
    code, out, _ = run_main(["status", tmp_path / "study"], capsys)
    assert code == 0 and f"failed    see {executed}" in out
