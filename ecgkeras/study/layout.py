"""The one owner of a study folder's layout: run folders from (architecture, seed) and back, the grid,
shards, and the names of the study, grid, SLURM, summary and report files and folders.

  study.json                 each configuration in the folder with its runs, complete or planned
  grid.json                  every run id a study command asked for (`ecgkeras status` names missing ones)
  <architecture>/seed-<k>/   one run folder (`ecgkeras.runs.record`) and its executed notebook
  <architecture>@<name>=<value>[,...]/seed-<k>/   a run of a crossed grid's cell (`--grid NAME=V1,V2`)
  slurm/                     submitit's job files and logs, jobs.json (run id -> job id and log)
  summary/                   tables, figures and the executed aggregation notebook
  report/                    the static HTML site
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text

STUDY_FILE = "study.json"
STUDY_FORMAT = 2  # 2: the configurations in the folder, each with its runs
GRID_FILE = "grid.json"  # every run id a study command asked for, so `status` can name missing ones
RUN_GLOB = "*/seed-*"  # the run folders of a study: <architecture>[@<cell>]/seed-<k>
SLURM_DIR = "slurm"  # submitit's job files and logs, inside the study folder
SLURM_JOBS_FILE = "jobs.json"  # run id -> SLURM job id and log, written at submission
SUMMARY_DIR = "summary"
VERDICT_FILE = "verdict.md"  # in the summary folder: the verdict the summary README and the report open with
REPORT_DIR = "report"
# Kinds of folder `ecgkeras.files.replaced_folder` replaces (its marker file says which)
SUMMARY_KIND = "summary"
REPORT_KIND = "report"
PUBLISHED_KIND = "published-summary"


def cell_name(cell: dict[str, Any]) -> str:
    """A grid cell's part of a folder name: 'rnn_readout=pool', 'depth=2,rnn_readout=last' (values as JSON,
    texts bare)."""
    return ",".join(f"{name}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
                    for name, value in sorted(cell.items()))


def grid_cells(crossed: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the crossed parameters' values ({} alone when nothing is crossed)."""
    crossed = crossed or {}
    return [dict(zip(crossed, values)) for values in itertools.product(*crossed.values())]


def run_folder(study_dir: Path, architecture: str, seed: int, cell: dict[str, Any] | None = None) -> Path:
    """The folder of the run (architecture, seed) in a study, or of that run in a crossed grid's `cell`."""
    return study_dir / (architecture + (f"@{cell_name(cell)}" if cell else "")) / f"seed-{seed}"


def run_folders(study_dir: Path) -> list[Path]:
    """The run folders present in a study folder, sorted (complete or not)."""
    return sorted(path for path in study_dir.glob(RUN_GLOB) if path.is_dir())


def run_id(study_dir: Path, run_dir: Path) -> str:
    """A run's id inside its study: '<architecture>/seed-<k>'."""
    return run_dir.relative_to(study_dir).as_posix()


def grid(study_dir: Path, architectures: Iterable[str], seeds: Iterable[int],
         crossed: dict[str, list[Any]] | None = None) -> dict[Path, tuple[str, int, dict[str, Any]]]:
    """Run folder -> (architecture, seed, cell) of architectures x crossed cells x seeds, architecture-major,
    each once; a cell maps the crossed parameters (`--grid`) to one combination of their values."""
    seeds = list(dict.fromkeys(seeds))
    return {run_folder(study_dir, architecture, seed, cell): (architecture, seed, cell)
            for architecture in dict.fromkeys(architectures) for cell in grid_cells(crossed) for seed in seeds}


def parse_shard(value: str) -> tuple[int, int]:
    """'I/N' (1 <= I <= N) to (I, N), or a one-line error."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise EcgkerasError(f"--shard {value!r}: give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return index, count


def shard_runs(runs: list[Path], index: int, count: int) -> list[Path]:
    """Shard `index` of `count` (1-based): every count-th run of the full grid, so concurrent shards
    never overlap and their union is the grid, whatever has completed meanwhile."""
    return runs[index - 1::count]


def read_bookkeeping(path: Path, valid: Callable[[Any], bool], default: Any, regenerated_by: str) -> Any:
    """A study's bookkeeping file, `default` when absent, or a one-line error when damaged."""
    if not path.is_file():
        return default
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        readable = valid(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        readable = False
    if not readable:
        raise EcgkerasError(f"{path} is damaged (not what ecgkeras wrote there): delete it, then {regenerated_by}")
    return content


def known_grid(study_dir: Path) -> list[str]:
    """The run ids in the study's grid file (the union of what its commands asked for)."""
    return read_bookkeeping(study_dir / GRID_FILE, lambda ids: isinstance(ids, list) and all(
        isinstance(rid, str) for rid in ids), [], "rerun the study command (runs already complete are kept)")


def remember_grid(study_dir: Path, runs: list[Path]) -> None:
    """Add `runs` to the study's grid file."""
    known = known_grid(study_dir)
    ids = known + [r for r in (run_id(study_dir, run) for run in runs) if r not in known]
    if ids != known:
        atomic_write_text(study_dir / GRID_FILE, json.dumps(ids, indent=1))
