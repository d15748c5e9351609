"""The state database itself: corrupt, foreign, unreadable and missing files; schema revisions and upgrades.

SQLite states upgrade themselves on open (after a backup copy); a shared PostgreSQL state waits for
`reindex state upgrade`. A state newer than the code is refused with exit 4, and every refusal leaves
the file byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from reindexer import commands
from reindexer.cli import cli
from reindexer.config import Config
from reindexer.sources.spec import SourceSpec
from reindexer.state import StateStore
from reindexer.state.revisions import VERSION_TABLE, head_revision
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

PREVIOUS_SCHEMA = Path(__file__).parent / "state_fixtures" / "schema-0.1-before-migrations.sql"
READ_ONLY = [["status"], ["history", "docs"], ["eval", "docs", "--log", "queries.txt"], ["verify", "docs"],
             ["model", "list"]]


def invoke(*args: str, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- missing: read-only commands never create a state -----------------------------------------------
@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: a[0] if a[0] != "model" else "model-list")
def test_read_only_commands_on_a_missing_state_exit_3_and_create_nothing(tmp_path, args):
    (tmp_path / "queries.txt").write_text("printer\n")
    before = files_under(tmp_path)
    state = tmp_path / "mistyped" / "state.db"
    r = invoke("--store", f"qdrant+local:{tmp_path / 'q'}", "--state", f"sqlite:///{state}", *args, cwd=tmp_path)
    assert r.exit_code == 3, r.output
    assert f"no state database at {state}" in r.output and "--state" in r.output
    assert files_under(tmp_path) == before  # no state file, no folder for it


def test_the_default_state_is_not_created_by_status_but_is_by_a_command_that_writes(tmp_path, minilm_path):
    r = invoke("--store", f"qdrant+local:{tmp_path / 'q'}", "status", cwd=tmp_path)
    assert r.exit_code == 3 and ".reindex/state.db" in r.output
    assert not (tmp_path / ".reindex").exists()
    r = invoke("--store", f"qdrant+local:{tmp_path / 'q'}", "model", "register", str(minilm_path), cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / ".reindex" / "state.db").is_file()
    with _closing(StateStore(f"sqlite:///{tmp_path}/.reindex/state.db", create=False)) as state:
        assert state.schema_revision == head_revision()
    r = invoke("--store", f"qdrant+local:{tmp_path / 'q'}", "model", "list", "--json", cwd=tmp_path)
    assert r.exit_code == 0 and '"dim": 384' in r.output


# -- corrupt, foreign, unreadable: exit 2 naming the path, file untouched ---------------------------
def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    db.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    db.commit()
    db.close()


@pytest.mark.parametrize("kind", ["corrupt", "foreign", "truncated", "folder"])
@pytest.mark.parametrize("args", [["status"], ["model", "register", "MODEL"]], ids=["read", "write"])
def test_a_bad_state_file_is_exit_2_naming_it_and_left_byte_identical(tmp_path, kind, args, minilm_path):
    path = tmp_path / "state.db"
    if kind == "corrupt":
        path.write_bytes(b"this is not a database\n" * 50)
    elif kind == "foreign":
        _foreign(path)
    elif kind == "truncated":  # a real state cut short: SQLite's header, then nothing it can read
        StateStore(f"sqlite:///{path}").close()
        data = path.read_bytes()
        path.write_bytes(data[:100] + b"\0" * 50)
    else:
        path.mkdir()
    before = None if path.is_dir() else digest(path)
    names = files_under(tmp_path)
    args = [str(minilm_path) if a == "MODEL" else a for a in args]
    r = invoke("--store", f"qdrant+local:{tmp_path / 'q'}", "--state", f"sqlite:///{path}", *args, cwd=tmp_path)
    assert r.exit_code == 2, r.output
    assert str(path) in r.output and "unexpected" not in r.output
    assert "--state" in r.output  # the hint names the fix
    if before is not None:
        assert digest(path) == before
    assert files_under(tmp_path) == names


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot make it unreadable")
def test_an_unreadable_state_file_is_exit_2(tmp_path):
    path = tmp_path / "state.db"
    StateStore(f"sqlite:///{path}").close()
    path.chmod(0)
    try:
        r = invoke("--state", f"sqlite:///{path}", "status", cwd=tmp_path)
    finally:
        path.chmod(0o600)
    assert r.exit_code == 2 and str(path) in r.output and "permission" in r.output.lower()


# -- revisions ----------------------------------------------------------------------------------------
def test_migrations_make_exactly_the_models_schema(state_url):
    """A new revision must come with every model change: autogenerate finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    state = StateStore(state_url)
    with state.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    state.close()
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []


