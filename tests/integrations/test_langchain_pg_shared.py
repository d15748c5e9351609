"""langchain-postgres' shared table (``PGVector``: every collection's rows in ``langchain_pg_embedding``): one
collection through adopt, a model change with a dimension change, a cut-over and a rollback, the application
reading and writing all along, and the other collection's rows never touched.

Two application collections, ``kb`` and ``notes``, made by ``langchain_postgres.PGVector`` (its default:
an untyped ``vector`` column) on ``pgvector+local``, reached by the application over its own engine
(SQLAlchemy and psycopg). ``kb`` is addressed as ``langchain_pg_embedding.kb``: adopted in place (no
migrate: the name is an alias from the start), built again with MiniLM truncated to 256 dimensions, cut
over and rolled back while one reader runs PGVector's query shape in SQL against ``kb`` and another
searches ``notes`` through PGVector. ``notes``' rows are hashed with their ``xmin`` (a row rewritten with the
same values would change it) before the tool starts and after it has finished. A cut-over of ``kb`` killed
at each side of its one transaction (the move of the rows) is repaired by the operator's next command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("langchain_postgres", reason="pip install langchain-postgres (the test extra)")
pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

from reindexer import commands, killpoints  # noqa: E402
from reindexer.adapters.base import CollectionSpec, Point  # noqa: E402
from reindexer.commands import sync, verify  # noqa: E402
from reindexer.errors import ConflictError, UsageError  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402
from tests.integrations.postgres_apps import WRITES, connect, pg_workspace  # noqa: E402

pytestmark = pytest.mark.slow  # two model versions over a real framework store

KB = "langchain_pg_embedding.kb"
N = 16
# PGVector's query for one collection (its collection looked up by name, joined), with the query vector taken
# from the collection itself so that the reader needs no model: every answer must come from one version.
KB_QUERY = (
    "SELECT e.id, vector_dims(e.embedding) FROM langchain_pg_embedding e "
    "JOIN langchain_pg_collection c ON e.collection_id = c.uuid WHERE c.name = 'kb' "
    "ORDER BY e.embedding <=> (SELECT x.embedding FROM langchain_pg_embedding x JOIN langchain_pg_collection y "
    "ON x.collection_id = y.uuid WHERE y.name = 'kb' ORDER BY x.id LIMIT 1) LIMIT 3"
)
NOTES_HASH = (
    "SELECT count(*), md5(string_agg(concat_ws('|', e.xmin::text, e.id, e.collection_id::text, e.embedding::text, "
    "e.document, e.cmetadata::text), '#' ORDER BY e.id)), (SELECT concat_ws('|', xmin::text, uuid::text, "
    "cmetadata::text) FROM langchain_pg_collection WHERE name = 'notes') FROM langchain_pg_embedding e "
    "JOIN langchain_pg_collection c ON e.collection_id = c.uuid WHERE c.name = 'notes'"
)


class App:
    """The application: langchain-postgres' PGVector, one instance per collection and model."""

    def __init__(self, ws: Workspace):
        from sqlalchemy import create_engine

        info = ws.store._client.info
        self.engine = create_engine(
            f"postgresql+psycopg://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
        )

    def open(self, collection: str, embeddings):
        from langchain_postgres import PGVector

        return PGVector(embeddings, connection=self.engine, collection_name=collection)

    @staticmethod
    def top(store, query: str) -> str:
        return str(store.similarity_search(query, k=1)[0].id)


class Readers:
    """Two threads: PGVector's query of ``kb`` in SQL (one version per answer), and PGVector searching ``notes``."""

    def __init__(self, ws: Workspace, notes):
        self.conn, self.notes = connect(ws), notes
        self.stop, self.kb_queries, self.notes_queries, self.failures = threading.Event(), 0, 0, []
        self.threads = [
            threading.Thread(target=self._kb, daemon=True),
            threading.Thread(target=self._notes, daemon=True),
        ]

    def _kb(self) -> None:
        while not self.stop.is_set():
            try:
                rows = self.conn.execute(KB_QUERY).fetchall()
                assert len(rows) == 3 and len({r[1] for r in rows}) == 1, rows  # one version's rows
                self.kb_queries += 1
            except Exception as exc:  # noqa: BLE001 - what the test counts
                self.failures.append(f"kb: {exc!r}")

    def _notes(self) -> None:
        while not self.stop.is_set():
            try:
                assert self.notes.similarity_search("a note about tides", k=2)
                self.notes_queries += 1
            except Exception as exc:  # noqa: BLE001 - what the test counts
                self.failures.append(f"notes: {exc!r}")

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.conn.close()


def _dims(conn, collection: str) -> list[int]:
    rows = conn.execute(
        "SELECT DISTINCT vector_dims(e.embedding) FROM langchain_pg_embedding e JOIN langchain_pg_collection c "
        "ON e.collection_id = c.uuid WHERE c.name = %s",
        (collection,),
    ).fetchall()
    return sorted(r[0] for r in rows)


