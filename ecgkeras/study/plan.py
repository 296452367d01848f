"""A study's plan: the run folders a command asks for, every check that needs no writing, and the
plan registered in `study.json` under the study folder's lock, so a run folder takes one configuration."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text
from ecgkeras.models import expand_architectures
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.prepare import checked_parts, load_dataset
from ecgkeras.runs.record import RECORD_FILE, RunRecord, is_complete, load_run
from ecgkeras.study.layout import STUDY_FILE, STUDY_FORMAT, grid, known_grid, remember_grid, run_folders, shard_runs
from ecgkeras.study.locks import study_lock

log = logging.getLogger(__name__)


RUNNER_OWNED = {"architecture": "--architectures", "seed": "--seeds", "data_dir": "--data-dir"}


def plan_runs(data_dir: str | Path, study_dir: Path, architectures: Iterable[str], seeds: Iterable[int],
              parameters: dict[str, Any], crossed: dict[str, list[Any]] | None = None) -> dict[Path, RunConfig]:
    """The configuration of every (architecture, cell, seed) run folder, each checked by the run schema;
    `crossed` (`--grid`) maps parameters to the values crossed with the architectures."""
    crossed = crossed or {}
    if owned := sorted((set(parameters) | set(crossed)) & set(RUNNER_OWNED)):
        raise EcgkerasError(f"parameter(s) {owned} are set by the study itself: use "
                            + ", ".join(RUNNER_OWNED[name] for name in owned))
    if twice := sorted(set(parameters) & set(crossed)):
        raise EcgkerasError(f"parameter(s) {twice} are given by -p and by --grid: give each once")
    shared = {**parameters, "data_dir": str(Path(data_dir).resolve())}
    RunConfig.from_parameters(**shared)  # the shared parameters' errors first, before per-run ones
    if negative := [seed for seed in seeds if seed < 0]:
        raise EcgkerasError(f"--seeds {' '.join(map(str, negative))}: give seeds >= 0")
    return {run_dir: RunConfig.from_parameters(**shared, **cell, architecture=architecture, seed=seed)
            for run_dir, (architecture, seed, cell) in grid(study_dir, architectures, seeds, crossed).items()}


@dataclass
class Plan:
    """What one study command asks for: the configuration of every run of its grid, and its share."""

    configs: dict[Path, RunConfig]  # the whole grid, each run once
    runs: list[Path]  # the runs this command executes: the grid, or its --shard


def plan_study(data_dir: str | Path | None, study_dir: Path, architectures: Iterable[str], seeds: Iterable[int],
               parameters: dict[str, Any], shard: tuple[int, int] | None = None,
               crossed: dict[str, list[Any]] | None = None) -> Plan:
    """The one planner of `ecgkeras study`, its `--shard` and its `--list-runs`, checking all that can
    be checked without writing: the study folder, every parameter and, given `data_dir`, the data
    and each run's model against it (None: the data is not checked, as `--list-runs` without it)."""
    _check_study_folder(study_dir)
    architectures = expand_architectures(list(architectures))
    seeds = list(seeds)
    configs = plan_runs(data_dir if data_dir is not None else ".", study_dir, architectures, seeds, parameters,
                        crossed)
    if data_dir is not None:
        data = load_dataset(next(iter(configs.values())))  # builds the signal cache once, before runs read it
        for config in configs.values():
            checked_parts(config, data)
    runs = list(configs)
    return Plan(configs, shard_runs(runs, *shard) if shard else runs)


def _check_study_folder(study_dir: Path) -> None:
    """Refuse a study folder that is a file, a run folder, or inside another study's folder."""
    if study_dir.exists() and not study_dir.is_dir():
        raise EcgkerasError(f"--out {study_dir} is a file: give a folder for the study")
    for folder in (study_dir, *study_dir.parents):
        if (folder / RECORD_FILE).is_file():
            raise EcgkerasError(f"--out {study_dir} is inside the run folder {folder}: choose a folder outside it")
        if folder != study_dir and (folder / STUDY_FILE).is_file():
            raise EcgkerasError(f"--out {study_dir} is inside the study folder {folder}: choose a folder outside it")


def _complete_runs(run_dirs: Iterable[Path]) -> dict[Path, RunRecord]:
    """The readable complete runs among `run_dirs`; an unreadable record is redone, with a warning."""
    complete = {}
    for run_dir in run_dirs:
        if is_complete(run_dir):
            try:
                complete[run_dir] = load_run(run_dir)
            except EcgkerasError as exc:
                log.warning("%s; training it again", exc)
    return complete


