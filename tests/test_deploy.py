"""The deployment files in deploy/: they parse, have the structure they promise, hold no literal
secrets, and every `reindex ...` they run or document exists in the CLI.

The last point is the one that matters over time: each `reindex` argv goes through click's own
parser over `reindexer.cli.cli` (verbs, options, arguments, flags, value types), so a renamed option
or verb fails this file instead of failing a CronJob at 3 a.m. Each format is read by a library
that knows it: shell by bashlex (commands in pipelines, lists, subshells and substitutions),
Dockerfiles by dockerfile-parse, crontabs by python-crontab, Markdown by markdown-it, YAML by
PyYAML with yamllint's comment tokens, systemd units by configparser. Invocations are collected
from Kubernetes container command/args (shell wrappers included), compose `command`, Dockerfile
ENTRYPOINT/CMD/RUN, systemd Exec* lines, crontab entries, workflow `run` steps, the code blocks
and `inline code` of deploy/README.md, and command lines quoted in comments.

Formats are checked by their own tools in tests/test_deploy_tools.py (kubernetes-validate,
hadolint, systemd-analyze, yamllint). Fast and offline: no Docker, no cluster, no network.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bashlex
import click
import pytest
import tomllib
import yaml
from click.core import ParameterSource
from crontab import CronTab
from dockerfile_parse import DockerfileParser
from markdown_it import MarkdownIt
from yamllint.parser import Comment, token_or_comment_generator

from reindexer.cli import cli as REINDEX_CLI

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


# =================================================================================================
# The checker: one argv through click's parser of the CLI
# =================================================================================================


def _is_dynamic(value: str) -> bool:
    return "$" in value or "{{" in value


class _AsWritten(click.ParamType):
    """A parameter's own type checks each literal value; $VARS pass, since they are filled in when
    the file runs. The value stays the text the file holds."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner, self.name = inner, inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not _is_dynamic(value):
            self.inner.convert(value, param, ctx)
        return value


def _commands(command: click.Command) -> Iterator[click.Command]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


@contextmanager
def _values_as_written(root: click.Group) -> Iterator[None]:
    params = [p for c in _commands(root) for p in c.params
              if not (isinstance(p, click.Option) and (p.is_flag or p.count))]
    types = [p.type for p in params]
    for p in params:
        p.type = _AsWritten(p.type)
    try:
        yield
    finally:
        for p, t in zip(params, types, strict=False):
            p.type = t


@dataclass
class ParsedInvocation:
    """An argv as click parsed it: which command, every parameter's value, the problems click saw."""

    argv: list[str]
    command: tuple[str, ...] = ()  # ("sync",), ("model", "register"), ("config", "show")
    values: dict[str, Any] = field(default_factory=dict)  # by parameter name, defaults included
    arguments: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    eager: bool = False  # --help or --version: click stops there

    @property
    def ok(self) -> bool:
        return not self.problems

    def value(self, name: str) -> Any:
        return self.values.get(name)

    def record(self, ctx: click.Context) -> None:
        self.values.update(ctx.params)
        for param in ctx.command.params:  # a global option after the verb: hidden, unexposed, same meaning
            if not param.expose_value and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
                self.values[{"json": "as_json"}.get(param.name, param.name)] = True


def parse_invocation(argv: Sequence[str], root: click.Group = REINDEX_CLI) -> ParsedInvocation:
    """Parse ``argv`` (``["reindex", ...]``) with click, as running it would, up to the callback."""
    inv = ParsedInvocation(list(argv))
    try:
        with _values_as_written(root):
            ctx = root.make_context("reindex", inv.argv[1:])
            inv.record(ctx)
            while isinstance(ctx.command, click.Group):
                # the rest of the argv, as click.Group.invoke hands it on
                name, sub, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
                ctx = sub.make_context(name, rest, parent=ctx)
                inv.command += (name,)
                inv.record(ctx)
    except click.exceptions.Exit:
        inv.eager = True
    except click.exceptions.NoArgsIsHelpError as exc:
        inv.problems.append(f"{exc.ctx.command_path if exc.ctx else 'reindex'}: no command given")
    except click.UsageError as exc:
        inv.problems.append(f"{exc.ctx.command_path if exc.ctx else 'reindex'}: {exc.format_message()}")
    else:
        args = [p for p in ctx.command.params if isinstance(p, click.Argument)]
        inv.arguments = [v for p in args for v in (ctx.params[p.name] if p.nargs != 1 else [ctx.params[p.name]])
                         if v is not None]
        gate = inv.value("gate")
        if isinstance(gate, str) and not _is_dynamic(gate):
            inv.problems.extend(_gate_problems(gate))
    return inv


def _gate_problems(value: str) -> list[str]:
    from reindexer.errors import UsageError
    from reindexer.evaluation import Gate

    try:
        Gate.parse(value)
    except UsageError as exc:  # with the grammar in its hint
        return [f"invalid gate {value!r}: {exc.message}"]
    return []


# Rules the commands enforce in their own code (UsageError, exit 2), not in click's declarations.
# Mirrored here because a deploy file breaking them fails just the same; keep them few.
def _apply_rules(inv: ParsedInvocation) -> list[str]:
    problems = []
    if bool(inv.arguments) == bool(inv.value("resume_collection")):
        problems.append("reindex apply: pass a plan file, or --resume COLLECTION")
    if bool(inv.value("queries")) != bool(inv.value("qrels")):
        problems.append("reindex apply: --queries and --qrels go together")
    return problems