def _ids(ws, name) -> list[str]:
    return sorted(p.doc_id for page in ws.store.scroll(name, batch_size=64) for p in page)


def test_one_collection_of_the_shared_table_through_a_model_change(
    tmp_path, minilm_path, minilm, minilm_256, demo_corpus
):
    texts = [d["text"] for d in demo_corpus.documents[: N + 6]]
    with pg_workspace(tmp_path) as ws, connect(ws) as sql:
        app = App(ws)
        app.open("kb", minilm).add_texts(
            texts[:N], metadatas=[{"source": f"s{i % 3}"} for i in range(N)], ids=[f"kb-{i}" for i in range(N)]
        )
        notes = app.open("notes", minilm)
        notes.add_texts(texts[N:], metadatas=[{"kind": "note"}] * 6, ids=[f"note-{i}" for i in range(6)])
        running = app.open("kb", minilm)  # started before the tool came, never restarted
        untouched = sql.execute(NOTES_HASH).fetchone()
        kb_vectors = sql.execute("SELECT id, embedding::text FROM langchain_pg_embedding ORDER BY id").fetchall()

        # Addressing: one collection of the table, never the table as a whole.
        assert (
            ws.store.list_aliases()[KB] == f"{KB}__v1" and "langchain_pg_embedding" not in ws.store.list_collections()
        )
        with pytest.raises(UsageError, match=r"langchain_pg_embedding\.NAME") as whole:
            commands.adopt(ws, "langchain_pg_embedding", str(minilm_path), text_field="document")
        assert whole.value.exit_code == 2

        adopted = commands.adopt(ws, KB, str(minilm_path), text_field="document")
        assert adopted["physical"] == f"{KB}__v1" and adopted["points_tagged"] == N and adopted["tag"] == "point"
        # Tagged in cmetadata, nothing else written: the vectors are the application's, bit for bit.
        assert (
            sql.execute("SELECT id, embedding::text FROM langchain_pg_embedding ORDER BY id").fetchall() == kb_vectors
        )
        with pytest.raises(ConflictError, match="already an alias"):
            commands.migrate(ws, KB)  # nothing to migrate: the application keeps reading the collection by name
        added = [running.add_texts([WRITES[0]], metadatas=[{"source": "app"}])[0]]
        assert sync(ws, KB).versions["v1"]["embedded"] == 1 and verify(ws, KB).ok

        plan = commands.plan(ws, KB, model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        built = commands.apply(ws, plan, cutover=False)
        assert built.physical == f"{KB}__v2" and ws.store.count(f"{KB}__v2") == N + 1
        assert ws.store.describe(f"{KB}__v2").dim == 256 and _dims(sql, "kb") == [384]
        assert ws.store.describe(f"{KB}__v2").ann_index["kind"] == "hnsw"  # on the version's own table
        added.append(running.add_texts([WRITES[1]])[0])  # into v1, still live
        live_ids = _ids(ws, KB)

        with Readers(ws, notes) as readers:
            moved = commands.cutover(ws, KB)
            assert moved["live"] == f"{KB}__v2" and moved["caught_up"] == {"embedded": 1, "deleted": 0}
            assert _dims(sql, "kb") == [256] and _ids(ws, KB) == live_ids and verify(ws, KB).ok
            assert ws.store.describe(KB).ann_index == {}  # the table and its index are gone: the rows moved
            after = app.open("kb", minilm_256)
            assert [App.top(after, w) for w in WRITES[:2]] == added
            added.append(after.add_texts([WRITES[2]])[0])
            assert App.top(app.open("kb", minilm_256), WRITES[2]) == added[2]
            live_ids = _ids(ws, KB)

            assert commands.rollback(ws, KB)["live"] == f"{KB}__v1"
        assert readers.failures == [] and readers.kb_queries > 0 and readers.notes_queries > 0
        assert _dims(sql, "kb") == [384] and _ids(ws, KB) == live_ids and verify(ws, KB).ok
        assert [App.top(app.open("kb", minilm), w) for w in WRITES] == added
        assert [App.top(running, w) for w in WRITES] == added  # the instance that never restarted

        # The tool's writes stay inside kb: an id of notes is refused, a delete of one reaches nothing.
        with pytest.raises(ConflictError, match="note-0"):
            ws.store.upsert(KB, [Point("note-0", [0.1] * 384, {"document": "x", "cmetadata": {}})])
        ws.store.delete(KB, ["note-0"])
        assert commands.gc(ws, KB, keep=0)["dropped"] == [f"{KB}__v2"]
        assert f"{KB}__v2" not in ws.store.list_collections() and ws.store.count(KB) == N + 3
        assert sql.execute(NOTES_HASH).fetchone() == untouched


def test_a_typed_shared_column_refuses_a_version_of_another_dimension(tmp_path):
    """``PGVector(embedding_length=8)`` makes ``vector(8)``, which every collection's rows share: a version of
    another dimension could never be cut over, so it is refused (exit 2) before anything is created; one of the
    same dimension is cut over, the application's HNSW index on the shared column kept up to date."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pg_workspace(tmp_path) as ws, connect(ws) as sql:
        from langchain_postgres import PGVector

        app = App(ws)
        store = PGVector(DeterministicFakeEmbedding(size=8), connection=app.engine, collection_name="kb")
        store.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
        sql.execute("ALTER TABLE langchain_pg_embedding ALTER COLUMN embedding TYPE vector(8)")
        sql.execute("CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)")
        before = ws.store.list_collections()
        with pytest.raises(UsageError, match=r"vector\(8\)") as refused:
            ws.store.create_collection(CollectionSpec(name=f"{KB}__v2", dim=4))
        assert refused.value.exit_code == 2 and ws.store.list_collections() == before
        # apply asks the same before it records the version (state untouched too)
        with pytest.raises(UsageError, match=r"vector\(8\)"):
            ws.store.check_copyable(f"{KB}__v1", 4)
        ws.store.check_copyable(f"{KB}__v1", 8)

        ws.store.create_collection(CollectionSpec(name=f"{KB}__v2", dim=8))
        ws.store.upsert(
            f"{KB}__v2", [Point(str(i), [float(i)] * 8, {"document": "x", "cmetadata": {}}) for i in (1, 2, 3)]
        )
        ws.store.set_alias(KB, f"{KB}__v2")
        assert {d.id for d in store.similarity_search_by_vector([1.0] * 8, k=3)} == {"1", "2", "3"}
        assert ws.store.count(KB) == 3 and ws.store.count(f"{KB}__v1") == 3
        assert sql.execute("SELECT DISTINCT vector_dims(embedding) FROM langchain_pg_embedding").fetchall() == [(8,)]


def _killed(tmp_path: Path, point: str, *args: str) -> None:
    """``reindex ARGS`` in a new process on the test's store and state, SIGKILLed at ``point``."""
    env = {
        **os.environ,
        "REINDEX_STORE": f"pgvector+local:{tmp_path / 'pg'}",
        "REINDEX_STATE": f"sqlite:///{tmp_path}/state.db",
        "REINDEX_PROGRESS": "0",
        killpoints.ENV: point,
    }
    run = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--yes", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr


def test_a_cutover_of_a_shared_collection_killed_at_its_move_is_repaired_by_the_next_command(
    tmp_path, minilm_path, minilm, demo_corpus
):
    """Killed before the move: nothing moved, v1 stays live and the next cut-over goes through. Killed after the
    move's transaction committed, before the state records it: the rows in the shared table are v2's, and the
    next command (status) records v2 live from what the store says; a rollback then moves v1's rows back."""
    texts = [d["text"] for d in demo_corpus.documents[: N + 3]]
    with pg_workspace(tmp_path) as ws, connect(ws) as sql:
        app = App(ws)
        app.open("kb", minilm).add_texts(texts[:N], ids=[f"kb-{i}" for i in range(N)])
        app.open("notes", minilm).add_texts(texts[N:], ids=[f"note-{i}" for i in range(3)])
        untouched = sql.execute(NOTES_HASH).fetchone()
        commands.adopt(ws, KB, str(minilm_path), text_field="document")
        plan = commands.plan(ws, KB, model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        commands.apply(ws, plan, cutover=False)
        kb_ids = _ids(ws, KB)

    _killed(tmp_path, "before-alias-swap", "cutover", KB)
    with pg_workspace(tmp_path) as ws, connect(ws) as sql:
        assert _dims(sql, "kb") == [384] and ws.store.resolve(KB) == f"{KB}__v1"
        [row] = commands.status(ws, KB)
        assert row["live"]["physical"] == f"{KB}__v1" and [s["physical"] for s in row["shadows"]] == [f"{KB}__v2"]

    _killed(tmp_path, "after-alias-swap", "cutover", KB)
    with pg_workspace(tmp_path) as ws, connect(ws) as sql:
        assert _dims(sql, "kb") == [256] and ws.store.resolve(KB) == f"{KB}__v2"  # moved; the state lags
        [row] = commands.status(ws, KB)  # the next command records what the store says
        assert row["live"]["physical"] == f"{KB}__v2" and [r["physical"] for r in row["retired"]] == [f"{KB}__v1"]
        assert [(r["kind"], r["recorded"]) for r in row["repairs"]] == [("completed", True)]
        assert _ids(ws, KB) == _ids(ws, f"{KB}__v1") == kb_ids and commands.verify(ws, KB).ok
        assert commands.rollback(ws, KB)["live"] == f"{KB}__v1"
        assert _dims(sql, "kb") == [384] and _ids(ws, KB) == kb_ids and commands.verify(ws, KB).ok
        assert sql.execute(NOTES_HASH).fetchone() == untouched
