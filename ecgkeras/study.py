"""The study runner: one papermill execution of the training notebook per (architecture, seed).

Layout of a study folder:
  study.json                         the settings every run shares (refuses to mix others)
  <architecture>/seed-<k>/           one run record + its executed notebook
  summary/                           tables, figures and the executed aggregation notebook
A rerun skips complete runs and redoes incomplete ones; a failed run is reported with the
path of its executed notebook and does not stop the others.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jupytext
import papermill
from tqdm import tqdm

from ecgkeras.data import load_ptbxl
from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.models import PAPER_ARCHITECTURES, get_architecture
from ecgkeras.runs import find_runs, is_complete
from ecgkeras.site import write_site

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
TRAIN_NOTEBOOK = "02_train_architecture"
AGGREGATE_NOTEBOOK = "03_aggregate_results"
STUDY_FILE = "study.json"
RUN_OWNED = ("architecture", "seed", "output_dir")  # set by the runner for each run


@dataclass
class StudyResult:
    """What a study execution did."""

    study_dir: Path
    completed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)  # run folder -> executed notebook / reason
    summary_dir: Path | None = None


def notebook_path(name: str) -> Path:
    """The jupytext source of notebook `name` (e.g. '02_train_architecture')."""
    path = NOTEBOOK_DIR / f"{name}.py"
    if not path.is_file():
        raise EcgkerasError(f"notebook source {path} is missing: reinstall ecgkeras from its repository")
    return path


def to_ipynb(name: str, out_dir: Path) -> Path:
    """Convert the jupytext source of notebook `name` into `out_dir/<name>.ipynb`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    jupytext.write(jupytext.read(notebook_path(name)), target)
    return target


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The notebook's `parameters` cell as {name: default value}."""
    return {name: ast.literal_eval(spec["default"])
            for name, spec in papermill.inspect_notebook(str(notebook)).items()}


def _literal(value: str) -> Any:
    """Parse a command-line value as JSON (numbers, lists, null, true/false), else keep the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_parameters(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs to a dict, values parsed as JSON where possible."""
    return {name: _literal(value) for name, value in pairs}


def _check_study_file(study_dir: Path, shared: dict[str, Any], allow_mixed: bool) -> None:
    path = study_dir / STUDY_FILE
    if path.exists() and not allow_mixed:
        previous = json.loads(path.read_text())
        differing = sorted(k for k in set(previous) | set(shared) if previous.get(k) != shared.get(k))
        if differing:
            raise EcgkerasError(f"{study_dir} holds runs of a different configuration (differs in "
                                f"{', '.join(differing)}): use another --out, or --allow-mixed to mix them")
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(shared, indent=2, sort_keys=True))


def _execute(notebook: Path, output: Path, parameters: dict[str, Any], log_output: bool) -> None:
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                               progress_bar=False, log_output=log_output, cwd=str(Path.cwd()))


def run_study(data_dir: str | Path, study_dir: str | Path,
              architectures: Iterable[str] = PAPER_ARCHITECTURES, seeds: Iterable[int] = (0,),
              parameters: dict[str, Any] | None = None, jobs: int = 1, allow_mixed: bool = False,
              aggregate: bool = True, log_output: bool = False) -> StudyResult:
    """Run the training notebook for every (architecture, seed) missing in `study_dir`, then aggregate.

    `parameters` are extra notebook parameters (epochs, sampling_rate, ...), shared by all runs.
    """
    study_dir = Path(study_dir).resolve()
    architectures = [get_architecture(name).name for name in architectures]
    seeds = [int(seed) for seed in seeds]
    if jobs < 1:
        raise EcgkerasError(f"--jobs {jobs}: give at least 1")
    with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
        train_notebook = to_ipynb(TRAIN_NOTEBOOK, Path(tmp))
        shared = _shared_parameters(train_notebook, parameters or {}, data_dir)
        # Validate the data folder and build the signal cache once, before parallel runs read it.
        load_ptbxl(shared["data_dir"], shared["sampling_rate"], shared["label_level"],
                   cache_dir=shared["cache_dir"])
        _check_study_file(study_dir, shared, allow_mixed)
        result = _run_all(train_notebook, study_dir, architectures, seeds, shared, jobs, log_output)
    if aggregate and (result.completed or result.skipped):
        result.summary_dir = aggregate_study(study_dir, bootstrap_resamples=shared["bootstrap_resamples"],
                                             log_output=log_output)
    return result


