"""House rule: every verb is one short function, and every CLI command a thin one.

A public function of a verb module of reindexer/commands/ (a verb: its name has
no leading underscore; the package's __init__ only re-exports them, and a module
whose name starts with an underscore holds no verbs) and a click command function
of reindexer/cli.py (decorated with ``@<group>.command(...)``) may have at most
MAX_BODY_LINES lines of body: the lines from the first statement after the
docstring to the function's last line.
The signature and the docstring do not count (they list parameters and say
what the verb does); everything the verb does does. A verb that needs more says
what it does as named steps (small functions or methods), which a newcomer reads
as the list of what it does.

Nothing is left out silently: a function allowed to be longer is listed in
LONGER, by name, with the reason.

Read from the source with ast (nothing is imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY_LINES = 40

#: "file:function" -> why it may be longer than MAX_BODY_LINES. Empty: none is.
LONGER: dict[str, str] = {}


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of ``fn``."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) and len(body) > 1:
        body = body[1:]
    assert fn.end_lineno is not None
    return fn.end_lineno - body[0].lineno + 1


def _tree(rel: str) -> ast.Module:
    path = ROOT / rel
    return ast.parse(path.read_text(), filename=str(path))


def verb_modules() -> list[str]:
    """The verb modules of reindexer/commands/, relative to the repository (not __init__, not _private ones)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "reindexer" / "commands").glob("*.py")
                  if not p.name.startswith("_"))


def _public_functions(rel: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in _tree(rel).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]


def verbs() -> dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Each verb module's public module-level functions, by module."""
    return {rel: _public_functions(rel) for rel in verb_modules()}


def _is_command_decorator(d: ast.expr) -> bool:
    call = d.func if isinstance(d, ast.Call) else d
    return isinstance(call, ast.Attribute) and call.attr == "command"


def cli_commands() -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """cli.py's functions decorated as click commands (``@cli.command``, ``@model.command`` ...)."""
    return [n for n in _tree("reindexer/cli.py").body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(_is_command_decorator(d) for d in n.decorator_list)]


def _too_long(rel: str, functions) -> list[str]:
    return [f"{rel}:{fn.name} has {body_lines(fn)} lines of body (at most {MAX_BODY_LINES})"
            for fn in functions if body_lines(fn) > MAX_BODY_LINES and f"{rel}:{fn.name}" not in LONGER]


def test_every_verb_in_the_command_layer_is_short():
    found = verbs()
    assert {"plan", "apply", "cutover", "rollback", "migrate", "adopt", "evaluate"} <= {
        f.name for functions in found.values() for f in functions}
    assert [line for rel, functions in found.items() for line in _too_long(rel, functions)] == []


def test_every_cli_command_is_short():
    found = cli_commands()
    assert {"apply_cmd", "eval_cmd", "plan_cmd", "rollback_cmd"} <= {f.name for f in found}
    assert _too_long("reindexer/cli.py", found) == []


def test_every_listed_exception_still_exists_and_is_still_long():
    # an entry outlives its reason when the function is gone or has become short
    functions = {f"{rel}:{f.name}": f for rel, found in verbs().items() for f in found}
    functions |= {f"reindexer/cli.py:{f.name}": f for f in cli_commands()}
    stale = [name for name in LONGER if name not in functions or body_lines(functions[name]) <= MAX_BODY_LINES]
    assert stale == []


def test_the_count_skips_the_docstring_and_sees_a_long_body():
    source = 'def f(\n    a,\n    b,\n):\n    """Doc.\n\n    More.\n    """\n    x = 1\n' + "    x += 1\n" * 40
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert body_lines(fn) == 41
    assert _too_long("x.py", [fn]) == ["x.py:f has 41 lines of body (at most 40)"]
    (short,) = ast.parse('def g():\n    """Only a docstring."""\n').body
    assert isinstance(short, ast.FunctionDef) and body_lines(short) == 1
