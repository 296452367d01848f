"""The search space of `ecgkeras tune`: each tunable run parameter's `Search` (declared beside its
schema field, `ecgkeras parameters` lists them), narrowed or widened by a `--space FILE`.

A space file (JSON, or YAML when pyyaml is installed) maps tunable parameter names to a range
(`{"low": 1e-4, "high": 1e-2, "log": true}`), a set (`{"choices": [32, 64]}`) or null (not tuned: its
default or `-p` value). Every entry is checked against the schema's range before anything is written.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ecgkeras.errors import EcgkerasError
from ecgkeras.models import RECURRENT_ONLY, get_architecture
from ecgkeras.runs.config import RunConfig
from ecgkeras.schema import Search, check_parameter

_KEYS = {"low", "high", "log", "choices"}


def _fields() -> dict[str, tuple[type, Any]]:
    """Every run parameter name -> (its schema, its annotation)."""
    return {name: (schema, typing.get_type_hints(schema)[name]) for schema in RunConfig.parts().values()
            for name, spec in schema.__dataclass_fields__.items() if "constraint" in spec.metadata}


def default_space() -> dict[str, Search]:
    """The tunable parameters with their declared search ranges, in the schema's order."""
    return {name: spec.metadata["constraint"].search for schema in RunConfig.parts().values()
            for name, spec in schema.__dataclass_fields__.items()
            if "constraint" in spec.metadata and spec.metadata["constraint"].search}


def space_to_json(space: dict[str, Search]) -> dict[str, dict[str, Any]]:
    """The space as JSON-ready mappings (what `tuning.json` records and a space file holds)."""
    return {name: {key: (list(value) if isinstance(value, tuple) else value)
                   for key, value in asdict(search).items() if value is not None and value is not False}
            for name, search in space.items()}


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EcgkerasError(f"--space {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise EcgkerasError(f"--space {path}: YAML needs pyyaml (pip install pyyaml), or give the space "
                                "as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EcgkerasError(f"--space {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EcgkerasError(f"--space {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _checked_search(path: Path, name: str, entry: Any) -> Search:
    """One entry of a space file as a `Search`, each bound and choice checked by the schema."""
    schema, annotation = _fields()[name]
    where = f"--space {path}: {name}"
    if not isinstance(entry, dict) or not entry or set(entry) - _KEYS:
        raise EcgkerasError(f"{where}: give {{\"low\": L, \"high\": H}} (with \"log\": true for a log scale), "
                            "{\"choices\": [...]} or null")
    if "choices" in entry:
        if set(entry) != {"choices"} or not isinstance(entry["choices"], list) or not entry["choices"]:
            raise EcgkerasError(f"{where}: \"choices\" takes a non-empty list and nothing beside it")
        choices = tuple(check_parameter(schema, name, value, f"{where} choice {value!r}") for value in entry["choices"])
        return Search(choices=tuple(dict.fromkeys(choices)))
    if annotation is str or not {"low", "high"} <= set(entry):
        raise EcgkerasError(f"{where}: give both \"low\" and \"high\"" if annotation is not str
                            else f"{where}: a text parameter takes {{\"choices\": [...]}}")
    if not isinstance(entry.get("log", False), bool):
        raise EcgkerasError(f"{where}: \"log\" takes true or false")
    low, high = (check_parameter(schema, name, entry[key], f"{where} {key} {entry[key]!r}") for key in ("low", "high"))
    if not low < high:
        raise EcgkerasError(f"{where}: low {low!r} must be below high {high!r}")
    if entry.get("log") and low <= 0:
        raise EcgkerasError(f"{where}: a log scale needs low > 0, got {low!r}")
    return Search(low, high, log=entry.get("log", False))


def load_space(path: Path | None) -> dict[str, Search]:
    """The default space with `path`'s entries applied (null removes one), or a one-line error."""
    space = default_space()
    if path is None:
        return space
    content = _read(path)
    if not isinstance(content, dict):
        raise EcgkerasError(f"--space {path}: expected a mapping of parameter names to ranges, e.g. "
                            '{"learning_rate": {"low": 0.0001, "high": 0.01, "log": true}}')
    for name, entry in content.items():
        if name not in _fields():
            raise EcgkerasError(f"--space {path}: unknown parameter {name!r}; tunable ones are {', '.join(space)}")
        if name not in default_space():
            raise EcgkerasError(f"--space {path}: {name} is not tunable (set it with -p {name} VALUE); tunable "
                                f"ones are {', '.join(default_space())}")
        if entry is None:
            space.pop(name, None)
        else:
            space[name] = _checked_search(path, name, entry)
    return space


def architecture_space(space: dict[str, Search], architecture: str, fixed: dict[str, Any]) -> dict[str, Search]:
    """What is searched for `architecture`: the space without parameters set with -p, nor, for architectures
    without recurrent layers, the recurrent ones (they do not change them)."""
    recurrent = get_architecture(architecture).cell is not None
    return {name: search for name, search in space.items()
            if name not in fixed and (recurrent or name not in RECURRENT_ONLY)}


def suggest(trial, space: dict[str, Search]) -> dict[str, Any]:
    """The trial's values for `space` (Optuna's suggest_* calls)."""
    values = {}
    for name, search in space.items():
        annotation = _fields()[name][1]
        if search.choices is not None:
            values[name] = trial.suggest_categorical(name, list(search.choices))
        elif annotation is int:
            values[name] = trial.suggest_int(name, int(search.low), int(search.high), log=search.log)
        else:
            values[name] = trial.suggest_float(name, search.low, search.high, log=search.log)
    return values