def _eval_rules(inv: ParsedInvocation) -> list[str]:
    if inv.value("log"):
        if not (inv.value("queries") or inv.value("qrels")):
            return []
        return ["reindex eval: --log takes no --queries/--qrels"]
    if not (inv.value("queries") and inv.value("qrels")):
        return ["reindex eval: pass --queries and --qrels (judged), or --log (label-free)"]
    return []


def _plan_rules(inv: ParsedInvocation) -> list[str]:
    if inv.value("model_path") and inv.value("model_ref"):
        return ["reindex plan: pass either --model or --model-ref, not both"]
    return []


RUNTIME_RULES = {("apply",): _apply_rules, ("eval",): _eval_rules, ("plan",): _plan_rules}


def check_invocation(argv: Sequence[str], root: click.Group = REINDEX_CLI) -> list[str]:
    """Problems of one `reindex ...` argv against the CLI; empty when it would be accepted."""
    inv = parse_invocation(argv, root)
    rule = RUNTIME_RULES.get(inv.command)
    if inv.ok and rule and not inv.eager:
        return rule(inv)
    return inv.problems


def needs_yes(inv: ParsedInvocation) -> bool:
    """Would this invocation stop for confirmation (exit 2 without a terminal) unless --yes?"""
    if inv.command in (("cutover",), ("rollback",), ("gc",)):
        return True
    return inv.command == ("apply",) and inv.value("cutover") is not False


# =================================================================================================
# Finding invocations: shell text, then each kind of deploy file
# =================================================================================================

_REINDEX_IMAGE = re.compile(r"(^|/)reindexer(:[\w.-]+)?(@sha256:[0-9a-f]+)?$")
# Compose services built from deploy/Dockerfile* (their entrypoint is `reindex`); filled in below.
COMPOSE_TOOL_SERVICES: set[str] = set()
_DOCKER_VALUE_OPTS = {
    "-e", "--env", "-v", "--volume", "-w", "--workdir", "-u", "--user", "--name", "-p", "--publish",
    "--gpus", "--network", "--net", "--env-file", "--mount", "-l", "--label", "--platform", "-m",
    "--memory", "--cpus", "--shm-size", "--runtime", "--device", "--entrypoint", "-f", "--file",
    "--project-name", "--profile", "--project-directory", "--pull",
}


def _after_docker_options(words: list[str], start: int) -> tuple[int, bool]:
    """Index of the first non-option word from ``start``; whether --entrypoint was overridden."""
    i, entrypoint = start, False
    while i < len(words) and words[i].startswith("-"):
        name = words[i].split("=", 1)[0]
        entrypoint |= name == "--entrypoint"
        i += 2 if (name in _DOCKER_VALUE_OPTS and "=" not in words[i]) else 1
    return i, entrypoint


def _invocation_in_words(words: list[str]) -> list[str] | None:
    """The `reindex` argv in one simple command: direct, behind a wrapper (flock, env), or via docker/compose run."""
    if words[:1] in (["docker"], ["podman"], ["docker-compose"]):
        rest = words[1:] if words[0] != "docker-compose" else ["compose", *words[1:]]
        if rest[:1] == ["compose"]:
            j, _ = _after_docker_options(rest, 1)
            if rest[j:j + 1] != ["run"]:
                return None
            k, entrypoint = _after_docker_options(rest, j + 1)
            if k < len(rest) and rest[k] in COMPOSE_TOOL_SERVICES and not entrypoint:
                return ["reindex", *rest[k + 1:]]
            return None
        if rest[:1] == ["run"] or rest[:2] == ["container", "run"]:
            k, entrypoint = _after_docker_options(rest, 1 if rest[0] == "run" else 2)
            if k < len(rest) and _REINDEX_IMAGE.search(rest[k]) and not entrypoint:
                return ["reindex", *rest[k + 1:]]
        return None
    for j, w in enumerate(words):
        if w == "reindex" or w.endswith("/bin/reindex"):
            return ["reindex", *words[j + 1:]]
    return None


class _SimpleCommands(bashlex.ast.nodevisitor):
    """The words of every simple command, nested ones ($(...), subshells) included; no redirections."""

    def __init__(self) -> None:
        self.words: list[list[str]] = []

    def visitcommand(self, node: Any, parts: list[Any]) -> bool:
        self.words.append([p.word for p in parts if p.kind == "word"])
        return True


def invocations_in_shell(script: str) -> list[list[str]]:
    """Every `reindex ...` argv in a piece of shell."""
    visitor = _SimpleCommands()
    for tree in bashlex.parse(script) if script.strip() else []:
        visitor.visit(tree)
    return [argv for words in visitor.words if (argv := _invocation_in_words(words))]


@dataclass
class Found:
    where: str
    argv: list[str]
    executed: bool  # run by the file (True) or only shown in its comments/docs (False)


def _span_invocations(where: str, text: str) -> Iterator[Found]:
    try:
        argvs = invocations_in_shell(text.removeprefix("$ "))
    except bashlex.errors.ParsingError:
        return  # prose or a fragment in backticks, not a command line
    for argv in argvs:
        if len(argv) > 1:  # a bare `reindex` in prose names the tool
            yield Found(where, argv, executed=False)


def _commented_commands(rel: str, comments: Iterable[tuple[int, str]]) -> Iterator[Found]:
    """Command lines quoted in comments: `reindex ...` spans, and comment lines that start with a
    reindex or docker command (continuation lines joined). ``comments``: (line, text after #)."""
    pending: tuple[int, str] | None = None
    for lineno, body in comments:
        body = body.strip()
        for span in re.findall(r"`([^`]+)`", body):
            yield from _span_invocations(f"{rel}:{lineno} (comment)", span)
        if pending is None and re.match(r"(\$ )?(reindex|/\S*/bin/reindex|docker|podman)\s", body):
            pending = (lineno, "")
        if pending is not None:
            start, acc = pending[0], pending[1] + " " + body.removesuffix("\\")
            pending = (start, acc) if body.endswith("\\") else None
            if pending is None:
                yield from _span_invocations(f"{rel}:{start} (comment)", acc.strip())


