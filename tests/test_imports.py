"""The package's import graph: no cycles among reindexer's modules, no module importing another's private names.

Read from the source with ast (nothing is imported), so a cycle that only bites in
some import order, or a function-level import that hides one, is still found. An import
under ``if TYPE_CHECKING:`` counts too: it never runs, but a module that needs another's
types to be read is tied to it all the same, and a type-only import running back up is
how the one circle of every module was closed (issue 27).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# adapters/ is installed as reindexer.adapters (pyproject's package-dir)
PACKAGES = {"reindexer": "reindexer", "reindexer.adapters": "adapters"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for prefix, folder in PACKAGES.items():
        folder = root / folder
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return files[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of every node under an ``if TYPE_CHECKING:`` (not its ``else``)."""
    blocks = [b for b in ast.walk(tree) if isinstance(b, ast.If) and _is_type_checking(b.test)]
    return {id(n) for block in blocks for stmt in block.body for n in ast.walk(stmt)}


def imports_of(name: str, files: dict[str, Path], type_checking: bool = True) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each import in module ``name``;
    those under ``if TYPE_CHECKING:`` left out where ``type_checking`` is false."""
    tree = ast.parse(files[name].read_text(), filename=str(files[name]))
    package = name if _is_package(name, files) else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    type_only = set() if type_checking else _type_checking_nodes(tree)
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
                return path[path.index(nxt) :] + [nxt]
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


def import_cycle(root: Path = ROOT) -> list[str] | None:
    """One import cycle among the modules of the checkout at ``root`` (every import counted), or None."""
    graph = import_graph(module_files(root))
    # a package's __init__ importing its own submodules, and a submodule its package, is how
    # packages are made, not a cycle between modules with their own jobs
    for name in graph:
        graph[name] -= _parent_packages(name)
    return find_cycle(graph)


def test_reindexer_modules_import_no_cycle():
    cycle = import_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_type_checking_import_back_up_is_a_cycle(tmp_path):
    # errors.py -> commands.py under TYPE_CHECKING once closed the circle of every module: it counts
    (tmp_path / "adapters").mkdir()
    (tmp_path / "reindexer").mkdir()
    (tmp_path / "adapters" / "__init__.py").write_text("")
    (tmp_path / "reindexer" / "__init__.py").write_text("")
    (tmp_path / "reindexer" / "commands.py").write_text("from reindexer.errors import GateRefusedError\n")
    errors = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from reindexer.commands import ApplyResult\n"
    (tmp_path / "reindexer" / "errors.py").write_text(errors)
    assert import_cycle(tmp_path) == ["reindexer.commands", "reindexer.errors", "reindexer.commands"]
    # and so does an import inside a function
    (tmp_path / "reindexer" / "errors.py").write_text("def f():\n    from reindexer import commands\n")
    assert import_cycle(tmp_path) == ["reindexer.commands", "reindexer.errors", "reindexer.commands"]
    (tmp_path / "reindexer" / "errors.py").write_text("class GateRefusedError(Exception):\n    pass\n")
    assert import_cycle(tmp_path) is None


def test_no_module_imports_another_modules_private_names():
    files = module_files()
    offences = []
    for name in files:
        # as before issue 27: the imports that run (TYPE_CHECKING ones aside)
        for module, imported, line in imports_of(name, files, type_checking=False):
            # a _private module is its package's own: its siblings may use it, nothing outside
            private_module = (
                module.rpartition(".")[2].startswith("_") and module.rpartition(".")[0] != name.rpartition(".")[0]
            )
            if (
                module.startswith("reindexer")
                and module != name
                and ((imported and imported.startswith("_") and not imported.startswith("__")) or private_module)
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
        ("reindexer.y", "_hidden", 1),
        ("reindexer.z", None, 2),
    ]


def test_every_folder_of_python_is_a_package_the_wheel_ships():
    # The editable install (every test) maps whole folders, so a package left out of pyproject's
    # list only breaks a wheel install: reindexer.raydata and the migrations once were.
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = set()
    for prefix, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.parent.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                folders.add(".".join([prefix, *rel.parts]))
    assert folders - listed == set()
