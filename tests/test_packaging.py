"""Packaging (pyproject.toml): the wheel is all a user needs: built, installed into a fresh environment, used
from an empty folder.

The wheel is built with its declared build backend from the registry (uv build, isolated). Its declared
dependencies, and theirs, are resolved from the registry for a fresh environment without system
site-packages, pinned to what this environment has installed (uv pip compile, every installed version a
constraint): a range that excludes the tested lock fails there, and every package requirements.txt pins
must be among the wheel's dependencies. The fresh environment then uses the lock already installed in this
one (a .pth line, so TensorFlow is not unpacked a second time) and gets the wheel itself: a dependency
missing from the metadata breaks the import check and the commands below, and `pip check` verifies every
declared range against what is installed.
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
UV = Path(sys.prefix) / "bin" / "uv"  # make install's
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
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "ecgkeras", source / "ecgkeras", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    _run(UV, "build", "--quiet", "--wheel", "--out-dir", dist, source)
    return next(dist.glob("ecgkeras-*.whl"))


@pytest.fixture(scope="module")
def environment(wheel, tmp_path_factory) -> dict[str, str]:
    """A fresh virtual environment with the wheel installed; the environment variables to use it."""
    prefix = tmp_path_factory.mktemp("venv")
    venv.create(prefix)  # no pip of its own: this environment's pip works on it (--python), 7 s less
    python = prefix / "bin" / "python"
    installed = {_normalized(dist.metadata["Name"]): dist for dist in importlib.metadata.distributions()}
    installed.pop("ecgkeras")
    (prefix / "installed.txt").write_text("".join(f"{name}=={dist.version}\n" for name, dist in installed.items()))
    (prefix / "wanted.txt").write_text(f"ecgkeras[slurm,postgresql] @ {wheel.as_uri()}\n")  # the lock's extras
    plan = _run(UV, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", python,
                "--constraint", prefix / "installed.txt", prefix / "wanted.txt").stdout
    resolved = {_normalized(name): version for name, version in
                (line.split("==") for line in plan.splitlines() if "==" in line)}
    assert set(resolved) <= set(installed), f"the wheel needs what the tested lock lacks: {set(resolved) - set(installed)}"
    pinned = {_normalized(re.split(r"[\s;<>=!~\[(]", line)[0]) for line in
              (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}
    off_lock = {name: (resolved.get(name), installed[name].version) for name in pinned
                if resolved.get(name) != installed[name].version}
    assert not off_lock, f"the wheel's dependencies resolve off the tested lock (resolved, locked): {off_lock}"
    site = next((prefix / "lib").glob("python*/site-packages"))
    (site / "tested-lock.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n")
    here = Path(os.path.normpath(sys.prefix))
    for name in resolved:  # the files the resolved distributions put beside the code (the kernel spec), not scripts
        for path in installed[name].files or ():
            source = Path(os.path.normpath(installed[name].locate_file(path)))
            if path.parts[0] == ".." and source.is_relative_to(here) and source.relative_to(here).parts[0] != "bin":
                target = prefix / source.relative_to(here)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel)
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
