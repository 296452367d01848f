"""The report tests' fake study: 3 architectures x 2 seeds of valid run folders with known values."""

import matplotlib
import pytest
from helpers import ARCHS, SEEDS, write_run

from ecgkeras.runs import find_runs

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """3 architectures x 2 seeds on a (non-synthetic) data folder."""
    root = tmp_path_factory.mktemp("study")
    (root / "data").mkdir()
    for arch in ARCHS:
        for seed in SEEDS:
            write_run(root / "study" / arch / f"seed-{seed}", arch, seed, root / "data")
    return root / "study"


@pytest.fixture(scope="module")
def runs(study):
    return find_runs(study)
