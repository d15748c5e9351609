"""The state database's schema: what a file or database holds before it is used, and its revision.

The schema is versioned by alembic; the migrations ship inside the package (``migrations/``). A
SQLite state belongs to the one user who owns the file, so an older revision is upgraded on open,
after a backup copy. A PostgreSQL state is shared by a team, so its upgrade is an explicit step
(``reindex state upgrade``) that one operator runs; until then every command refuses it.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError as SADatabaseError

from reindexer.errors import ConflictError, NotFoundError, UsageError

#: Prefixed like every reindexer table, so a team's PostgreSQL database can hold other apps' alembic too.
VERSION_TABLE = "reindex_alembic_version"
TABLE_PREFIX = "reindex_"
MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_HEADER = b"SQLite format 3\x00"
UPGRADE_HINT = "run `reindex state upgrade --state URL` once (back the database up first), then re-run"


@dataclass(frozen=True)
class SchemaUpgrade:
    url: str  # redacted
    from_revision: str | None  # None: a state made before migrations existed
    to_revision: str
    backup: str | None = None
    created: bool = False  # an empty database that got the schema, not an upgrade

    @property
    def upgraded(self) -> bool:
        return not self.created and self.from_revision != self.to_revision

    def to_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "upgraded": self.upgraded,
            "backup": self.backup,
        }


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "reindexer ships no state migrations"
    return head


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


# -- SQLite files, checked without opening them for writing ------------------------------------------
def check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse a missing (unless ``create``), unreadable, corrupt or foreign state file, without changing it.

    Opening a file through the engine would switch it to WAL mode, a write; so this reads the file
    itself and its tables through a read-only connection first.
    """
    if not path.exists():
        if create:
            return
        raise NotFoundError(
            f"no state database at {path}",
            hint="check --state / REINDEX_STATE (a command that writes, such as `reindex plan` or "
            "`reindex adopt`, creates it)",
        )
    if path.is_dir():
        raise UsageError(f"the state database {path} is a folder", hint="point --state / REINDEX_STATE at a file")
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UsageError(
            f"cannot read the state database {path}: {exc.strerror}",
            hint="check the file's permissions, or point --state / REINDEX_STATE elsewhere",
        ) from None
    if header and header != SQLITE_HEADER:
        raise UsageError(
            f"{path} is not a SQLite database (corrupt, or another kind of file)",
            hint="restore it from a backup, or point --state / REINDEX_STATE at another file",
        )
    tables = sqlite_tables(path) if header else []
    ours = [t for t in tables if t.startswith(TABLE_PREFIX)]
    if tables and not ours:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise UsageError(
            f"{path} is not a reindexer state database (it holds other tables: {shown})",
            hint="point --state / REINDEX_STATE at a reindexer state, or at a new file",
        )


def sqlite_tables(path: Path) -> list[str]:
    # Read-only mode still creates -wal and -shm beside a WAL file; immutable does not, and without a
    # -wal file there is nothing it could miss.
    mode = "mode=ro" if path.with_name(path.name + "-wal").exists() else "immutable=1"
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True)
        try:
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UsageError(
            f"the state database {path} cannot be read: {exc}",
            hint="restore it from a backup, or point --state / REINDEX_STATE at another file",
        ) from None


def backup_sqlite(path: Path, revision: str | None) -> Path:
    """A consistent copy (the WAL included) next to the file, before an upgrade changes it."""
    target = path.with_name(f"{path.name}.pre-{revision or 'migrations'}.bak")
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    src, dst = sqlite3.connect(str(path)), sqlite3.connect(str(partial))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    shutil.move(str(partial), str(target))
    return target


# -- any engine ----------------------------------------------------------------------------------
def _inspect(engine: Engine) -> tuple[set[str], str | None]:
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        revision = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return tables, revision


#: pg_advisory_xact_lock key that serialises upgrades of one PostgreSQL state ("reindex" in ASCII)
_UPGRADE_LOCK = 0x7265696E646578


def _upgrade(engine: Engine) -> None:
    """Every pending revision and the stamp, in one transaction: an upgrade interrupted half-way (killed,
    a step failing) leaves the state as it was, and running it again is the repair."""
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine)
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two operators upgrading at once: the second waits, then finds the state at head.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        command.upgrade(_config(conn), "head")


def _upgrade_sqlite(engine: Engine) -> None:
    # Python's sqlite3 opens a transaction only before INSERT, UPDATE or DELETE, so a migration's
    # CREATE TABLE would commit on its own and a failure after it leave half a schema behind. With the
    # driver's own transaction handling off and an explicit BEGIN IMMEDIATE, SQLite's DDL is
    # transactional like PostgreSQL's: all of the upgrade or none of it.
    with engine.connect() as conn:
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        saved = dbapi_conn.isolation_level
        dbapi_conn.isolation_level = None
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                command.upgrade(_config(conn), "head")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.rollback()  # ends SQLAlchemy's own bookkeeping of the transaction; nothing is left open
            dbapi_conn.isolation_level = saved


def open_schema(
    engine: Engine, shown_url: str, create: bool, upgrade_on_open: bool, sqlite_path: Path | None = None
) -> SchemaUpgrade:
    """Make sure the database holds a state at the head revision, or say exactly why it cannot.

    ``create``: an empty database gets the schema (commands that write); otherwise it is not found.
    ``upgrade_on_open``: an older revision is upgraded here (SQLite) instead of refused (PostgreSQL).
    """
    head = head_revision()
    tables, revision = _inspect(engine)
    ours = {t for t in tables if t.startswith(TABLE_PREFIX)}
    if not ours:
        if not create:
            raise NotFoundError(
                f"no reindexer state in {shown_url}",
                hint="check --state / REINDEX_STATE (a command that writes, such as "
                "`reindex plan` or `reindex adopt`, creates it)",
            )
        try:
            _upgrade(engine)
        except SADatabaseError:
            # Another process created it between our look and our upgrade: look again.
            tables, revision = _inspect(engine)
            if revision != head:
                raise
        return SchemaUpgrade(shown_url, None, head, created=True)
    if revision == head:
        return SchemaUpgrade(shown_url, head, head)
    if revision is not None and not _known(revision):
        raise ConflictError(
            f"the state in {shown_url} is at schema revision {revision}, newer than this reindexer "
            f"knows (its newest is {head})",
            hint="upgrade reindexer (pip install -U reindexer) on every machine that uses this state",
        )
    if not upgrade_on_open:
        raise ConflictError(
            f"the state in {shown_url} is at schema revision {revision or 'none (made before migrations)'}; "
            f"this reindexer needs {head}",
            hint=UPGRADE_HINT,
        )
    backup = backup_sqlite(sqlite_path, revision) if sqlite_path is not None else None
    _upgrade(engine)
    return SchemaUpgrade(shown_url, revision, head, str(backup) if backup else None)


def upgrade_schema(engine: Engine, shown_url: str, sqlite_path: Path | None = None) -> SchemaUpgrade:
    """`reindex state upgrade`: bring an existing state to the head revision; an empty one is not found."""
    return open_schema(engine, shown_url, create=False, upgrade_on_open=True, sqlite_path=sqlite_path)


def current_revision(engine: Engine) -> str | None:
    return _inspect(engine)[1]
