"""What every `reindex` command runs inside: its consoles, its context, its error handling.

``out`` (stdout: results, as tables or --json) and ``err`` (stderr: errors, notices);
``Ctx``, one invocation's global options and the workspace it opens on first use;
``run_command``, which maps the error tree onto exit codes; ``ReindexGroup``, which
accepts the global options after the verb too. Not here: the commands (reindexer.cli),
their options (reindexer.cli_options) and how results read (reindexer.render).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import click
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from reindexer.errors import EXIT_UNEXPECTED, ReindexError, UsageError
from reindexer.workspace import Workspace

#: Width of tables written where no terminal reads them (a log, a pipe, CI): wide enough that no
#: cell is cut to fit 80 columns; tables are only as wide as their content.
LOG_WIDTH = 4096


class OutputConsole(Console):
    """stdout: a terminal's width on a terminal; elsewhere ``LOG_WIDTH``, so nothing is truncated.

    COLUMNS, when set, still wins, as it does for rich.
    """

    @property
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal and not os.environ.get("COLUMNS"):
            return ConsoleDimensions(LOG_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = OutputConsole(soft_wrap=True)


err = Console(stderr=True, soft_wrap=True)


class Ctx:
    """One invocation: the global options, the workspace (opened on first use), confirmation, output."""

    def __init__(self, store: str | None, state: str | None, as_json: bool, yes: bool):
        self.store_opt, self.state_opt = store, state
        self.as_json, self.yes = as_json, yes
        # Set by the commands that only look, before they open the workspace: they never create a state.
        self.read_only = False
        self._ws: Workspace | None = None

    @property
    def ws(self) -> Workspace:
        if self._ws is None:
            self._ws = Workspace.open(store=self.store_opt, state=self.state_opt, read_only=self.read_only)
        return self._ws

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    def confirm(self, question: str) -> bool:
        if self.yes:
            return True
        if sys.stdin.isatty():
            return click.confirm(question, default=False, err=True)
        raise UsageError("no terminal to confirm on", hint="pass --yes")

    def require_confirmable(self, what: str) -> None:
        """Fail before any work when a destructive step could not be confirmed at the end."""
        if not self.yes and not sys.stdin.isatty():
            raise UsageError(f"{what} needs confirmation and there is no terminal to ask", hint="pass --yes")

    def emit(self, data: Any, human: Callable[[Any], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(_plain(data), indent=2, default=str))
        else:
            human(data)


def _plain(data: Any) -> Any:
    """A result as JSON-ready data: its to_dict(), a dataclass's fields, a pydantic model's dump."""
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    if isinstance(data, list):
        return [_plain(x) for x in data]
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    return data


def run_command(fn: Callable) -> Callable:
    """Map the error tree to exit codes and close the workspace, for every command."""

    @functools.wraps(fn)
    @click.pass_obj
    def wrapper(ctx: Ctx, *args: Any, **kwargs: Any) -> None:
        try:
            fn(ctx, *args, **kwargs)
        except ReindexError as exc:
            # escaped: messages quote user input and hints such as pip install "reindexer[serve]"
            err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
            if exc.hint:
                err.print(f"[bold]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted; re-run the same command to resume")
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # the last line of defence: one clear line, no traceback by default
            if os.environ.get("REINDEX_DEBUG"):
                raise
            err.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc}", markup=True, highlight=False)
            err.print("set REINDEX_DEBUG=1 for a traceback")
            sys.exit(EXIT_UNEXPECTED)
        finally:
            ctx.close()

    return wrapper


def _late_global(name: str) -> Callable:
    """The callback of a global option given after the verb: it sets what the group option would."""

    def callback(click_ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        obj = click_ctx.find_object(Ctx)
        if obj is None or value in (None, False, 0):
            return
        if name == "verbose":
            logging.getLogger().setLevel(logging.WARNING - 10 * min(value, 2))
        elif name == "json":
            obj.as_json = True
        elif name == "yes":
            obj.yes = True
        else:
            setattr(obj, f"{name}_opt", value)

    return callback


def _late_globals() -> list[click.Option]:
    return [
        click.Option(["--store"], hidden=True, expose_value=False, callback=_late_global("store")),
        click.Option(["--state"], hidden=True, expose_value=False, callback=_late_global("state")),
        click.Option(["--json"], is_flag=True, hidden=True, expose_value=False, callback=_late_global("json")),
        click.Option(["-y", "--yes"], is_flag=True, hidden=True, expose_value=False, callback=_late_global("yes")),
        click.Option(
            ["-v", "--verbose"], count=True, hidden=True, expose_value=False, callback=_late_global("verbose")
        ),
    ]


class ReindexGroup(click.Group):
    """A group whose commands also accept the global options after the verb (`reindex status --json`)."""

    group_class = type  # subgroups (`model`, `config`) are ReindexGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group):
            taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            cmd.params.extend(o for o in _late_globals() if not taken.intersection(o.opts))
        super().add_command(cmd, name)
