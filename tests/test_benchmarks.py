"""benchmarks/bench_gpu.py: the GPU benchmark runs anywhere; without a GPU it measures the CPU and says
what it skipped (the committed numbers come from a GPU machine, see benchmarks/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

from ecgkeras.study.devices import listed_gpus


@pytest.mark.slow
def test_the_gpu_benchmark_runs_quickly_on_a_cpu_and_says_what_it_skipped(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "bench_gpu.py", "--quick", "--records", "32",
                           "--architectures", "cnn-gru", "--runs-per-gpu", "1", "--out", out], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    section = out.read_text()
    assert "| cnn-gru | 166,039 | float32 |" in section and "| yes |" in section  # Keras' cuDNN conditions hold
    if listed_gpus():
        assert "| 1 |" in section and "mixed_float16" in section  # runs sharing a GPU; the tensor-core policy
    else:
        assert section.startswith("\n## GPU benchmark: no GPU (CPU: ")
        assert "GPU-only parts skipped: no GPU on this machine" in section and "no GPU on this machine" in done.stderr