def _hash_comments(text: str) -> list[tuple[int, str]]:
    """Whole-line # comments of the line-based formats: systemd units, crontabs, env and TOML files."""
    return [(n, line.strip()[1:]) for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("#")]


def _shell_command(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value or []]


def _container_argvs(cmd: list[str], args: list[str], image: str) -> list[list[str]]:
    if cmd:
        argv = cmd + args
        if Path(argv[0]).name in ("sh", "bash", "dash", "ash"):
            for k, word in enumerate(argv[1:], 1):
                if re.fullmatch(r"-[a-z]*c[a-z]*", word) and k + 1 < len(argv):
                    return invocations_in_shell(argv[k + 1])
            return []
        return [argv] if (argv[0] == "reindex" or argv[0].endswith("/bin/reindex")) else []
    if args and _REINDEX_IMAGE.search(image.split("@")[0]):
        return [["reindex", *args]]  # the image's ENTRYPOINT is reindex
    return []


def _k8s_containers(node: Any, trail: str) -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        for key in ("initContainers", "containers"):
            for c in node.get(key) or []:
                if isinstance(c, dict):
                    yield f"{trail}/{key}[{c.get('name')}]", c
        for key, value in node.items():
            if key not in ("containers", "initContainers"):
                yield from _k8s_containers(value, trail)
    elif isinstance(node, list):
        for item in node:
            yield from _k8s_containers(item, trail)


def _load_yaml_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def yaml_invocations(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(DEPLOY))
    for doc in _load_yaml_all(path):
        if not isinstance(doc, dict):
            continue
        for name, svc in (doc.get("services") or {}).items():  # compose
            if name in COMPOSE_TOOL_SERVICES:
                entry = _shell_command(svc.get("entrypoint")) or ["reindex"]
                argvs = _container_argvs(entry, _shell_command(svc.get("command")), svc.get("image", ""))
                for n, argv in enumerate(argvs, 1):
                    yield Found(f"{rel}: services.{name}.command #{n}", argv, True)
        for job_name, job in (doc.get("jobs") or {}).items():  # GitHub Actions
            for k, step in enumerate(job.get("steps") or []):
                for argv in invocations_in_shell(step.get("run", "")):
                    yield Found(f"{rel}: jobs.{job_name} '{step.get('name') or f'step {k}'}'", argv, True)
        if kind := doc.get("kind"):
            meta = doc.get("metadata") or {}
            for trail, c in _k8s_containers(doc, f"{kind} {meta.get('name') or meta.get('generateName')}"):
                argvs = _container_argvs(_shell_command(c.get("command")), _shell_command(c.get("args")),
                                         c.get("image", ""))
                for n, argv in enumerate(argvs, 1):
                    yield Found(f"{rel}: {trail} #{n}", argv, True)
    comments = [(t.line_no, str(t)[1:]) for t in token_or_comment_generator(path.read_text()) if isinstance(t, Comment)]
    yield from _commented_commands(rel, comments)


def dockerfile_instructions(path: Path) -> list[dict[str, Any]]:
    """dockerfile-parse's instructions (continuation lines joined), comments as COMMENT ones."""
    with path.open("rb") as fh:
        return DockerfileParser(fileobj=fh).structure


def dockerfile_invocations(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(DEPLOY))
    entrypoint: list[str] = []
    cmd: list[str] = []
    instructions = dockerfile_instructions(path)
    for ins in instructions:
        form = json.loads(ins["value"]) if ins["value"].startswith("[") else None
        if ins["instruction"] == "ENTRYPOINT":
            entrypoint = form or ["/bin/sh", "-c", ins["value"]]
        elif ins["instruction"] == "CMD":
            cmd = form or ["/bin/sh", "-c", ins["value"]]
        elif ins["instruction"] == "RUN":
            for argv in invocations_in_shell(shlex.join(form) if form else ins["value"]):
                yield Found(f"{rel}:{ins['startline'] + 1} RUN", argv, True)
    for argv in _container_argvs(entrypoint, cmd, ""):
        yield Found(f"{rel}: ENTRYPOINT + CMD", argv, True)
    comments = [(i["startline"] + 1, i["value"]) for i in instructions if i["instruction"] == "COMMENT"]
    yield from _commented_commands(rel, comments)


EXEC_KEYS = ("execstart", "execstartpre", "execstartpost", "execstop", "execstoppost", "execreload",
             "execcondition")


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                       comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    parser.optionxform = str.lower  # systemd keys are case-sensitive, but distinct here
    parser.read_string(path.read_text(), source=str(path))
    return parser


def systemd_invocations(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(DEPLOY))
    unit = read_unit(path)
    for key in EXEC_KEYS if unit.has_section("Service") else ():
        for line in (unit.get("Service", key, fallback=None) or "").splitlines():
            for argv in invocations_in_shell(line.strip().lstrip("@-:+!")):
                yield Found(f"{rel}: [Service] {key}", argv, True)
    yield from _commented_commands(rel, _hash_comments(path.read_text()))


def crontab_entries(path: Path) -> list[tuple[str, str]]:
    """(schedule, command) of each enabled entry, as python-crontab reads the file."""
    jobs = [job for job in CronTab(tabfile=str(path)) if job.is_enabled()]
    assert all(job.is_valid() for job in jobs), f"{path.name}: an entry cron cannot schedule"
    return [(job.slices.render(), job.command) for job in jobs]


