"""The package's import graph: no cycles among reindexer's modules, no module importing another's private names.

Read from the source with ast (nothing is imported), so a cycle that only bites in
some import order, or a function-level import that hides one, is still found.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# adapters/ is installed as reindexer.adapters (pyproject's package-dir)
PACKAGES = {"reindexer": ROOT / "reindexer", "reindexer.adapters": ROOT / "adapters"}


def module_files() -> dict[str, Path]:
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return files[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, files: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each import in module ``name``."""
    tree = ast.parse(files[name].read_text(), filename=str(files[name]))
    package = name if _is_package(name, files) else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    # imports under `if TYPE_CHECKING:` never run, so they make no cycle (annotations only)
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                if submodule in files:  # `from reindexer import commands` imports a module
                    out.append((submodule, None, node.lineno))
                else:
                    out.append((module, alias.name, node.lineno))
    return out


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name in files:
        for module, _, _ in imports_of(name, files):
            if module in files and module != name:
                graph[name].add(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _parent_packages(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_reindexer_modules_import_no_cycle():
    files = module_files()
    graph = import_graph(files)
    # a package's __init__ importing its own submodules, and a submodule its package, is how
    # packages are made, not a cycle between modules with their own jobs
    for name in graph:
        graph[name] -= _parent_packages(name)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_another_modules_private_names():
    files = module_files()
    offences = []
    for name in files:
        for module, imported, line in imports_of(name, files):
            # a _private module is its package's own: its siblings may use it, nothing outside
            private_module = module.rpartition(".")[2].startswith("_") and \
                module.rpartition(".")[0] != name.rpartition(".")[0]
            if module.startswith("reindexer") and module != name and (
                (imported and imported.startswith("_") and not imported.startswith("__")) or private_module
            ):
                offences.append(f"{files[name].relative_to(ROOT)}:{line} imports {module}:{imported}")
    assert offences == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path):
    # the graph walk must find what it is for: a two-module cycle and a deeper one
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    (tmp_path / "x.py").write_text("from reindexer.y import _hidden\nimport reindexer.z\n")
    assert imports_of("reindexer.x", {"reindexer.x": tmp_path / "x.py"}) == [
        ("reindexer.y", "_hidden", 1), ("reindexer.z", None, 2)]


def test_every_folder_of_python_is_a_package_the_wheel_ships():
    # The editable install (every test) maps whole folders, so a package left out of pyproject's
    # list only breaks a wheel install: reindexer.raydata and the migrations once were.
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = set()
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.parent.relative_to(folder)
            if "__pycache__" not in rel.parts:
                folders.add(".".join([prefix, *rel.parts]))
    assert folders - listed == set()
