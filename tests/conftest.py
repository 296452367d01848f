"""Shared fixtures: the real PTB-XL subset beside the project, a small synthetic PTB-XL, and the trained
runs and study that many test files read (each built once per test session, also across pytest-xdist
workers). A test that changes one of them works on a copy (the `*_copy` fixtures)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import CROP, SMALL_MODEL, STRIDE, TINY, TINY_ARGS, TINY_RUN, built_once, write_challenge_copy, write_run

from postgres_server import postgres_server
from slurm_cluster import slurm_cluster

from ecgkeras.quiet import QUIET_ENV

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The test workers (pytest-xdist, one per core) and their kernels share the cores: one TensorFlow and OpenMP
# thread each keeps them from oversubscribing the CPUs (14% less time than each taking every core, 2 cores).
for _threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

REAL_PTBXL = Path(os.environ.get("PTBXL_DIR", Path(__file__).resolve().parents[2] / "shared" / "ptbxl"))


def pytest_collection_modifyitems(items):
    """Slow tests first (in their order), so that the long ones do not start last on one worker. pytest-xdist
    (--dist worksteal) hands each of its N workers one contiguous Nth of the list: each Nth holds an Nth of
    the slow tests, then of the fast ones, so every worker ends on fast tests, which the first idle one steals
    from the others' tails."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    items[:] = [item for k in range(workers) for part in (slow, fast)
                for item in part[k * len(part) // workers:(k + 1) * len(part) // workers]]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """The session (fixtures, tests and their kernels) caches signals in its own folder, never in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECGKERAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture(autouse=True)
def undo_quiet_setting(monkeypatch):
    """main() makes the process quiet through an environment variable its kernels inherit: undone after;
    and no test reads its data folder from the user's PTBXL_DIR."""
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.delenv("PTBXL_DIR", raising=False)


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

    return built_once(tmp_path_factory, "synthetic", lambda folder: make_synthetic_ptbxl(
        folder / "ptbxl", n_records=300, seed=7, progress=False))


@pytest.fixture(scope="session")
def synthetic500(synthetic_ptbxl, tmp_path_factory):
    """The synthetic PTB-XL at 500 Hz (300 records: 72 MB of signals, so a copy of a split shows), read
    from a signal cache written once."""
    from ecgkeras.data.ptbxl import load_ptbxl

    def build(cache_dir: Path) -> Path:
        load_ptbxl(synthetic_ptbxl, 500, cache_dir=cache_dir, progress=False)
        return cache_dir

    return load_ptbxl(synthetic_ptbxl, 500, cache_dir=built_once(tmp_path_factory, "cache500", build), progress=False)


def _trained(tmp_path_factory, name: str, relative: str, **parameters):
    """A run of `run_experiment` at `name`/`relative`, built once; its record, loaded."""
    from ecgkeras.runs import RunConfig, load_run, run_experiment

    def build(folder: Path) -> Path:
        run_experiment(RunConfig.from_parameters(**parameters), folder / relative, progress=False)
        return folder / relative

    return load_run(built_once(tmp_path_factory, name, build))


@pytest.fixture(scope="session")
def tiny_run(synthetic_ptbxl, tmp_path_factory):
    """A complete tiny CNN run (one epoch, TINY settings) on the synthetic data, trained on CROP-sample
    windows and evaluated on windows STRIDE apart, in a study folder (study/cnn/seed-0). Read-only:
    use `tiny_run_copy` to change it."""
    return _trained(tmp_path_factory, "tiny-run", "study/cnn/seed-0", data_dir=str(synthetic_ptbxl),
                    architecture="cnn", crop_length=CROP, window_stride=STRIDE, **TINY_RUN)


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run's study folder (tmp_path/study, the run in study/cnn/seed-0), to damage."""
    shutil.copytree(tiny_run.run_dir.parents[1], tmp_path / "study")
    return tmp_path / "study"


@pytest.fixture(scope="session")
def learned_run(synthetic_ptbxl, tmp_path_factory):
    """A small CNN trained 8 epochs on the synthetic data: long enough to learn its classes."""
    return _trained(tmp_path_factory, "learned-run", "cnn/seed-0", data_dir=str(synthetic_ptbxl), architecture="cnn",
                    epochs=8, batch_size=16, learning_rate=3e-3, bootstrap_resamples=0, verbose=0, **SMALL_MODEL)


@pytest.fixture(scope="session")
def real_run(real_ptbxl, tmp_path_factory):
    """One epoch of a small CNN-LSTM on the real PTB-XL subset, with its complete run record."""
    return _trained(tmp_path_factory, "real-run", "cnn-lstm/seed-0", data_dir=str(real_ptbxl),
                    architecture="cnn-lstm", epochs=1, batch_size=32, bootstrap_resamples=20, verbose=0,
                    **SMALL_MODEL)


@pytest.fixture(scope="session")
def two_runs(synthetic_ptbxl, learned_run, tmp_path_factory):
    """A small CNN that early-stops (patience 1, seed 1; 2 epochs), and `learned_run` (seed 0), which its
    8-epoch cap stopped while still improving."""
    stops = _trained(tmp_path_factory, "early-stopping", "cnn/seed-1", data_dir=str(synthetic_ptbxl),
                     architecture="cnn", batch_size=32, learning_rate=3e-3, bootstrap_resamples=0, verbose=0,
                     seed=1, epochs=30, patience=1, **SMALL_MODEL)
    return stops, learned_run


@pytest.fixture(scope="session")
def tiny_study_and_result(synthetic_ptbxl, tmp_path_factory):
    """A two-architecture study (cnn, cnn-gru; TINY settings) on the synthetic data through the notebooks,
    both runs at once (many tests wait for it), aggregated, with its report; and what `run_study` returned."""
    from ecgkeras.report.aggregate import run_study

    def build(folder: Path):
        out = folder / "demo"
        return out, run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY,
                              jobs=2)

    return built_once(tmp_path_factory, "tiny-study", build)


