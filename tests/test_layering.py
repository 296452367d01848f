"""The package's layering (ecgkeras/*, the notebooks aside): no import cycle between its modules, and
no sub-package imports one above it in ORDER (a module may import its own layer and the ones before it)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
import subprocess
import sys
from pathlib import Path

import ecgkeras

PACKAGE = Path(ecgkeras.__file__).parent
ORDER = [{"errors", "files", "heap", "lazy", "quiet", "schema"}, {"data"}, {"models"}, {"training"}, {"evaluation"}, {"runs"},
         {"study"}, {"tuning"}, {"report"}, {"explain"}, {"cli", "__main__"}]


def module_name(path: Path) -> str:
    return ".".join(("ecgkeras", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "notebooks" not in path.parts}


def imported(path: Path) -> set[str]:
    """The ecgkeras modules `path` imports anywhere in it (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ecgkeras")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "ecgkeras":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= submodules or {node.module}
    return found


def layer(module: str) -> int:
    """The position of `module`'s sub-package in ORDER; the package's own __init__ (for __version__) sits
    with the modules it imports itself (the rest of its names load on first use)."""
    parts = module.split(".")
    if len(parts) == 1:
        return max(layer(target) for target in imported(MODULES[module]))
    return next(i for i, names in enumerate(ORDER) if parts[1] in names)


def test_every_module_has_a_layer():
    assert {module.split(".")[1] for module in MODULES if "." in module} == set().union(*ORDER)


def test_no_module_imports_a_later_layer():
    upward = [f"{module} imports {target}" for module, path in MODULES.items() for target in imported(path)
              if layer(target) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {module: imported(path) - {module} for module, path in MODULES.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_planning_status_and_aggregation_start_without_tensorflow():
    """The CLI, the planner, status, the summary and the report never import TensorFlow (seconds per process), nor
    does the training notebook before its run builds a model (a wrong data folder fails in a second)."""
    code = ("import sys, ecgkeras.cli, ecgkeras.study.plan, ecgkeras.study.runner, ecgkeras.study.status, "
            "ecgkeras.report.aggregate, ecgkeras.report.site, ecgkeras.tuning.tune, ecgkeras.runs.experiment; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