def crontab_invocations(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(DEPLOY))
    for schedule, command in crontab_entries(path):
        assert "%" not in command.replace("\\%", ""), f"{rel}: {schedule}: unescaped % means newline in crontab"
        for argv in invocations_in_shell(command):
            yield Found(f"{rel}: {schedule}", argv, True)
    yield from _commented_commands(rel, _hash_comments(path.read_text()))


def markdown_invocations(path: Path) -> Iterator[Found]:
    """Shell code blocks, and `inline code` in the text, as markdown-it reads them."""
    rel = str(path.relative_to(DEPLOY))
    for token in MarkdownIt("commonmark").enable("table").parse(path.read_text()):
        line = token.map[0] + 1 if token.map else 0
        if token.type == "fence" and token.info in ("bash", "sh", "shell", "console", ""):
            script = "\n".join(ln.strip().removeprefix("$ ") for ln in token.content.splitlines())
            for argv in invocations_in_shell(script):
                yield Found(f"{rel}:{line} ({token.info or 'code'} block)", argv, False)
        for child in token.children or []:
            if child.type == "code_inline":
                yield from _span_invocations(f"{rel}:{line}", child.content)


def shell_file_invocations(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(DEPLOY))
    for argv in invocations_in_shell(path.read_text()):
        yield Found(rel, argv, True)
    yield from _commented_commands(rel, _hash_comments(path.read_text()))


def comments_only(path: Path) -> Iterator[Found]:
    yield from _commented_commands(str(path.relative_to(DEPLOY)), _hash_comments(path.read_text()))


def handler_for(path: Path):
    """How each file under deploy/ is read for invocations; None for an unknown kind of file."""
    name = path.name
    if name.endswith(".dockerignore") or name in (".gitignore", ".gitkeep"):
        return lambda p: iter(())
    if name.startswith("Dockerfile"):
        return dockerfile_invocations
    if path.suffix in (".yaml", ".yml"):
        return yaml_invocations
    if path.suffix in (".service", ".timer", ".socket", ".path"):
        return systemd_invocations
    if name.startswith("crontab"):
        return crontab_invocations
    if path.suffix == ".md":
        return markdown_invocations
    if path.suffix == ".sh":
        return shell_file_invocations
    if path.suffix == ".toml" or name.startswith("env") or path.suffix == ".env":
        return comments_only
    return None


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _compose_tool_services() -> set[str]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    names = set()
    for name, svc in doc["services"].items():
        build = svc.get("build") or {}
        dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
        if Path(dockerfile).name.startswith("Dockerfile") or _REINDEX_IMAGE.search(svc.get("image", "")):
            names.add(name)
    return names


COMPOSE_TOOL_SERVICES.update(_compose_tool_services())
ALL = [found for path in deploy_files() if (handler := handler_for(path)) for found in handler(path)]


# =================================================================================================
# Tests: the checker itself
# =================================================================================================


@pytest.mark.parametrize("argv", [
    "reindex --json sync docs --wait 300",
    "reindex -v --json sync docs --wait=300 --no-delete --source sql:postgresql://db/app --query 'select 1'",
    "reindex plan docs --model /models/new -o /tmp/plan.json",
    "reindex plan docs --model-ref minilm -o/tmp/plan.json --metric cosine --quantization scalar",
    "reindex --yes apply /tmp/plan.json --queries q.jsonl --qrels q.tsv "
    "--gate 'ndcg@10 >= 0 and not significantly worse at p < 0.05'",
    "reindex apply --resume docs --no-cutover -k 20",
    "reindex -yv gc docs --keep 2",
    "reindex model register /models/x --name minilm --truncate-dim 256 --no-normalize",
    "reindex config show",
    "reindex sync docs --json --yes",  # global options after the verb are accepted too
    "reindex --version",
    "reindex sync --help",
    "reindex eval docs --queries q --qrels r --versions live,shadow --report-md r.md --report-html r.html "
    "--report-json r.json",
    "reindex status",
    "reindex apply --help",
    "reindex eval docs --log queries.txt --versions v3,v4",
    "reindex plan \"$COLLECTION\" --model \"$MODEL_DIR\" --hnsw-m $M",
])
def test_checker_accepts_valid_invocations(argv: str) -> None:
    assert check_invocation(shlex.split(argv)) == []


@pytest.mark.parametrize("argv, expected", [
    ("reindex sync docs --wiat 300", "No such option '--wiat'. (Did you mean one of: '--state', '--wait'?)"),
    ("reindex --wait 300 sync docs", "reindex: No such option '--wait'"),
    ("reindex synk docs", "No such command 'synk'. Did you mean 'sync'?"),
    ("reindex sync --wait 300", "Missing argument 'COLLECTION'"),
    ("reindex sync docs extra", "unexpected extra argument (extra)"),
    ("reindex sync docs --wait", "Option '--wait' requires an argument"),
    ("reindex sync docs --wait soon", "Invalid value for '--wait': 'soon' is not a valid float range"),
    ("reindex plan docs --metric manhattan", "Invalid value for '--metric': 'manhattan' is not one of"),
    ("reindex apply p.json --gate 'ndcg@10 >== 0'", "invalid gate"),
    ("reindex apply p.json --force=yes", "Option '--force' does not take a value"),
    ("reindex adopt docs", "Missing option '--model'"),
    ("reindex model", "reindex model: no command given"),
    ("reindex config shw", "No such command 'shw'"),
    ("reindex", "no command given"),
    ("reindex -x status", "No such option '-x'"),
    ("reindex apply", "pass a plan file, or --resume"),
    ("reindex apply p.json --queries q.jsonl", "--queries and --qrels go together"),
    ("reindex eval docs --versions live,shadow", "pass --queries and --qrels"),
    ("reindex plan docs --model /m --model-ref minilm", "either --model or --model-ref"),
])
def test_checker_rejects_drift(argv: str, expected: str) -> None:
    problems = check_invocation(shlex.split(argv))
    assert any(expected in p for p in problems), problems


