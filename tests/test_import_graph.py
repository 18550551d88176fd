"""The package's import graph: no cycles, and nothing below the CLI imports from it.

The graph is read from the source with ``ast``, so it holds every import, at module level and
inside functions alike (a function-level import only hides a cycle until the function runs).
An edge goes from a module to each ``collabrl`` module it names: ``import a.b``, ``from a.b
import c`` (and ``a.b.c`` when that is a module), relative imports resolved. A package's
``__init__`` is only an edge target when it is named, so ``collabrl/__init__.py``'s lazy
re-exports do not count as imports of every module.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "collabrl"
CLI = "collabrl.cli"
ABOVE_CLI = {"collabrl.cli", "collabrl.__main__"}


def module_files(root: Path = SOURCE) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    anchor = package[: len(package) - node.level + 1]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``module`` imports anywhere in its file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != module}


def import_graph(root: Path = SOURCE) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def is_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of the CLI from a module below it."""
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if not (is_cli(source) or source in ABOVE_CLI)
        for target in targets
        if is_cli(target)
    )


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_below_the_cli_imports_from_it():
    assert upward_imports(import_graph()) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import low\n")
    (package / "sub" / "low.py").write_text("def f():\n    from collabrl.cli import main\n")
    (package / "cli.py").write_text("from .sub.low import f\nimport collabrl.sub\n")
    graph = import_graph(tmp_path)
    assert graph["collabrl.sub"] == {"collabrl.sub.low"}
    assert graph["collabrl.cli"] == {"collabrl.sub.low", "collabrl.sub"}
    assert cycles(graph) == [["collabrl.cli", "collabrl.sub", "collabrl.sub.low"]]
    assert upward_imports(graph) == ["collabrl.sub.low -> collabrl.cli"]