def _set_revision(state_url: str, revision: str | None) -> None:
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        if revision is None:
            conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        else:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_a_state_newer_than_the_code_is_refused_with_exit_4_naming_it(state_url, tmp_path):
    StateStore(state_url).close()
    _set_revision(state_url, "0042_from_the_future")
    path = Path(sa.engine.make_url(state_url).database) if state_url.startswith("sqlite") else None
    before = digest(path) if path else None
    for args in (["status"], ["model", "list"], ["state", "upgrade"]):
        r = invoke("--state", state_url, *args, cwd=tmp_path)
        assert r.exit_code == 4, r.output
        assert "0042_from_the_future" in r.output and "newer than this reindexer" in r.output
        assert "upgrade reindexer" in r.output
    if path:
        assert digest(path) == before and not list(path.parent.glob("*.bak"))


LEDGER_TIME_INDEX = "ix_reindex_ledger_index_version_id_updated_at"


def test_a_state_at_revision_0001_gets_the_ledger_time_index_on_open(tmp_path):
    """Revision 0002 adds one index; a SQLite state stamped 0001 without it is upgraded on open, after a backup."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {LEDGER_TIME_INDEX}"))
    engine.dispose()
    _set_revision(url, "0001")

    with _closing(StateStore(url)) as state:
        assert state.schema_revision == head_revision() == "0002"
    indexes = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'reindex_ledger'")}
    assert LEDGER_TIME_INDEX in indexes
    backup = tmp_path / "state.db.pre-0001.bak"
    assert backup.is_file()
    assert LEDGER_TIME_INDEX not in {r[0] for r in sqlite3.connect(backup).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_the_catch_up_finds_new_ledger_rows_through_the_time_index_not_a_walk(tmp_path):
    """What the catch-up asks the ledger before every swap must not read every row of the live version."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    seen: list[tuple[str, object]] = []
    with _closing(StateStore(url)) as state:
        def capture(conn, cursor, statement, parameters, context, executemany):
            if "reindex_ledger" in statement and "updated_at >" in statement:
                seen.append((statement, parameters))

        sa.event.listen(state.engine, "before_cursor_execute", capture)
        from datetime import datetime, timezone

        assert list(state.ledger_changes_since(1, 2, datetime(2026, 12, 7, tzinfo=timezone.utc))) == []
        sa.event.remove(state.engine, "before_cursor_execute", capture)
        assert seen, "ledger_changes_since asked nothing"
        statement, parameters = seen[0]
        with state.engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    steps = [row[-1] for row in plan]
    assert any(LEDGER_TIME_INDEX in step and "updated_at>?" in step for step in steps), steps