def _cli_with_renamed_wait() -> click.Group:
    """A copy of the real CLI in which `sync --wait` was renamed `--wait-seconds`."""
    real = REINDEX_CLI.commands["sync"]
    params = [p for p in real.params if p.name != "wait"]
    params.append(click.Option(["--wait-seconds"], type=click.FloatRange(min=0), default=0))
    renamed = click.Command("sync", params=params, callback=real.callback)
    return click.Group(REINDEX_CLI.name, params=REINDEX_CLI.params,
                       commands={**REINDEX_CLI.commands, "sync": renamed})


def test_renaming_an_option_breaks_the_deploy_files() -> None:
    """The point of this file: rename an option in the CLI and the deploy files using it fail."""
    fake = _cli_with_renamed_wait()
    using_wait = [f for f in ALL if f.executed and "--wait" in f.argv and parse_invocation(f.argv).command == ("sync",)]
    assert len(using_wait) >= 3  # the CronJob, the systemd service, the crontab at least
    for f in using_wait:
        assert check_invocation(f.argv) == [], f.where
        problems = check_invocation(f.argv, fake)
        assert any("No such option '--wait'" in p for p in problems), (f.where, problems)


def test_renaming_a_verb_breaks_the_deploy_files() -> None:
    fake = click.Group(REINDEX_CLI.name, params=REINDEX_CLI.params,
                       commands={("synchronise" if k == "sync" else k): v for k, v in REINDEX_CLI.commands.items()})
    broken = [f for f in ALL if any("No such command 'sync'" in p for p in check_invocation(f.argv, fake))]
    assert {f.where.split(":")[0] for f in broken} >= {
        "kubernetes/cronjob-sync.yaml", "systemd/reindex-sync.service", "cron/crontab.example"}


def test_shell_splitting() -> None:
    script = r"""
    set -eu  # reindex status docs  <- a comment, not a command
    FOO=1 reindex --json sync docs \
        --wait 300 >>/var/log/sync.log 2>&1 || rc=$?
    cd /work && flock -n /tmp/l /opt/reindex/bin/reindex --yes gc docs --keep 2; echo done
    out=$(reindex status docs) ; echo "reindex sync is quoted" | tee x
    docker compose -f deploy/compose.yaml run --rm -e A=1 reindex plan docs --model /models/m
    docker compose -f deploy/compose.yaml logs reindex
    docker run --rm -v m:/models ghcr.io/example/reindexer:0.1.0-cpu --json status
    docker build -t reindexer:0.1.0-cpu -f deploy/Dockerfile .
    """
    assert invocations_in_shell(script) == [
        ["reindex", "--json", "sync", "docs", "--wait", "300"],
        ["reindex", "--yes", "gc", "docs", "--keep", "2"],
        ["reindex", "status", "docs"],
        ["reindex", "plan", "docs", "--model", "/models/m"],
        ["reindex", "--json", "status"],
    ]


# =================================================================================================
# Tests: every invocation in deploy/ is valid, and each file runs what it should
# =================================================================================================


def test_every_deploy_file_is_understood() -> None:
    unknown = [str(p.relative_to(DEPLOY)) for p in deploy_files() if handler_for(p) is None]
    assert not unknown, f"teach tests/test_deploy.py to read these (or their reindex calls go unchecked): {unknown}"


@pytest.mark.parametrize("found", ALL, ids=[f"{f.where} :: {' '.join(f.argv[1:])[:60]}" for f in ALL])
def test_invocation_matches_the_cli(found: Found) -> None:
    assert check_invocation(found.argv) == [], f"{found.where}: {shlex.join(found.argv)}"


def test_unattended_destructive_steps_pass_yes() -> None:
    """What the files run has no terminal: cut-over, rollback and gc must carry --yes."""
    assert needs_yes(parse_invocation(["reindex", "gc", "docs"]))
    assert not needs_yes(parse_invocation(["reindex", "apply", "p.json", "--no-cutover"]))
    checked = 0
    for f in ALL:
        inv = parse_invocation(f.argv)
        if f.executed and needs_yes(inv):
            checked += 1
            assert inv.value("yes"), f"{f.where}: {shlex.join(f.argv)} would stop at its confirmation"
    assert checked >= 3  # the Job's apply, the workflow's apply, the crontab's gc


@pytest.mark.parametrize("prefix, least", [
    ("kubernetes/cronjob-sync.yaml: CronJob", 1),
    ("kubernetes/job-apply.yaml: Job", 4),
    ("compose.yaml: services.", 2),
    ("ci/deploy-model.yml: jobs.", 6),
    ("systemd/reindex-sync.service: [Service]", 1),
    ("cron/crontab.example:", 2),
    ("Dockerfile", 2),
])
def test_invocations_are_found_where_expected(prefix: str, least: int) -> None:
    found = [f for f in ALL if f.where.startswith(prefix) and f.executed]
    assert len(found) >= least, [f.where for f in ALL]


def test_readme_examples_are_checked_too() -> None:
    documented = [f for f in ALL if f.where.startswith("README.md")]
    verbs = {parse_invocation(f.argv).command[:1] for f in documented}
    assert len(documented) >= 10
    assert {("sync",), ("plan",), ("apply",), ("eval",), ("status",)} <= verbs


