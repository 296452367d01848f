"""Packages whose names load from their modules on first use, so that reading records, planning a study
or printing its status never imports TensorFlow."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, homes: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """The `__getattr__` and `__all__` of `package`, whose names live in its modules as `homes` says
    (module -> names; a module given as 'ecgkeras.x.y' is taken as it is, else relative to the package)."""
    where = {name: module if "." in module else f"{package}.{module}"
             for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(where)
