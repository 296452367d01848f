"""Shared fixtures: the real PTB-XL subset beside the project and a small synthetic PTB-XL."""

from __future__ import annotations

import os
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
    from ecgkeras.synthetic import make_synthetic_ptbxl

    return make_synthetic_ptbxl(tmp_path_factory.mktemp("synthetic") / "ptbxl", n_records=300, seed=7,
                                progress=False)
