"""Opening the state database: its URL, its engine, and which of its failures a retry may cure.

``StateDatabase`` is the connection every part of ``StateStore`` (reindexer.state.store) works
through: sessions whose commits are fenced by the leases held (reindexer.state.leases), and
``retried`` for methods that are one transaction each. It holds no records itself; the schema
and its revisions are reindexer.state.revisions.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine

from reindexer.errors import NotFoundError, ReindexError, StateUnavailableError, UsageError
from reindexer.retry import call_state_with_retries
from reindexer.state.revisions import check_sqlite_file

DEFAULT_STATE_URL = "sqlite:///.reindex/state.db"


def redact_db_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


#: SQLSTATE classes a retry may cure: connection exception, insufficient resources (too many
#: connections), operator intervention (the server shutting down, starting up), and a lost race.
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01")
#: A refusal at connect time that no retry changes (it has no SQLSTATE there, only the server's words).
_PERMANENT = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied")


def is_transient(exc: BaseException) -> bool:
    """A state database failure that a retry may cure: the connection refused, lost, or the server restarting.

    Either SQLAlchemy's wrapper or the driver's own exception (at connect time). Never true of SQLite's
    errors, which the callers do not retry (a locked file already waits 30 s in SQLite itself).
    """
    driver_error: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, (OperationalError, InterfaceError)):
            return False
        driver_error = exc.orig
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(_TRANSIENT_SQLSTATES)
    if type(driver_error).__name__ not in ("OperationalError", "InterfaceError"):
        return False
    return not any(phrase in str(driver_error) for phrase in _PERMANENT)


P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound="StateDatabase")


def retried(method: Callable[Concatenate[D, P], T]) -> Callable[Concatenate[D, P], T]:
    """Run a state method again from the start when a server database drops or refuses the connection.

    Each method is one transaction, so a retry repeats it whole. One whose commit reached the server
    but whose answer was lost is applied once more: ledger rows are replaced, not added, and a lease
    recognises its own token, but a run's counters count the batch twice and an audit event can appear
    twice. That window is the instant between the server's commit and its answer.
    """

    @functools.wraps(method)
    def run(self: D, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.sqlite_path is not None or self.engine.dialect.name == "sqlite":
            return method(self, *args, **kwargs)
        return call_state_with_retries(lambda: method(self, *args, **kwargs), self.shown_url, is_transient)

    return run


class StateDatabase:
    """The engine and sessions of one state database; ``create=False`` never creates a SQLite file."""

    def __init__(self, url: str = DEFAULT_STATE_URL, base_dir: Path | None = None, create: bool = True):
        self.url = absolute_url(url, base_dir, create)
        self.shown_url = redact_db_url(self.url)
        self.sqlite_path = sqlite_path(self.url)
        # resource -> token of every lease this store holds: its commits are fenced by them (_check_fences)
        self._fences: dict[str, str] = {}
        self._pending_tokens: dict[str, str] = {}
        self._fence_lock = threading.Lock()
        if self.sqlite_path is not None:
            check_sqlite_file(self.sqlite_path, create)
        self.engine = make_engine(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for a caller's own statements. It reconnects (with retries) like every method, but
        a connection lost in the middle of its transaction ends the command with exit 5: nothing of
        that transaction was written, and the command can be run again."""
        try:
            with self._session() as s:
                yield s
        except DBAPIError as exc:
            if self.sqlite_path is None and is_transient(exc):
                reason = str(exc.orig).strip().splitlines()
                raise StateUnavailableError(
                    f"lost the connection to the state database {self.shown_url} during a transaction: "
                    f"{reason[0] if reason else type(exc.orig).__name__}",
                    hint="nothing of that transaction was written; re-run once the database is back "
                    "(an interrupted apply resumes with `reindex apply --resume COLLECTION`)",
                ) from None
            raise

    @contextmanager
    def _session(self, fenced: bool = True) -> Iterator[Session]:
        """``fenced``: its commit checks this store's leases first (every session but the leases' own)."""
        with Session(self.engine, expire_on_commit=False) as s:
            if fenced:
                event.listen(s, "before_commit", self._check_fences)
            yield s

    def close(self) -> None:
        self.engine.dispose()

    def _check_fences(self, s: Session) -> None:
        """Before each fenced commit; the leases (reindexer.state.leases) refuse one whose lease was taken over."""


def absolute_url(url: str, base_dir: Path | None, create: bool = True) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"not a database URL: {url!r}",
            hint="use sqlite:///path/state.db or postgresql+psycopg://user@host/db",
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def sqlite_file(url: str, base_dir: Path | None = None) -> Path | None:
    """The file a SQLite state URL names (relative to ``base_dir``), or None for a server database."""
    return sqlite_path(absolute_url(url, base_dir, create=False))


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


def unopenable(shown_url: str, exc: OperationalError) -> ReindexError:
    """A database server's refusal, as the error a user can act on: missing, not allowed, or unreachable."""
    text = str(exc.orig)
    if "does not exist" in text and "database" in text:
        return NotFoundError(
            f"no database for the state at {shown_url}",
            hint="check --state / REINDEX_STATE, or create the database (createdb) first",
        )
    if "password authentication failed" in text or "permission denied" in text or "readonly" in text:
        return UsageError(
            f"not allowed to use the state database {shown_url}: {text.splitlines()[0]}",
            hint="check the user, password and grants in --state / REINDEX_STATE",
        )
    if "unable to open database file" in text:
        return UsageError(
            f"cannot open the state database {shown_url}: {text}",
            hint="check the file's folder exists and is writable, or point --state elsewhere",
        )
    return ReindexError(
        f"cannot open the state store {shown_url}: {text.splitlines()[0] if text else exc}",
        hint="check --state / REINDEX_STATE",
    )


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers run beside a writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        engine = create_engine(url, pool_pre_ping=True, connect_args=_server_connect_args(url))
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise UsageError(f"cannot use state URL {redact_db_url(url)}: {exc}") from None
    shown = redact_db_url(url)

    @event.listens_for(engine, "do_connect")
    def _connect_with_retries(dialect, _record, cargs, cparams):
        # Every new connection (the first, and the one pool_pre_ping makes after a server restart) waits
        # out a server that is down or restarting, within the retry policy, then gives up with exit 5.
        dbapi = dialect.loaded_dbapi
        kinds = (dbapi.OperationalError, dbapi.InterfaceError)
        return call_state_with_retries(
            lambda: dialect.connect(*cargs, **cparams), shown, lambda e: isinstance(e, kinds) and is_transient(e)
        )

    return engine


def _server_connect_args(url: str) -> dict[str, Any]:
    """libpq time-outs, so a server that stops answering (a network partition) fails and is retried
    instead of hanging: connecting, and a connection whose packets go unacknowledged. The URL's own
    settings win."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    defaults = {
        "connect_timeout": int(float(os.environ.get("REINDEX_CONNECT_TIMEOUT", "10"))),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }
    return {k: v for k, v in defaults.items() if k not in parsed.query}
