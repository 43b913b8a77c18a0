"""The house is layered one way: the core (`hub`, without its CLI) knows nothing of
`schedules/` or the CLI; connectors and renderers build on the core only; the CLI may use
everything and nothing imports it. And no modules import each other in a circle, not even
through an import inside a function."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Not about the date (the import graph): left out of make test's second run (--clock-ahead).
pytestmark = pytest.mark.timeless

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "connectors", "renderers", "schedules")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Project modules that `path` imports anywhere, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    """The import graph, worked out in a fresh interpreter: CPython 3.11's `ast.parse` can
    fail with "AST constructor recursion depth mismatch" in a process where earlier tests
    recursed deeply (an interpreter bug, not a property of our code)."""
    found = subprocess.run([sys.executable, "-c", "import json, tests.test_layering as t; "
                            "print(json.dumps({k: sorted(v) for k, v in t._graph_here().items()}))"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {name: set(deps) for name, deps in json.loads(found).items()}


def _graph_here() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if "migrations" not in p.parts and "demo" not in p.parts}
    # an import of a package's attribute (from hub.store import Store) points at the package
    return {name: {dep if dep in modules else dep.rsplit(".", 1)[0] for dep in _imports(path)} - {name}
            for name, path in modules.items()}


def _layer(module: str) -> str:
    if module == "hub.cli" or module.startswith("hub.cli.") or module == "hub.__main__":
        return "cli"
    return module.split(".")[0]


ALLOWED = {
    "hub": {"hub"},
    "connectors": {"hub", "connectors"},
    "renderers": {"hub", "renderers"},
    "schedules": {"hub", "schedules", "connectors", "renderers"},
    "cli": {"cli", "hub", "schedules", "connectors", "renderers"},
}


def test_every_layer_imports_only_the_layers_beneath_it():
    wrong = sorted(f"{module} imports {dep}" for module, deps in _graph().items() for dep in deps
                   if _layer(dep) not in ALLOWED[_layer(module)])
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle():
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
