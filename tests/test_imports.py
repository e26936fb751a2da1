"""The package's import graph has no cycles, lazy imports included.

Every ``import axion...`` / ``from axion... import ...`` statement anywhere in a module
(function bodies too; ``if TYPE_CHECKING:`` blocks excepted, they never run) is an
edge. A cycle means two modules that need each other: the shared piece belongs in a
module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import axion

ROOT = Path(axion.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "axion")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "axion":
            found.add(node.module)
            for alias in node.names:  # ``from axion.config import train`` imports a submodule
                if f"{node.module}.{alias.name}" in modules:
                    found.add(f"{node.module}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in ROOT.rglob("*.py")}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) & modules for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_is_acyclic() -> None:
    graph = import_graph()
    assert "axion.losses" in graph and "axion.masked" in graph["axion.losses"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["axion.masked"] = graph["axion.masked"] | {"axion.losses"}
    assert _cycle(graph) is not None


def _package(module: str) -> str:
    """``axion.training.fit`` -> ``axion.training``; a top-level module stands for itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph folded onto the top-level packages and modules of axion."""
    folded: dict[str, set[str]] = {}
    for module, imported in graph.items():
        folded.setdefault(_package(module), set()).update(_package(name) for name in imported)
    for name in {n for targets in folded.values() for n in targets}:
        folded.setdefault(name, set())
    return folded


def test_no_two_packages_import_each_other() -> None:
    packages = package_graph(import_graph())
    assert {"axion.training", "axion.prediction", "axion.records"} <= set(packages)
    cycle = _cycle(packages)
    assert cycle is None, " -> ".join(cycle or [])


def test_package_cycle_finder_finds_a_planted_cycle() -> None:
    packages = package_graph(import_graph())
    packages["axion.records"] = packages["axion.records"] | {"axion.viz"}
    assert _cycle(packages) is not None
