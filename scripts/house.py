"""Measure the house: module sizes, the longest functions, import circles and floors, and apply's plan walk.

    python scripts/house.py [--root DIR] [--json]

Reads a checkout's source with ast and imports nothing of it, so it measures any commit
(``git archive REV | tar -x -C DIR``). Modules: the ``.py`` files of ``reindexer/`` and ``adapters/``
(installed as ``reindexer.adapters``); tests and benchmarks are not measured. The measures, exactly:

sizes     Lines per module (``len(text.splitlines())``, as ``wc -l``), largest first. ``over_600``: the
          modules of ``reindexer/`` over 600 lines, ``reindexer/demo_corpus.py`` (demo data) aside.
longest   The 15 longest functions and methods, nested ones included (``file:Class.method``,
          ``file:outer.inner``): lines from the ``def`` line to the body's last (decorators not counted).
circles   The import graph has an edge A -> B for EVERY import in A of a measured module B: module
          level, in functions, under ``if TYPE_CHECKING:``. ``from P import n`` is an edge to ``P.n``
          where that is a module, else to ``P``. Edges to a module's own parent packages are left out
          (a submodule importing its package is how packages are made), as in tests/test_imports.py.
          A circle is a strongly connected component of more than one module; ``path`` is a shortest
          cycle through its first module by name. ``runtime_circles``: the same without TYPE_CHECKING imports.
floors    Circles condensed to one node each, a module's floor is its node's height in that DAG: 0 where
          it imports no measured module, else 1 + the highest floor it imports (a circle shares one
          floor). ``runtime_floors``: the same over the imports that run (TYPE_CHECKING ones left out).
walk      apply's plan walk. It starts in the function ``apply`` of ``reindexer/commands.py`` (or of the
          module of ``reindexer/commands/`` defining it) with its parameter ``plan`` tracked, and reads each
          entered body in evaluation order (a call's arguments before the call, an assignment's value
          before its targets). Tracked are dotted paths: ``plan`` and all reached from it (``plan.id``,
          ``plan.to_version["dim"]``); a name assigned from a tracked expression (``=``, ``:=``, ``for``,
          tuples item by item) is tracked too. A call enters its callee when an argument is tracked; the
          parameter it binds to (by position with ``self``/``cls`` skipped, by keyword, else ``*args`` or
          ``**kwargs``) is then the callee's tracked value. Callees resolve through the module's imports
          (its own and the function's: ``from x import f``, ``import x`` then ``x.f``, re-exports
          followed) to functions, ``Class.method``, ``self.method``, and methods of a name whose class is
          known (a parameter's annotation, or built here). A class called enters its own ``__init__``
          (else its ``__post_init__``, if any); the object built carries the value as the field it went
          into (a dataclass field, or ``self.F = ...`` in ``__init__``): ``build = _ShadowBuild(ws, plan)``
          tracks ``build.plan``. Passing a carrier passes what it carries (``build`` -> ``param.plan``);
          calling its method enters the method with ``self.plan`` tracked. Return values are not
          followed. Each (function, tracked paths) is entered once. ``sequence``: the module of each
          function entered and the caller's module again on each return, consecutive repeats merged;
          ``moves``: its module changes (len - 1); ``climbs``: moves to a higher floor (``runtime_climbs``
          by runtime floors; ``call_climbs``: those not a return); ``passes``: each module's count in it.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import deque
from pathlib import Path

PACKAGES = {"reindexer": "reindexer", "reindexer.adapters": "adapters"}
DEMO_DATA = "reindexer/demo_corpus.py"
HOUSE_LIMIT = 600
FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)
Found = tuple[str, "ast.AST | None"]  # (module, its definition of a name; None for the module itself)


class Modules:
    """The parsed modules of a checkout: files, imports, top-level names and the import graph."""

    def __init__(self, root: Path):
        self.root, self.files = root, {}
        for prefix, folder in PACKAGES.items():
            for path in sorted((root / folder).rglob("*.py")):
                parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
                self.files[".".join([prefix, *parts])] = path
        self.trees = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in self.files.items()}

    def rel(self, name: str) -> str:
        return self.files[name].relative_to(self.root).as_posix()

    def bindings(self, name: str, node: ast.AST) -> dict[str, tuple[str, str | None]]:
        """Local name -> (module, imported name; None where a module is imported) for the imports in ``node``."""
        package = name if self.files[name].name == "__init__.py" else name.rpartition(".")[0]
        out: dict[str, tuple[str, str | None]] = {}
        for imp in ast.walk(node):
            if isinstance(imp, ast.Import):
                out |= {a.asname or a.name.split(".")[0]: (a.name if a.asname else a.name.split(".")[0], None)
                        for a in imp.names}  # fmt: skip
            elif isinstance(imp, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) + 1 - imp.level] if imp.level else []
                module = ".".join(base + ([imp.module] if imp.module else []))
                for a in imp.names:
                    sub = f"{module}.{a.name}"
                    out[a.asname or a.name] = (sub, None) if sub in self.files else (module, a.name)
        return out

    def graph(self, type_checking: bool = True) -> dict[str, set[str]]:
        """Module -> the measured modules it imports (``circles`` in the module docstring)."""
        graph = {}
        for name, tree in self.trees.items():
            skip = set() if type_checking else _type_checking_only(tree)
            imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
            targets = {a.name for n in imports if isinstance(n, ast.Import) for a in n.names}
            targets |= {m for n in imports if isinstance(n, ast.ImportFrom) for m, _ in self.bindings(name, n).values()}
            parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
            graph[name] = {t for t in targets if t in self.files and t != name and t not in parents}
        return graph

    def top_level(self, name: str) -> dict[str, ast.AST]:
        return {n.name: n for n in self.trees[name].body if isinstance(n, (*FUNC, ast.ClassDef))}

    def namespace(self, name: str) -> dict[str, tuple[str, str | None]]:
        """A module's top-level names: its imports outside functions and classes, and its own definitions."""
        outside = ast.Module([s for s in self.trees[name].body if not isinstance(s, (*FUNC, ast.ClassDef))], [])
        return {**self.bindings(name, outside), **{own: (name, own) for own in self.top_level(name)}}

    def symbol(self, module: str, name: str | None, depth: int = 0) -> Found | None:
        """Where ``module``'s ``name`` is defined, re-exports followed; None outside the measured modules."""
        if name is None or f"{module}.{name}" in self.files:
            return (module if name is None else f"{module}.{name}", None) if module in self.files else None
        if module not in self.files or depth > 10:
            return None
        if name in (local := self.top_level(module)):
            return module, local[name]
        target, orig = self.namespace(module).get(name, (None, None))
        return self.symbol(target, orig, depth + 1) if target else None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    blocks = [b for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.unparse(b.test)]
    return {id(n) for b in blocks for s in b.body for n in ast.walk(s)}