@pytest.fixture(scope="session")
def tiny_study(tiny_study_and_result) -> Path:
    """The tiny study's folder (read-only: use `tiny_study_copy` to change it)."""
    return tiny_study_and_result[0]


@pytest.fixture
def tiny_study_copy(tiny_study, tmp_path) -> Path:
    """A copy of the tiny study folder, to rerun or change."""
    shutil.copytree(tiny_study, tmp_path / "demo")
    return tmp_path / "demo"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """`ecgkeras study --demo` with one tiny architecture and 60 synthetic records (the demo's data costs
    about 50 ms of CPU a record to write), run in an empty folder (returned; the study is its tiny-demo/).
    Read-only."""
    from ecgkeras import cli
    from ecgkeras.study import demo as demo_study

    def build(cwd: Path) -> Path:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(cwd)
            patch.setattr(demo_study, "DEMO_RECORDS", 60)
            cli.main(["study", "--demo", "--out", "tiny-demo", "--architectures", "cnn", *TINY_ARGS])
        return cwd

    return built_once(tmp_path_factory, "demo", build)


@pytest.fixture(scope="session")
def fake_study(tmp_path_factory) -> Path:
    """Two complete fake runs (no training) and their summary, written by `write_summary`. Read-only."""
    from ecgkeras.report.summary import write_summary

    root = tmp_path_factory.mktemp("fake")
    (root / "data").mkdir()
    for arch in ("cnn", "cnn-lstm"):
        write_run(root / "study" / arch / "seed-0", arch, 0, root / "data")
    write_summary(root / "study", bootstrap_resamples=10)
    return root / "study"


@pytest.fixture
def fake_study_copy(fake_study, tmp_path) -> Path:
    """A copy of the fake study, to change."""
    shutil.copytree(fake_study, tmp_path / "study")
    return tmp_path / "study"


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


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running single-node SLURM cluster (tests/slurm_cluster.py), one per test process; SLURM_CONF points this process and its children at it."""
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
        try:
            yield env
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF")
            else:
                os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of a running PostgreSQL server (tests/postgres_server.py), one per test process."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def challenge_subset(real_ptbxl, tmp_path_factory) -> Path:
    """The real PTB-XL subset in the Challenge format (.mat, leads renamed and reordered, #Dx from its SCP codes),
    resampled in turn to 250, 257, 360 and 1000 Hz; no folds given. Read-only."""
    return built_once(tmp_path_factory, "challenge-subset", lambda folder: write_challenge_copy(
        real_ptbxl, folder / "challenge", rates=(250, 257, 360, 1000)))


@pytest.fixture(scope="session")
def challenge_test_fold(real_run, real_ptbxl, tmp_path_factory) -> Path:
    """The test-fold records of `real_run` in the Challenge format at their own rate (leads renamed and
    reordered, .mat), so that external validation on them can reproduce the run's test fold. Read-only."""
    ids = [int(ecg_id) for ecg_id in real_run.predictions["test_ecg_ids"]]
    return built_once(tmp_path_factory, "challenge-test-fold", lambda folder: write_challenge_copy(
        real_ptbxl, folder / "challenge", ecg_ids=ids))
