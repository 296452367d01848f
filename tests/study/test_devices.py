"""ecgkeras.study.devices: --gpus names GPUs that exist; each concurrent run gets its own GPU slot."""

from __future__ import annotations

import pytest
from helpers import TINY, fake_gpus, refused

from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import load_run
from ecgkeras.study.runner import Execution


def test_gpus_that_this_machine_lacks_are_refused(synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    out = tmp_path / "study"
    args = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", "--gpus", "7"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi
    refused(args, capsys, "--gpus 7: no GPU found", "--gpus none")
    monkeypatch.setenv("PATH", fake_gpus(tmp_path / "bin", 2))
    refused(args, capsys, "no GPU 7 here", "nvidia-smi -L lists 0, 1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    refused([*args[:-1], "0,1"], capsys, "no GPU 0 here", "CUDA_VISIBLE_DEVICES=1")
    assert not out.exists()


@pytest.mark.slow
def test_each_concurrent_run_gets_its_own_gpu_slot(synthetic_ptbxl, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_gpus(tmp_path / "bin", 2))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = run_study(synthetic_ptbxl, tmp_path / "s", architectures=["cnn"], seeds=[0, 1], parameters=TINY,
                       jobs=2, aggregate=False, execution=Execution(gpus=["0", "1"]))
    assert len(result.completed) == 2
    contexts = [load_run(run_dir).execution for run_dir in result.completed]
    assert sorted(context["cuda_visible_devices"] for context in contexts) == ["0", "1"]
    assert all(context["executor"] == "local" and context["host"] and context["gpus"] == [] for context in contexts)
    assert all(context["devices"] == ["/device:CPU:0"] and context["gpu_names"] == [] for context in contexts)