# =================================================================================================
# Tests: structure of each file
# =================================================================================================


def _k8s(path: str) -> list[dict]:
    return _load_yaml_all(DEPLOY / "kubernetes" / path)


def _one(docs: list[dict], kind: str) -> dict:
    matches = [d for d in docs if d.get("kind") == kind]
    assert len(matches) == 1, f"expected one {kind}"
    return matches[0]


def _pod_of(job_spec: dict) -> dict:
    return job_spec["template"]["spec"]


def _env_names(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def embedded_scripts() -> list[tuple[str, str, str]]:
    """(where, shell, script) for the shell scripts inside YAML files and crontab entries."""
    out = []
    for path in deploy_files():
        rel = str(path.relative_to(DEPLOY))
        if path.suffix in (".yaml", ".yml"):
            for doc in _load_yaml_all(path):
                for job_name, job in (doc.get("jobs") or {}).items() if isinstance(doc, dict) else ():
                    for k, step in enumerate(job.get("steps") or []):
                        if "run" in step:
                            out.append((f"{rel}: jobs.{job_name} step {k}", "bash", step["run"]))
                for trail, c in _k8s_containers(doc, rel):
                    argv = _shell_command(c.get("command")) + _shell_command(c.get("args"))
                    if argv and Path(argv[0]).name in ("sh", "bash") and len(argv) >= 3:
                        out.append((trail, Path(argv[0]).name, argv[2]))
        elif path.name.startswith("crontab"):
            for schedule, command in crontab_entries(path):
                out.append((f"{rel}: {schedule}", "sh", command))
    return out


def test_embedded_shell_scripts_parse() -> None:
    import shutil
    import subprocess

    scripts = embedded_scripts()
    assert len(scripts) >= 5
    for where, shell, script in scripts:
        exe = shutil.which(shell)
        if exe is None:
            pytest.skip(f"no {shell} here")
        result = subprocess.run([exe, "-n"], input=script, text=True, capture_output=True, timeout=10)
        assert result.returncode == 0, f"{where}: {result.stderr}"


def test_cronjob_sync() -> None:
    cron = _one(_k8s("cronjob-sync.yaml"), "CronJob")
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int)
    assert job["activeDeadlineSeconds"] > 300  # longer than the lease wait
    pod = _pod_of(job)
    assert pod["restartPolicy"] == "Never"  # needed by podFailurePolicy
    (container,) = pod["containers"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    argv = _container_argvs(_shell_command(container.get("command")), _shell_command(container.get("args")),
                            container["image"])
    assert len(argv) == 1
    inv = parse_invocation(argv[0])
    assert inv.ok and inv.command == ("sync",) and inv.arguments == ["docs"]
    assert inv.value("as_json") and float(inv.value("wait")) == 300
    env = _env_names(container)
    for name in ("QDRANT_API_KEY", "MILVUS_TOKEN", "PGPASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/work/reindex.toml"]["subPath"] == "reindex.toml"
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/work/reindex.toml"]["name"]]["configMap"]["name"] == "reindex-config"
    # exit codes a retry cannot fix end the Job at once
    rules = job["podFailurePolicy"]["rules"]
    fail_codes = {c for r in rules if r["action"] == "FailJob" for c in r.get("onExitCodes", {}).get("values", [])}
    assert {2, 3, 7} <= fail_codes and 4 not in fail_codes and 5 not in fail_codes


def test_configmap_holds_a_valid_reindex_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reindexer.config import load_config

    cm = _one(_k8s("configmap.yaml"), "ConfigMap")
    assert cm["metadata"]["name"] == "reindex-config"
    for text in (cm["data"]["reindex.toml"], (DEPLOY / "reindex.toml").read_text()):
        data = tomllib.loads(text)
        assert set(data) <= {"store", "state", "defaults", "collections"}
        target = tmp_path / "reindex.toml"
        target.write_text(text)
        for var in ("REINDEX_STORE", "REINDEX_STATE", "REINDEX_CONFIG", "REINDEX_GATE"):
            monkeypatch.delenv(var, raising=False)
        cfg = load_config(config_path=target)
        assert cfg.store_url == data["store"]["url"] and cfg.state_url.startswith("postgresql+psycopg://")
        assert urlsplit(cfg.state_url).password is None  # libpq reads PGPASSWORD instead


def test_job_apply() -> None:
    job = _one(_k8s("job-apply.yaml"), "Job")
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert isinstance(spec["backoffLimit"], int) and spec["activeDeadlineSeconds"] > 0
    pod = _pod_of(spec)
    (container,) = pod["containers"]
    argvs = _container_argvs(_shell_command(container["command"]), _shell_command(container["args"]),
                             container["image"])
    invs = [parse_invocation(a) for a in argvs]
    assert all(i.ok for i in invs)
    by_verb = {i.command: i for i in invs}
    plan, apply = by_verb[("plan",)], by_verb[("apply",)]
    assert plan.arguments == ["docs"] and plan.value("model_path") and plan.value("output")
    assert apply.arguments == [plan.value("output")]  # applies the plan it just wrote
    assert apply.value("yes")
    assert apply.value("queries") == "/eval/queries.jsonl" and apply.value("qrels") == "/eval/qrels.tsv"
    assert apply.value("gate") == "ndcg@10 >= 0 and not significantly worse at p < 0.05"
    # the GPU is optional: present only as a comment
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert re.search(r"#\s*nvidia\.com/gpu:\s*1", (DEPLOY / "kubernetes/job-apply.yaml").read_text())
    env = _env_names(container)
    assert env["MODEL_DIR"]["value"].startswith("/models/")
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]


