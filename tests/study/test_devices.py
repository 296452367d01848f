"""ecgkeras.study.devices: --gpus names GPUs that exist (each concurrent run on its own GPU slot:
tests/study/test_local.py)."""

from __future__ import annotations

from helpers import fake_gpus, refused


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