def _shared_parameters(notebook: Path, parameters: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """The notebook's defaults overridden by `parameters`: what every run of the study shares."""
    defaults = notebook_parameters(notebook)
    bad = sorted((set(parameters) - set(defaults)) | (set(parameters) & set(RUN_OWNED)))
    if bad:
        raise EcgkerasError(f"unknown or runner-owned notebook parameter(s) {bad}: valid names are "
                            f"{', '.join(sorted(set(defaults) - set(RUN_OWNED)))}")
    shared = {**defaults, **parameters, "data_dir": str(Path(data_dir).resolve())}
    for name in RUN_OWNED:
        shared.pop(name)
    return shared


def _run_all(train_notebook: Path, study_dir: Path, architectures: list[str], seeds: list[int],
             shared: dict[str, Any], jobs: int, log_output: bool) -> StudyResult:
    """Execute the missing runs (`jobs` at a time); complete ones are skipped."""
    result = StudyResult(study_dir)
    pending = []
    for architecture in architectures:
        for seed in seeds:
            run_dir = study_dir / architecture / f"seed-{seed}"
            (result.skipped if is_complete(run_dir) else pending).append(run_dir)
    if result.skipped:
        log.warning("skipping %d complete run(s) already in %s", len(result.skipped), study_dir)

    def execute(run_dir: Path) -> None:
        architecture, seed = run_dir.parent.name, int(run_dir.name.removeprefix("seed-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        output = run_dir / f"{TRAIN_NOTEBOOK}.ipynb"
        try:
            _execute(train_notebook, output, {**shared, "architecture": architecture, "seed": seed,
                                              "output_dir": str(run_dir)}, log_output)
        except papermill.PapermillExecutionError as exc:  # a cell failed: keep going with the others
            result.failed[run_dir] = f"{exc.ename}: {exc.evalue} (see {output})"
            return
        except Exception as exc:  # the kernel died or could not start
            result.failed[run_dir] = f"{type(exc).__name__}: {exc} (see {output})"
            return
        if is_complete(run_dir):
            result.completed.append(run_dir)
        else:
            result.failed[run_dir] = f"notebook finished without a complete run record (see {output})"

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(tqdm(pool.map(execute, pending), total=len(pending), desc="study runs", unit="run"))
    return result


def aggregate_study(study_dir: str | Path, summary_dir: str | Path | None = None,
                    bootstrap_resamples: int = 1000, log_output: bool = False) -> Path:
    """Execute the aggregation notebook on `study_dir`, then write its HTML report; returns the summary folder."""
    study_dir = Path(study_dir).resolve()
    if not find_runs(study_dir):
        raise EcgkerasError(f"no complete run in {study_dir}: run `ecgkeras study` first")
    summary_dir = Path(summary_dir).resolve() if summary_dir else study_dir / "summary"
    summary_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
            _execute(to_ipynb(AGGREGATE_NOTEBOOK, Path(tmp)), summary_dir / f"{AGGREGATE_NOTEBOOK}.ipynb",
                     {"study_dir": str(study_dir), "summary_dir": str(summary_dir),
                      "bootstrap_resamples": bootstrap_resamples}, log_output)
    except papermill.PapermillExecutionError as exc:
        raise EcgkerasError(f"aggregation failed ({exc.ename}: {exc.evalue}); see "
                            f"{summary_dir / (AGGREGATE_NOTEBOOK + '.ipynb')}") from exc
    write_site(study_dir, summary_dir=summary_dir)  # the HTML report, <study_dir>/report/index.html
    return summary_dir


def publish_summary(summary_dir: Path, target: Path) -> Path:
    """Copy a summary's tables and figures (not notebooks) to `target`, e.g. results/demo-synthetic."""
    target.mkdir(parents=True, exist_ok=True)
    for path in summary_dir.iterdir():
        if path.suffix in {".md", ".csv", ".tex", ".png", ".pdf"}:
            shutil.copy2(path, target / path.name)
    return target