def _previous_release_state(path: Path, made_by_today: Path) -> None:
    """A state file in the previous release's schema, holding the rows today's code wrote."""
    db = sqlite3.connect(path)
    db.executescript("\n".join(line for line in PREVIOUS_SCHEMA.read_text().splitlines()
                               if not line.startswith("--")))
    db.execute("ATTACH DATABASE ? AS today", (str(made_by_today),))
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        db.execute(f"INSERT INTO {table} SELECT * FROM today.{table}")
    db.execute("UPDATE reindex_meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.execute("DETACH DATABASE today")
    db.close()
    assert "reindex_traffic" not in tables and VERSION_TABLE not in tables


@pytest.mark.slow  # builds with the real model
def test_a_state_made_by_the_previous_schema_is_upgraded_on_open_and_then_works(tmp_path, minilm_path,
                                                                                demo_corpus):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:24])
    store = f"qdrant+local:{tmp_path / 'q'}"
    today = tmp_path / "today.db"
    config = Config(base_dir=tmp_path, store_url=store, state_url=f"sqlite:///{today}", batch_size=16)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
        store_id = ws.state.store_id
    old = tmp_path / "state.db"
    _previous_release_state(old, today)
    state = f"sqlite:///{old}"

    r = invoke("--store", store, "--state", state, "status", "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert '"physical": "docs__v1"' in r.output
    backup = tmp_path / "state.db.pre-migrations.bak"
    assert backup.is_file()
    assert "reindex_traffic" not in {r[0] for r in sqlite3.connect(backup).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    upgraded = StateStore(state, create=False)
    assert upgraded.schema_revision == head_revision() and upgraded.store_id == store_id
    upgraded.close()

    r = invoke("--store", store, "--state", state, "history", "docs", "--json", cwd=tmp_path)
    assert r.exit_code == 0 and '"action": "apply"' in r.output and '"action": "state-upgrade"' not in r.output
    with _closing(StateStore(state)) as s:
        upgrades = [e for e in s.history(None) if e.action == "state-upgrade"]
    assert len(upgrades) == 1 and upgrades[0].detail["from_revision"] == "none"

    plan_file = tmp_path / "plan-v2.json"
    r = invoke("--store", store, "--state", state, "plan", "docs", "--model", str(minilm_path),
               "--truncate-dim", "128", "-o", str(plan_file), cwd=tmp_path)
    assert r.exit_code == 0, r.output
    r = invoke("--store", store, "--state", state, "--yes", "apply", str(plan_file), cwd=tmp_path)
    assert r.exit_code == 0, r.output
    with Workspace(Config(base_dir=tmp_path, store_url=store, state_url=state)) as ws:
        assert ws.store.resolve("docs") == "docs__v2" and ws.store.count("docs__v2") == 24
        assert ws.store.describe("docs__v2").dim == 128


class _closing:
    def __init__(self, state: StateStore):
        self.state = state

    def __enter__(self) -> StateStore:
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.state.close()


# -- PostgreSQL: shared, so upgraded only on request --------------------------------------------------
@pytest.fixture
def pg_state(postgres_url) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)


@pytest.mark.server
def test_postgresql_state_before_migrations_waits_for_reindex_state_upgrade(pg_state, tmp_path):
    made = StateStore(pg_state)
    made.audit("plan", "docs", detail_kept="yes")
    store_id = made.store_id
    made.close()
    engine = sa.create_engine(pg_state)
    with engine.begin() as conn:  # the previous release's schema: no traffic table, no revision
        conn.execute(sa.text("DROP TABLE reindex_traffic"))
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(sa.text("UPDATE reindex_meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()

    for args in (["status"], ["model", "list"], ["--yes", "forget", "docs"]):
        r = invoke("--state", pg_state, *args, cwd=tmp_path)
        assert r.exit_code == 4, r.output
        assert "reindex state upgrade" in r.output and "none (made before migrations)" in r.output
    assert VERSION_TABLE not in sa.inspect(sa.create_engine(pg_state)).get_table_names()

    r = invoke("--state", pg_state, "state", "upgrade", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert f"none (made before migrations) -> {head_revision()}" in r.output
    r = invoke("--state", pg_state, "state", "upgrade", cwd=tmp_path)
    assert r.exit_code == 0 and "already at" in r.output
    state = StateStore(pg_state, create=False)
    assert state.schema_revision == head_revision() and state.store_id == store_id
    assert [e.action for e in state.history("docs")] == ["plan"]
    assert "reindex_traffic" in sa.inspect(state.engine).get_table_names()
    state.close()
    assert invoke("--state", pg_state, "model", "list", cwd=tmp_path).exit_code == 0


@pytest.mark.server
def test_postgresql_missing_or_empty_database_is_exit_3_for_read_only_commands(pg_state, postgres_url, tmp_path):
    r = invoke("--state", pg_state, "status", cwd=tmp_path)
    assert r.exit_code == 3 and "no reindexer state in" in r.output
    assert sa.inspect(sa.create_engine(pg_state)).get_table_names() == []
    missing = sa.engine.make_url(postgres_url).set(database="no_such_db").render_as_string(hide_password=False)
    for args in (["status"], ["model", "list"]):
        r = invoke("--state", missing, *args, cwd=tmp_path)
        assert r.exit_code == 3 and "no database for the state" in r.output, r.output
    # a command that writes creates the schema in the empty database
    r = invoke("--state", pg_state, "model", "list", cwd=tmp_path)
    assert r.exit_code == 3
    StateStore(pg_state).close()
    assert invoke("--state", pg_state, "model", "list", cwd=tmp_path).exit_code == 0