def _registered_runs(study_dir: Path) -> dict[Path, dict[str, Any]]:
    """Run folder -> shared parameters of the configuration study.json registers it under (complete
    or only planned); a damaged study file is ignored with a warning (rewritten from the runs)."""
    path = study_dir / STUDY_FILE
    if not path.is_file():
        return {}
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
        registered = {study_dir / run: group["parameters"] for group in described["configurations"]
                      for run in group["runs"]}
        for parameters in registered.values():
            RunConfig.from_parameters(**parameters)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, EcgkerasError) as exc:
        log.warning("ignoring the damaged %s (%s); rewriting it from the complete runs", path, exc)
        return {}
    return registered


def _check_configurations(study_dir: Path, planned: dict[Path, RunConfig], existing: dict[Path, RunRecord],
                          registered: dict[Path, dict[str, Any]], allow_mixed: bool) -> None:
    """Refuse runs of another configuration in the folder (complete, or registered by another study),
    unless `allow_mixed`; even then a planned run folder cannot take a second configuration."""
    requested = {run_dir: config.shared_parameters(results_only=True) for run_dir, config in planned.items()}
    first = next(iter(requested.values()))
    theirs = {run_dir: RunConfig.from_parameters(**parameters).shared_parameters(results_only=True)
              for run_dir, parameters in registered.items()}
    theirs.update({run_dir: run.config.shared_parameters(results_only=True) for run_dir, run in existing.items()})
    cells = list(requested.values())  # a crossed grid's runs differ in the crossed parameters only
    conflicts = {run_dir: other for run_dir, other in sorted(theirs.items())
                 if (other != requested[run_dir] if run_dir in planned else other not in cells and not allow_mixed)}
    if not conflicts:
        return
    run_dir, other = next(iter(conflicts.items()))
    requested = requested.get(run_dir, first)
    changes = ", ".join(f"{name} {other.get(name)!r} there, {requested.get(name)!r} now"
                        for name in sorted(set(requested) | set(other)) if requested.get(name) != other.get(name))
    only_planned = [str(path.relative_to(study_dir)) for path in conflicts if path not in existing]
    planned_note = (f"; {', '.join(only_planned)} planned by another study, not complete: if none runs there "
                    f"any more, delete {study_dir / STUDY_FILE} to plan afresh" if only_planned else "")
    if allow_mixed:
        raise EcgkerasError(f"run folder(s) {', '.join(str(path.relative_to(study_dir)) for path in conflicts)} of "
                            f"{study_dir} hold another configuration ({changes}{planned_note}), and a run folder "
                            "takes one: use another --out for this configuration")
    raise EcgkerasError(f"{study_dir} holds runs of a different configuration ({run_dir.relative_to(study_dir)}: "
                        f"{changes}{planned_note}): use another --out, or --allow-mixed to add runs beside them")


def _write_study_file(study_dir: Path, planned: dict[Path, RunConfig], existing: dict[Path, RunRecord],
                      registered: dict[Path, dict[str, Any]]) -> None:
    """`study.json`: each configuration in the folder with its runs: complete runs keep their own, planned
    runs take this study's, runs registered by other studies keep theirs."""
    groups: dict[str, dict[str, Any]] = {}
    for run_dir in sorted({*planned, *existing, *registered}):
        if run_dir in existing:
            shared = existing[run_dir].config.shared_parameters()
        elif run_dir in planned:
            shared = planned[run_dir].shared_parameters()
        else:
            shared = registered[run_dir]
        group = groups.setdefault(json.dumps(shared, sort_keys=True), {"parameters": shared, "runs": []})
        group["runs"].append(str(run_dir.relative_to(study_dir)))
    atomic_write_text(study_dir / STUDY_FILE, json.dumps({"format": STUDY_FORMAT,
                                                          "configurations": list(groups.values())}, indent=2))


def register_plan(study_dir: Path, planned: dict[Path, RunConfig], allow_mixed: bool) -> None:
    """Check the planned configuration against the folder and register it in study.json and the grid
    file, under the study folder's lock, so that studies started at once see each other's plans."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EcgkerasError(f"cannot write the study folder {study_dir} ({exc.strerror}): choose a writable "
                            "--out") from None
    with study_lock(study_dir):
        known_grid(study_dir)  # a damaged grid file stops the study before anything is written
        registered = _registered_runs(study_dir)
        existing = _complete_runs(run_folders(study_dir))
        _check_configurations(study_dir, planned, existing, registered, allow_mixed)
        _write_study_file(study_dir, planned, existing, registered)
        remember_grid(study_dir, list(planned))
