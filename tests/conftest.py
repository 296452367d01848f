"""Shared fixtures: the real PTB-XL subset beside the project and a small synthetic PTB-XL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REAL_PTBXL = Path(os.environ.get("PTBXL_DIR", Path(__file__).resolve().parents[2] / "shared" / "ptbxl"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session caches signals in its own folder, never in the user's ~/.cache."""
    monkeypatch.setenv("ECGKERAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def real_ptbxl() -> Path:
    """The real PTB-XL subset (../shared/ptbxl or $PTBXL_DIR); skipped when absent."""
    if not (REAL_PTBXL / "ptbxl_database.csv").is_file():
        pytest.skip(f"real PTB-XL subset not found at {REAL_PTBXL} (set PTBXL_DIR)")
    return REAL_PTBXL


@pytest.fixture(scope="session")
def synthetic_ptbxl(tmp_path_factory) -> Path:
    """A small synthetic PTB-XL (every subclass present), generated once per test session."""
    from ecgkeras.data.synthetic import make_synthetic_ptbxl

    return make_synthetic_ptbxl(tmp_path_factory.mktemp("synthetic") / "ptbxl", n_records=300, seed=7,
                                progress=False)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder nobody can write to: a read-only tmpfs for root (who ignores permissions), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