def circles_and_floors(graph: dict[str, set[str]]) -> tuple[list[list[str]], dict[str, int]]:
    """The strongly connected components (Tarjan) of more than one module, and each module's floor."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    comps: list[list[str]] = []  # each after every component it reaches

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = [stack.pop()]
            while comp[-1] != v:
                comp.append(stack.pop())
            comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    comp_of = {m: i for i, c in enumerate(comps) for m in c}
    height: list[int] = []
    for i, comp in enumerate(comps):
        below = {comp_of[w] for v in comp for w in graph[v]} - {i}
        height.append(1 + max((height[j] for j in below), default=-1))
    return [c for c in comps if len(c) > 1], {m: height[comp_of[m]] for m in graph}


def shortest_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through ``comp[0]`` inside its component, as a path that ends where it starts."""
    start, came = comp[0], {comp[0]: ""}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & set(comp)):
            if w == start:
                path = [v]
                while came[path[-1]]:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w not in came:
                came[w] = v
                queue.append(w)
    return [start]


def longest_functions(mods: Modules, count: int = 15) -> dict[str, int]:
    found = []

    def visit(node: ast.AST, prefix: str, rel: str) -> None:
        for child in ast.iter_child_nodes(node):
            named = isinstance(child, (*FUNC, ast.ClassDef))
            if isinstance(child, FUNC):
                found.append((f"{rel}:{prefix}{child.name}", child.end_lineno - child.lineno + 1))  # type: ignore[operator]
            visit(child, f"{prefix}{child.name}." if named else prefix, rel)  # type: ignore[attr-defined]

    for name, tree in mods.trees.items():
        visit(tree, "", mods.rel(name))
    return dict(sorted(found, key=lambda f: (-f[1], f[0]))[:count])


