"""Packaging (pyproject.toml): the wheel is all a user needs: built, installed into a fresh environment, used
from an empty folder.

Dependencies come from the wheelhouse `make install` downloads from the registry (pip's own cache
stays empty here: the registry's answers are not cacheable, and a second download of TensorFlow
would cost minutes). In a fresh environment without system site-packages pip first resolves the
wheel's declared dependencies, and theirs, from that wheelhouse alone (--no-index, a dry run): a
range that excludes the tested lock fails there, and every package requirements.txt pins must
resolve to the version installed here. The fresh environment then uses the lock already installed in this one (a .pth line, so
TensorFlow is not unpacked a second time) and gets the wheel itself: a dependency missing from the
metadata breaks the import check and the commands below, and `pip check` verifies every declared
range against what is installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from helpers import TINY_ARGS

from ecgkeras import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(os.environ.get("ECGKERAS_WHEELHOUSE", Path(sys.prefix) / "wheelhouse"))
START_UP_NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "without encryption")


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout is left as it was)."""
    if not any(WHEELHOUSE.glob("tensorflow-*.whl")):  # not made by `make install`: download it once
        _run(sys.executable, "-m", "pip", "download", "--quiet", "-d", WHEELHOUSE,
             "-r", ROOT / "requirements.txt", "setuptools>=77")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "ecgkeras", source / "ecgkeras", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--find-links", WHEELHOUSE,
         "--wheel-dir", dist, source)
    return next(dist.glob("ecgkeras-*.whl"))


@pytest.fixture(scope="module")
def environment(wheel, tmp_path_factory) -> dict[str, str]:
    """A fresh virtual environment with the wheel installed; the environment variables to use it."""
    prefix = tmp_path_factory.mktemp("venv")
    venv.create(prefix)  # no pip of its own: this environment's pip works on it (--python), 7 s less
    python = prefix / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    plan = prefix / "resolution.json"
    _run(*pip, "install", "--quiet", "--dry-run", "--ignore-installed", "--no-index",
         "--find-links", WHEELHOUSE, "--report", plan, f"{wheel}[slurm,postgresql]")  # the lock's extras
    resolved = {_normalized(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(plan.read_text())["install"]}
    pinned = {_normalized(re.split(r"[\s;<>=!~\[(]", line)[0]) for line in
              (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}
    off_lock = {name: (resolved.get(name), importlib.metadata.version(name)) for name in pinned
                if resolved.get(name) != importlib.metadata.version(name)}
    assert not off_lock, f"the wheel's dependencies resolve off the tested lock (resolved, locked): {off_lock}"
    site = next((prefix / "lib").glob("python*/site-packages"))
    (site / "tested-lock.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n")
    for path in WHEELHOUSE.glob("*.whl"):  # the files the resolved wheels put beside the code (the kernel spec)
        name, version = path.name.split("-")[:2]
        if resolved.get(_normalized(name)) == version:
            with zipfile.ZipFile(path) as archive:
                data = f"{name}-{version}.data/data/"
                for member in (m for m in archive.namelist() if m.startswith(data) and not m.endswith("/")):
                    target = prefix / member.removeprefix(data)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    _run(*pip, "install", "--quiet", "--no-deps", "--no-index", wheel)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "ECGKERAS_QUIET", "VIRTUAL_ENV")}
    env.update(PATH=f"{prefix / 'bin'}{os.pathsep}{env['PATH']}", ECGKERAS_CACHE=str(prefix / "cache"))
    return env


def test_the_wheel_ships_notebooks_license_types_and_its_dependencies(wheel, environment):
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("ecgkeras/notebooks/01_ptbxl_tour.py", "ecgkeras/notebooks/02_train_architecture.py",
                 "ecgkeras/notebooks/03_aggregate_results.py", "ecgkeras/notebooks/04_explain_predictions.py",
                 "ecgkeras/notebooks/05_tune.py", "ecgkeras/notebooks/06_your_own_ecg.py",
                 "ecgkeras/notebooks/05_tune.py",
                 "ecgkeras/py.typed", "ecgkeras/__main__.py"):
        assert name in names, name
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(
        next(name for name in names if name.endswith(".dist-info/METADATA"))).decode())
    assert metadata["Version"] == __version__ and metadata["License-Expression"] == "MIT"
    assert set(metadata.get_all("Provides-Extra")) == {"gpu", "slurm", "postgresql", "lab", "dev"}
    requires = metadata.get_all("Requires-Dist")
    declared = {_normalized(re.split(r"[\s;<>=!~\[(]", req)[0]) for req in requires if "extra ==" not in req}
    assert not any("pytest" in req for req in requires if "extra ==" not in req)  # a test tool, not runtime

    # every distribution the installed package (modules and notebooks) imports is declared
    provides = json.loads(_run("python", "-c", "import importlib.metadata as m, json; "
                               "print(json.dumps(m.packages_distributions()))", env=environment).stdout)
    site = Path(_run("python", "-c", "import ecgkeras; print(ecgkeras.__file__)", env=environment,
                     cwd=wheel.parent).stdout.strip()).parent
    assert site.is_relative_to(Path(environment["PATH"].split(os.pathsep)[0]).parent)  # not this checkout
    imported = set()
    for path in site.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    optional = {_normalized(re.split(r"[\s;<>=!~\[(]", req)[0]) for req in requires if "extra ==" in req}
    third_party = imported - set(sys.stdlib_module_names) - {"ecgkeras"} - {"submitit"}  # the slurm extra's
    assert "submitit" in optional
    assert third_party <= set(provides), f"imported but not installed: {third_party - set(provides)}"
    needed = {_normalized(provides[name][0]) for name in third_party}
    assert needed <= declared, f"imported but not declared: {needed - declared}"

    _run(sys.executable, "-m", "pip", "--python", shutil.which("python", path=environment["PATH"]), "check")


def test_from_an_empty_folder_synth_study_and_predict_succeed_quietly(environment, tmp_path):
    def ecgkeras(*args):
        done = _run("ecgkeras", *args, env=environment, cwd=tmp_path)
        noise = [line for line in done.stderr.splitlines() if any(n in line for n in START_UP_NOISE)]
        assert not noise, noise
        return done.stdout

    assert "23 classes" in ecgkeras("synth", "--out", "data", "--records", "60")
    out = ecgkeras("study", "--data-dir", "data", "--out", "study", "--architectures", "cnn", *TINY_ARGS)
    assert "1 run(s) completed" in out and (tmp_path / "study" / "summary" / "results_tuned.md").is_file()
    record = next((tmp_path / "data").glob("records100/*/*.hea")).with_suffix("")
    assert "probability" in ecgkeras("predict", "--run", "study/cnn/seed-0", record)
    ecgkeras("notebooks", "course")
    assert len(list((tmp_path / "course").glob("*.ipynb"))) == 6