def test_serve_deployment_and_service() -> None:
    docs = _k8s("serve.yaml")
    deployment, service = _one(docs, "Deployment"), _one(docs, "Service")
    assert deployment["apiVersion"] == "apps/v1"
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    (argv,) = _container_argvs(_shell_command(container.get("command")), _shell_command(container.get("args")),
                               container["image"])
    inv = parse_invocation(argv)
    assert inv.ok and inv.command == ("serve",)
    assert inv.value("host") == "0.0.0.0"  # explicit inside the pod; the default is loopback
    port = int(inv.value("port"))
    (http,) = container["ports"]
    assert http["containerPort"] == port
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    assert all(p["port"] in (port, http["name"]) for p in probes.values())
    # the token from a Secret, as a file
    env = _env_names(container)
    token_file = env["REINDEX_SERVE_TOKEN_FILE"]["value"]
    assert "REINDEX_SERVE_TOKEN" not in env
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (token_volume,) = [name for name, m in mounts.items() if token_file.startswith(m["mountPath"] + "/")]
    secret = volumes[token_volume]["secret"]
    assert not secret.get("optional")  # without its token the pod waits instead of serving unguarded
    paths = {i["path"] for i in secret.get("items", [])} or {"token"}
    assert token_file.rsplit("/", 1)[1] in paths
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
    assert pod["terminationGracePeriodSeconds"] >= 25  # the server's own grace (20 s) fits inside it
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    selector = service["spec"]["selector"]
    assert selector.items() <= labels.items()
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] in (port, http["name"])


def test_compose_serve() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    serve = services["reindex-serve"]
    (argv,) = _container_argvs(["reindex"], _shell_command(serve["command"]), serve["image"])
    inv = parse_invocation(argv)
    assert inv.ok and inv.command == ("serve",) and inv.value("host") == "0.0.0.0"
    assert serve["ports"] == [f"127.0.0.1:{inv.value('port')}:{inv.value('port')}"]  # loopback on the host
    assert str(serve["environment"]["REINDEX_SERVE_TOKEN"]).startswith("${")
    assert "/readyz" in " ".join(serve["healthcheck"]["test"])
    assert "serve" in serve["profiles"]


