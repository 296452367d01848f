"""Run parameters defined once: each field's type, default, allowed range and meaning.

The run configuration (`ecgkeras.runs.RunConfig`) and its model and training parts are
dataclasses whose fields are declared with `parameter(...)`. `Schema.__post_init__` checks
every value strictly against its annotation (1.5 or true is not an integer, "abc" is not a
number) and its range, so the notebook, `ecgkeras study -p` and the Python API accept and
refuse exactly the same values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from ecgkeras.errors import EcgkerasError


@dataclass(frozen=True)
class Search:
    """How `ecgkeras tune` searches a parameter by default: a range (`low` to `high`, on a log scale with
    `log`; integers for an integer parameter) or a set of `choices`. Overridden by `tune --space FILE`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """'log-uniform in [0.0001, 0.003]', 'one of 32, 64' ..."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return f"{'log-uniform' if self.log else 'uniform'} in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Constraint:
    """What a parameter accepts beyond its type (bounds apply to each element of a tuple)."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    below_maximum: bool = False  # maximum itself excluded
    above_minimum: bool = False  # minimum itself excluded
    choices: Callable[[], typing.Iterable[Any]] | typing.Iterable[Any] | None = None
    affects_results: bool = True  # False for where files go and how much is printed
    search: Search | None = None  # tunable by `ecgkeras tune`: its default search range

    def allowed(self) -> list[Any] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """The range in words, e.g. '>= 1', 'in (0, 1)', 'one of bce, focal'."""
        if (allowed := self.allowed()) is not None:
            return "one of " + ", ".join(map(str, allowed))
        low = None if self.minimum is None else ("> " if self.above_minimum else ">= ") + f"{self.minimum:g}"
        high = None if self.maximum is None else ("< " if self.below_maximum else "<= ") + f"{self.maximum:g}"
        return " and ".join(part for part in (low, high) if part) or "any"


def parameter(default: Any = dataclasses.MISSING, help: str = "", **constraint: Any) -> Any:
    """A dataclass field with a default and its `Constraint` (see there for the keywords)."""
    return dataclasses.field(default=default, metadata={"constraint": Constraint(help, **constraint)})


def type_name(annotation: Any) -> str:
    """'an integer', 'a list of integers or null', ... for error messages and listings."""
    args = typing.get_args(annotation)
    if _is_optional(annotation):
        return f"{type_name(next(a for a in args if a is not type(None)))} or null"
    if typing.get_origin(annotation) is tuple:
        return f"a list of {_PLURAL[args[0]]}"
    return _SINGULAR[annotation]


_SINGULAR = {int: "an integer", float: "a finite number", bool: "true or false", str: "a text"}
_PLURAL = {int: "integers", float: "numbers", str: "texts"}


def _is_optional(annotation: Any) -> bool:
    return (typing.get_origin(annotation) in (typing.Union, types.UnionType)
            and type(None) in typing.get_args(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` (int -> float, list -> tuple), or TypeError; never guesses."""
    if _is_optional(annotation):
        if value is None:
            return None
        return _coerce(value, next(a for a in typing.get_args(annotation) if a is not type(None)))
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise TypeError
        return tuple(_coerce(item, typing.get_args(annotation)[0]) for item in value)
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise TypeError
        return float(value)
    if annotation is str and isinstance(value, str):
        return value
    raise TypeError


def _in_range(value: Any, rule: Constraint) -> bool:
    if value is None:
        return True
    if isinstance(value, tuple):
        return all(_in_range(item, rule) for item in value)
    if (allowed := rule.allowed()) is not None:
        return value in allowed
    if rule.minimum is not None and (value < rule.minimum or (rule.above_minimum and value == rule.minimum)):
        return False
    return rule.maximum is None or not (value > rule.maximum or (rule.below_maximum and value == rule.maximum))


def _checked(spec: dataclasses.Field, annotation: Any, value: Any, label: str | None = None) -> Any:
    """`value` coerced to the field's type and checked against its range; errors start with `label`."""
    try:
        coerced = _coerce(value, annotation)
    except TypeError:
        raise EcgkerasError(f"{label or f'{spec.name}={value!r}'}: expected {type_name(annotation)}") from None
    rule: Constraint = spec.metadata["constraint"]
    if not _in_range(coerced, rule):
        raise EcgkerasError(f"{label or f'{spec.name}={coerced!r}'}: must be {rule.describe()}")
    return coerced


def check_parameter(schema: type, name: str, value: Any, label: str | None = None) -> Any:
    """`value` checked as parameter `name` of `schema` (e.g. a command-line option of the same meaning)."""
    return _checked(schema.__dataclass_fields__[name], typing.get_type_hints(schema)[name], value, label)


class Schema:
    """Mixin for dataclasses of `parameter` fields: strict checking on construction."""

    # Names listed in error messages, e.g. "training parameter".
    kind: ClassVar[str] = "parameter"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):
            if "constraint" not in spec.metadata:
                continue
            setattr(self, spec.name, _checked(spec, hints[spec.name], getattr(self, spec.name)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a mapping, refusing unknown names with a list of the valid ones."""
        names = [spec.name for spec in dataclasses.fields(cls)]
        if unknown := sorted(set(values) - set(names)):
            raise EcgkerasError(f"unknown {cls.kind}(s) {unknown}: valid names are {', '.join(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe_parameters(schema: type) -> list[str]:
    """One line per parameter of `schema`: name, default (as JSON), type, range and meaning."""
    hints = typing.get_type_hints(schema)
    lines = []
    for spec in dataclasses.fields(schema):
        if "constraint" not in spec.metadata:
            continue
        rule: Constraint = spec.metadata["constraint"]
        default = "(required)" if spec.default is dataclasses.MISSING else json.dumps(spec.default)
        allowed = rule.describe()
        tunable = f" [tunable: {rule.search.describe()}]" if rule.search else ""
        lines.append(f"{spec.name:<20} {default:<20} {type_name(hints[spec.name])}"
                     f"{'' if allowed == 'any' else ', ' + allowed}: {rule.help}{tunable}")
    return lines