def _path(expr: ast.AST | None) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    base = _path(expr.value) if isinstance(expr, ast.Attribute) else None
    return f"{base}.{expr.attr}" if base else None  # type: ignore[union-attr]


def _carried(expr: ast.AST | None, tracked: set[str], new: str) -> set[str]:
    """What ``expr`` carries, renamed as reached from ``new``: {new} where it is tracked or reached from a
    tracked path (``plan.id``, ``plan.to_version["dim"]``), {new.F} where it carries the value as its F."""
    if isinstance(expr, (ast.Subscript, ast.Starred)):
        return {new} if _carried(expr.value, tracked, new) == {new} else set()
    if (p := _path(expr)) is None:
        return set()
    if any(p == t or p.startswith(t + ".") for t in tracked):
        return {new}
    return {new + t[len(p) :] for t in tracked if t.startswith(p + ".")}


def _params(fn: ast.AST, skip_first: bool) -> list[str]:
    names = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]  # type: ignore[attr-defined]
    return names[1:] if skip_first else names


class Walk(ast.NodeVisitor):
    """One entered function's body, read for the tracked value (``walk`` in the module docstring)."""

    def __init__(self, walker: PlanWalk, module: str, cls: ast.ClassDef | None, fn: ast.AST, tracked: set[str]):
        self.w, self.module, self.cls, self.tracked = walker, module, cls, set(tracked)
        self.names = {**walker.mods.namespace(module), **walker.mods.bindings(module, fn)}  # the function's own win
        self.built: dict[int, tuple[set[str], tuple[str, ast.ClassDef]]] = {}  # call -> (fields carried, class)
        self.kinds: dict[str, tuple[str, ast.ClassDef]] = {}  # name -> (module, class) of its value
        for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:  # type: ignore[attr-defined]
            if a.annotation is not None and (kind := self.annotated_class(a.annotation)):
                self.kinds[a.arg] = kind
        for stmt in fn.body:  # type: ignore[attr-defined]
            self.visit(stmt)

    def annotated_class(self, annotation: ast.expr) -> tuple[str, ast.ClassDef] | None:
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        for node in ast.walk(annotation):
            found = self.lookup(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
            if found and isinstance(found[1], ast.ClassDef):
                return found[0], found[1]
        return None

    def lookup(self, expr: ast.AST) -> Found | None:
        """Where a name or dotted name (``x.f``, ``pkg.mod.f``) is defined."""
        first, *rest = (_path(expr) or "").split(".")
        found = self.w.mods.symbol(*self.names[first]) if first in self.names else None
        for part in rest:
            found = self.w.mods.symbol(found[0], part) if found and found[1] is None else None
        return found

    def assign(self, target: ast.AST, value: ast.AST | None) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [None] * len(target.elts)
            for t, v in zip(target.elts, values, strict=False):
                self.assign(t, v)
        elif isinstance(target, ast.Name):
            name, carried = target.id, _carried(value, self.tracked, target.id)
            self.tracked = {t for t in self.tracked if t != name and not t.startswith(name + ".")} | carried
            self.kinds.pop(name, None)
            if id(value) in self.built:
                fields, self.kinds[name] = self.built[id(value)]
                self.tracked |= {name + f for f in fields}

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.assign(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.assign(node.target, node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.assign(node.target, node.value)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        if _carried(node.iter, self.tracked, "") == {""}:
            self.tracked |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)  # its arguments, and the calls inside them, come first
        if (callee := self.resolve(node.func)) is None:
            return
        module, cls, fn, skip_first = callee
        if isinstance(fn, ast.ClassDef):
            return self.construct(node, module, fn)
        entry = self.bind(node, _params(fn, skip_first), fn)
        if skip_first and isinstance(node.func, ast.Attribute):  # the receiver is the callee's self
            entry |= _carried(node.func.value, self.tracked, "self")
        if entry:
            self.w.enter(module, cls, fn, entry, self.module)

    def bind(self, node: ast.Call, params: list[str], fn: ast.AST) -> set[str]:
        """The callee's tracked paths: what each argument carries, under the parameter it binds to."""
        args = fn.args  # type: ignore[attr-defined]
        named = params + [a.arg for a in args.kwonlyargs]
        pairs = [(params[i] if i < len(params) else getattr(args.vararg, "arg", None), a) for i, a in
                 enumerate(node.args)] + [(k.arg if k.arg in named else getattr(args.kwarg, "arg", None), k.value)
                                          for k in node.keywords]  # fmt: skip
        return {c for name, arg in pairs if name for c in _carried(arg, self.tracked, name)}

    def construct(self, node: ast.Call, module: str, cls: ast.ClassDef) -> None:
        """A class called: enter its __init__ (or __post_init__), and note the fields that carry the value."""
        methods = {n.name: n for n in cls.body if isinstance(n, FUNC)}
        if (init := methods.get("__init__")) is None:  # a dataclass: the arguments are its fields
            fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
            pairs = [*zip(fields, node.args, strict=False), *((k.arg, k.value) for k in node.keywords)]
            carried = {"." + c for name, arg in pairs if name in fields for c in _carried(arg, self.tracked, name)}
            if carried and (post := methods.get("__post_init__")):
                self.w.enter(module, cls, post, {"self" + c for c in carried}, self.module)
        else:
            entry = self.bind(node, _params(init, True), init)
            stored = [(_path(s.targets[0]) or "", s.value) for s in ast.walk(init) if isinstance(s, ast.Assign)]
            carried = {f[4:] + c for f, value in stored if f.startswith("self.") for c in _carried(value, entry, "")}
            if entry:
                self.w.enter(module, cls, init, entry, self.module)
        if carried:
            self.built[id(node)] = (carried, (module, cls))

    def resolve(self, func: ast.AST) -> tuple[str, ast.ClassDef | None, ast.AST, bool] | None:
        """(module, class, function or class called, whether its first parameter is bound) for a callee."""
        if isinstance(func, ast.Attribute):
            receiver = _path(func.value)
            if receiver == "self" and self.cls is not None:
                return self.w.method(self.module, self.cls, func.attr, True)
            if receiver in self.kinds:
                return self.w.method(*self.kinds[receiver], func.attr, True)
            if (owner := self.lookup(func.value)) and isinstance(owner[1], ast.ClassDef):
                return self.w.method(owner[0], owner[1], func.attr, False)
        found = self.lookup(func)
        return (found[0], None, found[1], False) if found and found[1] is not None else None


class PlanWalk:
    def __init__(self, mods: Modules):
        self.mods, self.visited = mods, set()
        self.sequence: list[tuple[str, str]] = []  # (module, the function entered there, or "(return)")

    def method(self, module: str, cls: ast.ClassDef, name: str, on_instance: bool):
        for node in cls.body:
            if isinstance(node, FUNC) and node.name == name:
                kinds = {_path(d) for d in node.decorator_list}
                return module, cls, node, "classmethod" in kinds or on_instance and "staticmethod" not in kinds
        return None

    def note(self, module: str, where: str) -> None:
        if not self.sequence or self.sequence[-1][0] != module:
            self.sequence.append((module, where))

    def enter(self, module: str, cls: ast.ClassDef | None, fn: ast.AST, tracked: set[str], caller: str) -> None:
        qual = f"{cls.name}.{fn.name}" if cls else fn.name  # type: ignore[attr-defined]
        if (module, qual, frozenset(tracked)) not in self.visited:
            self.visited.add((module, qual, frozenset(tracked)))
            self.note(module, f"{qual}({', '.join(sorted(tracked))})")
            Walk(self, module, cls, fn, tracked)
            self.note(caller, "(return)")


def plan_walk(mods: Modules, floor: dict[str, int], runtime_floor: dict[str, int]) -> dict:
    verbs = [m for m in sorted(mods.files) if m == "reindexer.commands" or m.startswith("reindexer.commands.")]
    start = next((m for m in verbs if isinstance(mods.top_level(m).get("apply"), FUNC)), None)
    if start is None:
        return {"error": "no function apply in reindexer/commands"}
    walker = PlanWalk(mods)
    walker.enter(start, None, mods.top_level(start)["apply"], {"plan"}, start)
    seq, via = [m for m, _ in walker.sequence], [w for _, w in walker.sequence]
    moves = [(a, b, v) for a, b, v in zip(seq, seq[1:], via[1:], strict=False)]
    return {
        "start": f"{mods.rel(start)}:apply",
        "sequence": seq,
        "entered_by": via,
        "modules": len(set(seq)),
        "moves": len(moves),
        "climbs": sum(floor[b] > floor[a] for a, b, _ in moves),
        "runtime_climbs": sum(runtime_floor[b] > runtime_floor[a] for a, b, _ in moves),
        "call_climbs": sum(floor[b] > floor[a] for a, b, v in moves if v != "(return)"),
        "passes": {m: seq.count(m) for m in sorted(set(seq), key=lambda m: (-seq.count(m), m))},
    }


def measure(root: Path) -> dict:
    mods = Modules(root)
    sizes = sorted(((mods.rel(m), len(p.read_text().splitlines())) for m, p in mods.files.items()),
                   key=lambda s: (-s[1], s[0]))  # fmt: skip
    graph, runtime = mods.graph(), mods.graph(type_checking=False)
    (circles, floor), (runtime_circles, runtime_floor) = circles_and_floors(graph), circles_and_floors(runtime)
    return {
        "root": str(root),
        "modules": len(sizes),
        "lines": sum(n for _, n in sizes),
        "sizes": dict(sizes),
        "over_600": [f for f, n in sizes if n > HOUSE_LIMIT and f.startswith("reindexer/") and f != DEMO_DATA],
        "longest": longest_functions(mods),
        "circles": [{"size": len(c), "modules": c, "path": shortest_cycle(graph, c)} for c in circles],
        "runtime_circles": [{"size": len(c), "path": shortest_cycle(runtime, c)} for c in runtime_circles],
        "floors": floor,
        "runtime_floors": runtime_floor,
        "walk": plan_walk(mods, floor, runtime_floor),
    }


def report(m: dict) -> str:
    def short(module: str) -> str:
        return module.removeprefix("reindexer.")

    out = [f"house of {m['root']}: {m['modules']} modules, {m['lines']} lines", "", "largest modules (lines):"]
    out += [f"  {n:6d}  {f}" for f, n in list(m["sizes"].items())[:20]]
    out += [f"over {HOUSE_LIMIT} lines in reindexer/, demo data aside: {len(m['over_600'])}  {' '.join(m['over_600'])}"]
    out += ["", "longest functions (lines):"] + [f"  {n:6d}  {f}" for f, n in m["longest"].items()]
    for key, label in (("circles", "every import"), ("runtime_circles", "TYPE_CHECKING imports aside")):
        out += ["", f"import circles, {label}: {len(m[key])}"]
        out += [f"  {c['size']} modules, e.g. {' -> '.join(map(short, c['path']))}" for c in m[key]]
    top = max(m["floors"].values(), default=0)
    out += ["", f"floors, every import ({top + 1}, top first):"]
    by_floor = sorted(m["floors"].items())
    out += [f"  {f:2d}: " + " ".join(short(x) for x, g in by_floor if g == f) for f in range(top, -1, -1)]
    if "error" in (w := m["walk"]):
        return "\n".join([*out, "", f"apply's plan walk: {w['error']}"])
    out += ["", f"apply's plan walk from {w['start']}: {w['modules']} modules, {w['moves']} moves, {w['climbs']} climbs"
            f" ({w['call_climbs']} by a call, not a return; {w['runtime_climbs']} by runtime floors)",
            f"  {'module':28s} floor (runtime)  entered by"]  # fmt: skip
    out += [f"  {short(mod):28s} {m['floors'][mod]:2d} ({m['runtime_floors'][mod]:2d})       {via}"
            for mod, via in zip(w["sequence"], w["entered_by"], strict=True)]  # fmt: skip
    return "\n".join([*out, "  passes: " + ", ".join(f"{short(mod)} {n}" for mod, n in w["passes"].items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout")
    parser.add_argument("--json", action="store_true", help="print the measures as JSON")
    args = parser.parse_args()
    sys.setrecursionlimit(10_000)  # deep call chains and the graph walk recurse
    measured = measure(args.root.resolve())
    print(json.dumps(measured, indent=2) if args.json else report(measured))


if __name__ == "__main__":
    main()