def test_kustomization_lists_existing_files() -> None:
    kust = yaml.safe_load((DEPLOY / "kubernetes/kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (DEPLOY / "kubernetes" / res).is_file(), res
    assert "job-apply.yaml" not in kust["resources"]  # created per model, never re-applied


def test_compose() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert {"qdrant", "milvus", "postgres", "reindex"} <= set(services)
    assert services["qdrant"]["image"].startswith("qdrant/qdrant")
    assert services["milvus"]["image"].startswith("milvusdb/milvus")
    assert services["postgres"]["image"].startswith("postgres")
    tool = services["reindex"]
    assert tool["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / tool["build"]["context"] / tool["build"]["dockerfile"]).is_file()
    env = tool["environment"]
    for name in ("REINDEX_STORE", "REINDEX_STATE", "QDRANT_API_KEY", "MILVUS_TOKEN"):
        assert name in env, name
    for name in ("QDRANT_API_KEY", "MILVUS_TOKEN", "PGPASSWORD"):
        assert str(env[name]).startswith("${"), f"{name} must be a ${{VAR}} reference"
    assert "postgres" in tool["depends_on"]
    assert any(v.endswith(":/models:ro") for v in tool["volumes"])
    for name, cfg in doc.get("configs", {}).items():
        assert (DEPLOY / cfg["file"]).is_file(), name
    for svc in services.values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|API_KEY|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{key}: literal secret"


SECRET_ASSIGNMENT = re.compile(
    r"""(?ix) (?P<key>[\w.-]*(password|passwd|api[_-]?key|token|secret(?!KeyRef)(?!s\b))[\w.-]*)
        \s*[:=]\s* (?P<value>"[^"]*"|'[^']*'|[^\s#,]*)""")
ALLOWED_VALUE = re.compile(r"""^(|\$.*|/.*|\{\}|null|true|false|~|\|)$""")


def test_no_literal_secrets() -> None:
    problems = []
    for path in deploy_files():
        rel = str(path.relative_to(DEPLOY))
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for m in SECRET_ASSIGNMENT.finditer(line):
                value = m.group("value").strip("\"'")
                # key, name and secretName name a secret; they do not hold one
                if m.group("key").lower() in ("key", "name", "secretname") or ALLOWED_VALUE.match(value):
                    continue
                problems.append(f"{rel}:{lineno}: {m.group(0)}")
            if re.search(r"://[^/\s:@$]+:[^@\s/$]+@", line):
                problems.append(f"{rel}:{lineno}: credentials in a URL")
            if re.search(r"minioadmin|root:Milvus|\b(sk|ghp|xox[bp])-?[A-Za-z0-9]{20,}", line):
                problems.append(f"{rel}:{lineno}: a well-known default or token")
    assert not problems, "\n".join(problems)


def test_the_secret_scanner_catches_literals() -> None:
    for line in ('QDRANT_API_KEY: "3f9a1c"', "PGPASSWORD=hunter2", "  MILVUS_TOKEN: root:Milvus",
                 "--from-literal=postgres-password=hunter2"):
        m = SECRET_ASSIGNMENT.search(line)
        assert m and not ALLOWED_VALUE.match(m.group("value").strip("\"'")), line
    for line in ("QDRANT_API_KEY: ${QDRANT_API_KEY:?set it}", "QDRANT_API_KEY_FILE=/run/secrets/qdrant",
                 "PGPASSWORD: ${{ secrets.REINDEX_PGPASSWORD }}", "MILVUS_TOKEN=", "secretKeyRef:"):
        m = SECRET_ASSIGNMENT.search(line)
        assert m is None or ALLOWED_VALUE.match(m.group("value").strip("\"'")), line


def test_systemd_units() -> None:
    service = read_unit(DEPLOY / "systemd/reindex-sync.service")
    timer = read_unit(DEPLOY / "systemd/reindex-sync.timer")
    s = service["Service"]
    assert s["type"] == "oneshot"
    assert s["environmentfile"].lstrip("-") == "/etc/reindex/env"
    assert s["workingdirectory"] and s["user"] and s["user"] != "root"
    assert s["nonewprivileges"] == "yes" and s["protectsystem"] in ("strict", "full")
    (exec_start,) = [f for f in ALL if f.where.startswith("systemd/reindex-sync.service: [Service] execstart")]
    inv = parse_invocation(exec_start.argv)
    assert inv.command == ("sync",) and inv.arguments == ["docs"] and float(inv.value("wait")) == 300
    t = timer["Timer"]
    assert t["oncalendar"] == "hourly" and t["persistent"] == "true" and t["randomizeddelaysec"]
    assert t.get("unit", "reindex-sync.service") == "reindex-sync.service"
    assert (DEPLOY / "systemd" / t.get("unit", "reindex-sync.service")).is_file()
    assert timer["Install"]["wantedby"] == "timers.target"


def test_crontab() -> None:
    entries = crontab_entries(DEPLOY / "cron/crontab.example")
    syncs = [e for e in entries if any(parse_invocation(a).command == ("sync",) for a in invocations_in_shell(e[1]))]
    assert syncs, "crontab.example must call reindex sync"
    for schedule, _ in entries:
        assert schedule.startswith("@") or len(schedule.split()) == 5


def _dockerfile(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ins in dockerfile_instructions(DEPLOY / name):
        out.setdefault(ins["instruction"], []).append(ins["value"])
    return out


def _setup_torch_pin() -> str:
    m = re.search(r"torch==\$\{TORCH_VERSION:-([\d.]+)\}", (ROOT / "scripts/setup.sh").read_text())
    assert m, "scripts/setup.sh no longer pins torch the way this test reads it"
    return m.group(1)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles(name: str) -> None:
    d = _dockerfile(name)
    assert json.loads(d["ENTRYPOINT"][-1]) == ["reindex"]
    assert d["WORKDIR"][-1] == "/work"
    user = d["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    env = " ".join(d["ENV"])
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    runs = "\n".join(d["RUN"])
    pins = re.findall(r"torch==([\w.+]+)", runs)
    assert pins and set(pins) == {_setup_torch_pin()}, pins
    torch_at = runs.index("torch==")
    package_at = runs.index('pip install ".[postgres,serve]"')
    assert torch_at < package_at  # torch first, so the package's `torch>=` pulls nothing
    text = (DEPLOY / name).read_text()
    assert "/models" in text
    froms = [f.split()[0] for f in d["FROM"]]
    args = dict(re.findall(r"ARG (\w+)=(\S+)", text))
    bases = {args.get(f.strip("${}"), f) for f in froms}
    if name == "Dockerfile":
        assert bases == {"python:3.11-slim"}
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    else:
        assert all(b.startswith(("nvidia/cuda:", "pytorch/pytorch:")) for b in bases), bases


def test_dockerignore_keeps_the_context_small() -> None:
    for name in ("Dockerfile", "Dockerfile.cuda"):
        lines = (DEPLOY / f"{name}.dockerignore").read_text().split()
        assert "*" in lines and "!reindexer/" in lines and "!adapters/" in lines and "!pyproject.toml" in lines


def test_workflow() -> None:
    wf = yaml.safe_load((DEPLOY / "ci/deploy-model.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "workflow_run" in triggers or "workflow_dispatch" in triggers
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    invs = [(k, parse_invocation(a)) for k, s in enumerate(steps) if "run" in s for a in invocations_in_shell(s["run"])]
    assert all(i.ok for _, i in invs)
    verbs = {i.command[0]: (k, i) for k, i in invs}
    _, plan = verbs["plan"]
    applies = [(k, i) for k, i in invs if i.command == ("apply",)]
    gated = [(k, i) for k, i in applies if i.value("yes") and i.value("gate")]
    assert gated, "the workflow must run `reindex --yes apply ... --gate ...`"
    eval_step, ev = verbs["eval"]
    assert ev.value("versions") == "live,shadow"
    assert ev.value("report_md") and ev.value("report_html") and ev.value("report_json")
    assert eval_step < gated[0][0]  # the report is made while the shadow still is one
    assert plan.value("output") in {a.arguments[0] for _, a in applies}
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0].get("if") == "always()"
    for report in (ev.value("report_md"), ev.value("report_html"), ev.value("report_json")):
        assert report in uploads[0]["with"]["path"]
    assert "6" in (DEPLOY / "ci/deploy-model.yml").read_text()  # the gate-refused exit code is explained


def test_readme_covers_every_file_and_exit_code() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in deploy_files():
        rel = str(path.relative_to(DEPLOY))
        if path.name in (".gitignore", "README.md"):
            continue
        assert rel in readme, f"deploy/README.md does not mention {rel}"
    from reindexer import errors

    for name in ("EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_CONFLICT", "EXIT_BACKEND_UNAVAILABLE",
                 "EXIT_GATE_REFUSED", "EXIT_VERIFICATION_FAILED"):
        code = getattr(errors, name)
        assert re.search(rf"^\|\s*`?{code}`?\s*\|", readme, re.M), f"exit code {code} missing from the table"
