"""What only the PostgreSQL backend needs checked: found through its entry point alone, the
model of a collection in PostgreSQL (tables, views, the catalog, the HNSW index), cut-overs
under SQL readers, and bad input (no extension, bad names, dimensions, credentials).

The contract suite (test_contract.py) runs on ``pgvector-local`` and ``pgvector-server``
through tests/plugins/stores.py; these tests use the same stores directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

from reindexer.adapters import CollectionSpec, Point, open_store, parse_store_url  # noqa: E402
from reindexer.errors import (  # noqa: E402
    BackendError,
    BackendUnavailableError,
    ConflictError,
    NotFoundError,
    TransientBackendError,
    UsageError,
)


def unit(i: int, dim: int = 4) -> list[float]:
    v = [0.01] * dim
    v[i % dim] = 1.0
    return v


@pytest.fixture
def local_url(tmp_path: Path) -> str:
    return f"pgvector+local:{tmp_path / 'pg'}"


@pytest.fixture
def server(empty_pgvector_server):
    return empty_pgvector_server


# -- the plugin path -------------------------------------------------------------
def test_found_only_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import entry_points

    from reindexer.adapters import registry
    from reindexer.adapters.pgvector import PgvectorBackend

    found = {ep.name: ep.value for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert found["pgvector"] == "reindexer.adapters.pgvector:PgvectorBackend"
    assert "pgvector" not in registry._BUILTIN
    assert isinstance(registry.backends()["pgvector"], PgvectorBackend)
    assert parse_store_url("pgvector://db.example:5433/app").url == "pgvector://db.example:5433/app"

    # Without the entry point the scheme is unknown: nothing else registers it.
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in real(group=group) if e.name != "pgvector"])
    monkeypatch.setattr(registry, "_backends", None)
    with pytest.raises(UsageError) as err:
        parse_store_url("pgvector://db.example:5433/app")
    assert "unknown store scheme 'pgvector'" in str(err.value)


def test_store_urls(tmp_path: Path) -> None:
    loc = parse_store_url("pgvector://db.example/app")
    assert (loc.backend, loc.embedded, loc.url) == ("pgvector", False, "pgvector://db.example:5432/app")
    loc = parse_store_url("pgvector+local:data/pg", base_dir=tmp_path)
    assert loc.embedded and loc.url == f"pgvector+local:{tmp_path / 'data/pg'}"
    for bad, text in [
        ("pgvector://db.example:5432", "names no database"),
        ("pgvector://db.example:5432/app?sslmode=require", "PGSSLMODE"),
        ("pgvector://app:hunter2@db.example:5432/app", "must not contain credentials"),
    ]:
        with pytest.raises(UsageError) as err:
            parse_store_url(bad)
        assert text in str(err.value) + str(err.value.hint)
        assert "hunter2" not in str(err.value) + str(err.value.hint)


# -- the model of a collection in PostgreSQL ----------------------------------------
def test_tables_views_catalog_and_the_hnsw_index(local_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REINDEX_PG_MAINTENANCE_WORK_MEM", "96MB")
    with open_store(local_url) as s:
        s.create_collection(
            CollectionSpec(
                "docs__v1",
                dim=4,
                metric="cosine",
                payload_indexes={"lang": "keyword"},
                index_params={"hnsw_m": 8, "hnsw_ef_construct": 32},
            )
        )
        s.upsert("docs__v1", [Point(f"d{i}", unit(i), {"lang": "en", "i": i}) for i in range(300)])
        conn = s._client
        # Before finish_writes: the GIN payload index only, no ANN index yet (built after the bulk load).
        defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs__v1'")]
        assert not any("hnsw" in d for d in defs) and any("jsonb_path_ops" in d for d in defs)
        s.finish_writes("docs__v1")
        s.finish_writes("docs__v1")  # once built, a later pass leaves it
        defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs__v1'")]
        (hnsw,) = [d for d in defs if "hnsw" in d]
        assert "vector_cosine_ops" in hnsw and "m='8'" in hnsw and "ef_construction='32'" in hnsw
        columns = conn.execute(
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = 'docs__v1'::regclass AND a.attname = c.column_name "
            "WHERE c.table_name = 'docs__v1' ORDER BY c.ordinal_position"
        ).fetchall()
        assert columns == [("id", "text"), ("embedding", "vector(4)"), ("payload", "jsonb")]

        s.set_alias("docs", "docs__v1")
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'docs'").fetchone()[0] == "v"
        # The application's SQL through the view uses the index.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN SELECT id FROM docs ORDER BY embedding <=> '[1,0,0,0]' LIMIT 5")
        )
        assert "reindex_hnsw_" in plan
        conn.execute("RESET enable_seqscan")
        hits = s.search("docs", unit(3), k=60)
        assert len(hits) == 60 and hits[0].doc_id in {f"d{i}" for i in range(3, 300, 4)}
        catalog = conn.execute("SELECT name, dim, metric FROM reindexer_collections").fetchall()
        assert catalog == [("docs__v1", 4, "cosine")]


def test_local_store_persists_and_is_shared_by_processes(local_url: str) -> None:
    with open_store(local_url) as s:
        s.create_collection(CollectionSpec("c", dim=4, metric="dot", metadata={"reindex.model": "m@1"}))
        s.upsert("c", [Point(f"p{i}", unit(i), {"i": i}) for i in range(10)])
        s.set_alias("live", "c")
        with open_store(local_url) as again:  # a second store in this process shares the server
            assert again.count("live") == 10
        assert s.count("live") == 10  # closing one leaves the other's server up
        # Another process opens the same folder while this one holds it (no lock, unlike Qdrant local).
        code = (
            "from reindexer.adapters import open_store\n"
            f"s = open_store({local_url!r})\n"
            "print(s.count('live'), s.describe('live').metadata['reindex.model'])\n"
            "s.upsert('c', [__import__('reindexer.adapters', fromlist=['Point']).Point('new', [1.0, 0, 0, 0], {})])\n"
            "s.close()\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["10", "m@1"]
        assert s.count("c") == 11  # its write is visible here, and the server is still ours
    with open_store(local_url) as s:
        assert s.list_aliases() == {"live": "c"} and s.count("live") == 11
        assert s.describe("live").metadata == {"reindex.model": "m@1"}


# -- cut-over under load ------------------------------------------------------------
def test_view_swaps_under_sql_readers_never_fail_and_answer_from_one_version(server) -> None:
    versions = {1: (40, 4), 2: (50, 4), 3: (60, 8)}  # version -> (rows, dimension)
    with open_store(server.url()) as s:
        for v, (rows, dim) in versions.items():
            s.create_collection(CollectionSpec(f"docs__v{v}", dim=dim, metric="cosine"))
            s.upsert(f"docs__v{v}", [Point(f"v{v}-{i}", unit(i, dim), {"v": v}) for i in range(rows)])
            s.finish_writes(f"docs__v{v}")
        s.set_alias("docs", "docs__v1")

        stop = threading.Event()
        answers: list[tuple] = []
        failures: list[str] = []

        def reader(prepared: bool) -> None:
            # The application's own SQL through the view; psycopg prepares it server-side where asked.
            with server.connect() as conn:
                while not stop.is_set():
                    try:
                        row = conn.execute(
                            "SELECT count(*), min((payload->>'v')::int), max((payload->>'v')::int), "
                            "min(vector_dims(embedding)) FROM docs",
                            prepare=prepared,
                        ).fetchone()
                        near = conn.execute(
                            "SELECT id FROM docs ORDER BY embedding <=> (SELECT embedding FROM docs LIMIT 1) LIMIT 3",
                            prepare=prepared,
                        ).fetchall()
                        answers.append((*row, len({r[0].split("-")[0] for r in near})))
                    except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                        failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=reader, args=(p,)) for p in (False, False, True)]
        for t in threads:
            t.start()
        swaps = []
        try:
            time.sleep(0.3)
            for target in (2, 1, 3, 1, 3, 2, 1):  # 3 is a dimension change, both ways
                started = time.perf_counter()
                s.set_alias("docs", f"docs__v{target}")
                swaps.append(time.perf_counter() - started)
                time.sleep(0.15)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        expected = {(rows, v, v, dim, 1) for v, (rows, dim) in versions.items()}
        assert set(answers) <= expected, set(answers) - expected
        assert len(set(answers)) == 3 and len(answers) > 50
        assert s.get_alias("docs") == "docs__v1"
        print(f"\n{len(answers)} answers through the view, {len(swaps)} swaps, slowest {max(swaps) * 1000:.0f} ms")


def test_prepared_statements_across_a_dimension_change(server) -> None:
    # What docs/adapters.md tells applications: a prepared statement returning the vector column with its
    # dimension fails after a dimension change; one returning `embedding::vector` is planned again.
    import psycopg

    with open_store(server.url()) as s:
        s.create_collection(CollectionSpec("docs__v1", dim=4, metric="cosine"))
        s.create_collection(CollectionSpec("docs__v2", dim=8, metric="cosine"))
        s.upsert("docs__v1", [Point("a", unit(0), {})])
        s.upsert("docs__v2", [Point("b", unit(0, 8), {})])
        s.set_alias("docs", "docs__v1")
        with server.connect() as conn:
            typed, untyped = "SELECT id, embedding FROM docs", "SELECT id, embedding::vector FROM docs"
            for _ in range(3):
                assert conn.execute(typed, prepare=True).fetchall()[0][0] == "a"
                assert conn.execute(untyped, prepare=True).fetchall()[0][0] == "a"
            s.set_alias("docs", "docs__v2")
            (row,) = conn.execute(untyped, prepare=True).fetchall()
            assert row[0] == "b" and row[1].count(",") == 7  # text: no pgvector adapters on this connection
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan must not change result type"):
                conn.execute(typed, prepare=True)


def test_grants_on_the_view_survive_a_dimension_change(server) -> None:
    with server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS app_reader")
        conn.execute("CREATE ROLE app_reader")
    try:
        with open_store(server.url()) as s:
            s.create_collection(CollectionSpec("docs__v1", dim=4, metric="dot"))
            s.create_collection(CollectionSpec("docs__v2", dim=8, metric="dot"))
            s.set_alias("docs", "docs__v1")
            with server.connect() as conn:
                conn.execute("GRANT SELECT ON docs TO app_reader")
            s.set_alias("docs", "docs__v2")
            with server.connect() as conn:
                assert conn.execute("SELECT has_table_privilege('app_reader', 'docs', 'SELECT')").fetchone()[0]
                assert conn.execute("SELECT vector_dims(embedding) FROM docs LIMIT 1").fetchall() == []
                typ = conn.execute(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'docs'::regclass AND attname = 'embedding'"
                ).fetchone()[0]
                assert typ == "vector(8)"
            s.drop_alias("docs")
    finally:
        with server.connect() as conn:
            conn.execute("DROP ROLE IF EXISTS app_reader")


def test_an_applications_table_replaced_by_its_view_keeps_the_grants_others_held(server) -> None:
    """migrate's last step: the privileges an application's role held on its table are granted on the view."""
    with server.connect() as conn:
        _drop_role(conn, "app_writer")
        conn.execute("CREATE ROLE app_writer")
        conn.execute("CREATE TABLE kb (id text PRIMARY KEY, embedding vector(4) NOT NULL, payload jsonb NOT NULL)")
        conn.execute("GRANT SELECT, INSERT ON kb TO app_writer")
    try:
        with open_store(server.url()) as s:
            s.create_collection(CollectionSpec("kb__v2", dim=4, metric="cosine"))
            assert s.replace_by_alias("kb", "kb__v2")
            assert s.list_aliases() == {"kb": "kb__v2"} and "kb" not in s.list_collections()
            with server.connect() as conn:
                kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'kb'").fetchone()[0]
                held = [
                    conn.execute("SELECT has_table_privilege('app_writer', 'kb', %s)", (p,)).fetchone()[0]
                    for p in ("SELECT", "INSERT", "DELETE")
                ]
                assert kind == "v" and held == [True, True, False]
            s.drop_alias("kb")
            s.drop_collection("kb__v2")
    finally:
        with server.connect() as conn:
            conn.execute("DROP VIEW IF EXISTS kb")
            conn.execute("DROP TABLE IF EXISTS kb")
            _drop_role(conn, "app_writer")


# -- bad input ----------------------------------------------------------------------
def test_a_database_without_the_extension_is_exit_2_naming_create_extension(server, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        open_store(server.url("plain"))
    assert err.value.exit_code == 2
    assert "CREATE EXTENSION vector" in err.value.hint and "superuser" in err.value.hint
    with server.connect("plain") as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'reindexer_%'").fetchone()[0] == 0
    from reindexer.state import StateStore

    StateStore(f"sqlite:///{tmp_path}/s.db").close()  # status never creates a state
    r = _reindex("--store", server.url("plain"), "--state", f"sqlite:///{tmp_path}/s.db", "status")
    assert r.returncode == 2, r.stderr
    assert "CREATE EXTENSION vector" in r.stderr and "Traceback" not in r.stderr


def test_names_and_dimensions_are_refused_before_anything_is_created(local_url: str) -> None:
    from reindexer.adapters.registry import backends

    backend = backends()["pgvector"]
    for bad in ["a" * 64, "reindexer_collections", "docs;drop", "", "../x"]:
        with pytest.raises(UsageError):
            backend.validate_collection_name(bad)
    backend.validate_collection_name("My-Docs.v2")  # quoted identifiers take these
    with open_store(local_url) as s:
        with pytest.raises(UsageError) as err:
            s.create_collection(CollectionSpec("big", dim=2001, metric="cosine"))
        assert "2000" in str(err.value) and err.value.exit_code == 2
        with pytest.raises(UsageError):
            s.create_collection(CollectionSpec("x" * 64, dim=4))
        assert s.list_collections() == []
        assert (
            s._client.execute(
                "SELECT count(*) FROM pg_class WHERE relname IN ('big', 'reindexer_collections')"
            ).fetchone()[0]
            == 0
        )
        s.create_collection(CollectionSpec("My-Docs.v2", dim=4, metric="euclid"))
        s.upsert("My-Docs.v2", [Point("a", unit(0), {})])
        assert s.search("My-Docs.v2", unit(0), k=1)[0].doc_id == "a"
        # A table the application made is not taken over by a collection or an alias of that name.
        s._client.execute("CREATE TABLE app_table (id int)")
        with pytest.raises(ConflictError):
            s.create_collection(CollectionSpec("app_table", dim=4))
        with pytest.raises(ConflictError):
            s.set_alias("app_table", "My-Docs.v2")


def test_a_role_without_ddl_rights_is_exit_2_naming_the_privilege(server, monkeypatch) -> None:
    with server.connect() as conn:
        _drop_role(conn, "app_ro")
        conn.execute("CREATE ROLE app_ro LOGIN PASSWORD 'ro-pass-1'")  # PostgreSQL 15+: no CREATE on public
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_ro")  # a reader: the catalog, if made
    try:
        monkeypatch.setenv("PGUSER", "app_ro")
        monkeypatch.setenv("PGPASSWORD", "ro-pass-1")
        with open_store(server.url()) as s:
            assert s.list_collections() == []  # reads need no DDL right
            with pytest.raises(UsageError) as err:
                s.create_collection(CollectionSpec("docs__v1", dim=4))
        assert err.value.exit_code == 2
        assert "permission denied" in str(err.value) and "CREATE on the schema" in err.value.hint
        with server.connect() as conn:
            assert conn.execute("SELECT to_regclass('docs__v1')").fetchone()[0] is None
    finally:
        with server.connect() as conn:
            _drop_role(conn, "app_ro")


@pytest.mark.slow  # saves a model with a 2,048-dimension head
def test_a_model_above_2000_dimensions_is_refused_by_plan_with_nothing_created(local_url, minilm_path, tmp_path):
    from click.testing import CliRunner
    from sentence_transformers import SentenceTransformer, models

    from reindexer.cli import cli
    from tests.plugins.corpus import write_jsonl

    base = SentenceTransformer(str(minilm_path), device="cpu")
    SentenceTransformer(modules=[*base, models.Dense(384, 2048)], device="cpu").save(str(tmp_path / "wide"))
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(5)])
    state = f"sqlite:///{tmp_path}/state.db"
    r = CliRunner().invoke(
        cli,
        [
            "--store",
            local_url,
            "--state",
            state,
            "plan",
            "docs",
            "--model",
            str(tmp_path / "wide"),
            "--source",
            f"jsonl:{corpus}",
            "-o",
            str(tmp_path / "p.json"),
        ],
    )
    assert r.exit_code == 2, r.output
    assert "dimension 2048 is above 2000" in r.stderr and "--truncate-dim" in r.stderr
    assert not (tmp_path / "p.json").exists()
    with open_store(local_url) as s:
        assert s.list_collections() == [] and s.list_aliases() == {}
    r = CliRunner().invoke(cli, ["--json", "--store", local_url, "--state", state, "status"])
    assert r.exit_code != 0 or json.loads(r.stdout) == []  # no version was recorded


def test_credentials_come_from_the_environment_and_never_show(server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PGPASSWORD")
    secret_file = tmp_path / "pw"
    secret_file.write_text(server.password + "\n")
    monkeypatch.setenv("PGPASSWORD_FILE", str(secret_file))
    with open_store(server.url()) as s:
        assert s.list_collections() == []
    monkeypatch.delenv("PGPASSWORD_FILE")
    monkeypatch.setenv("PGPASSWORD", "wrong-" + server.password)
    with pytest.raises(UsageError) as err:  # not retried: a wrong password does not heal
        open_store(server.url())
    text = str(err.value) + str(err.value.hint)
    assert "PGPASSWORD" in err.value.hint and server.password not in text


def test_an_unreachable_server_is_exit_5_after_bounded_retries(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as err:
        open_store("pgvector://127.0.0.1:9/app")
    assert err.value.exit_code == 5 and time.monotonic() - started < 20


def test_client_errors_map_into_the_tree() -> None:
    import psycopg
    from psycopg import errors

    from reindexer.adapters.pgvector import PgvectorStore

    store = object.__new__(PgvectorStore)
    store.location = "pgvector://db.example:5432/app"
    store._secrets = ["sekrit-77"]
    store._client = None
    cases = [
        (errors.UndefinedTable('relation "docs" does not exist'), NotFoundError),
        (errors.DuplicateTable('relation "docs" already exists'), ConflictError),
        (errors.InsufficientPrivilege("permission denied for schema public"), UsageError),
        (errors.AdminShutdown("terminating connection due to administrator command"), TransientBackendError),
        (errors.DeadlockDetected("deadlock detected"), TransientBackendError),
        (
            psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"),
            TransientBackendError,
        ),
        (psycopg.OperationalError('password authentication failed for user "app" sekrit-77'), UsageError),
        (errors.DataException("expected 4 dimensions, not 3"), BackendError),
    ]
    for exc, expected in cases:
        mapped = store._map(exc, "count 'docs'")
        assert type(mapped) is expected, (exc, mapped)
        assert "sekrit-77" not in str(mapped) and "pgvector://db.example:5432/app" in str(mapped)


def _drop_role(conn, role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(f"DROP OWNED BY {role}")  # its grants on the catalog go first
        conn.execute(f"DROP ROLE {role}")


def _reindex(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REINDEX_RETRY_ATTEMPTS": "2", "REINDEX_RETRY_INITIAL": "0.05", "REINDEX_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "reindexer.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
