"""A langchain-postgres application on its own PostgreSQL table, through adopt, migrate, a model change with a
dimension change, a gated cut-over and a rollback, reading and writing all along.

The application is langchain-postgres' ``PGVectorStore`` with its default table layout
(``langchain_id uuid PRIMARY KEY, content text NOT NULL, embedding vector(384) NOT NULL,
langchain_metadata json``) on ``pgvector+local`` (pgserver's PostgreSQL), reached by the
application over its own driver (SQLAlchemy and asyncpg) and by name. The tool adopts the
table as it is (the model tag goes into ``langchain_metadata``), ``migrate`` turns the name
into a view over ``kb__v2``, and the new model version is the same MiniLM truncated to 256
dimensions. It is evaluated against the live version on judged queries (the corpus's qrels, in
the rows' ``langchain_id``) and cut over only through a gate: a gate asking for a gain refuses
first (exit 6) and leaves the view where it was. A reader runs SQL through the view the whole
time the view is repointed (a dimension change both ways) and no query of it fails.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytest.importorskip("langchain_postgres", reason="pip install langchain-postgres (the test extra)")
pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

from reindexer import commands  # noqa: E402
from reindexer.ab import Judgements  # noqa: E402
from reindexer.adapters.base import MODEL_KEY  # noqa: E402
from reindexer.commands import sync, verify  # noqa: E402
from reindexer.errors import EXIT_GATE_REFUSED, GateRefusedError  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402
from tests.integrations.postgres_apps import (  # noqa: E402
    GATE,
    STRICT,
    WRITES,
    N,
    SqlReader,
    judged_corpus,
    pg_workspace,
    write_judgements,
)

pytestmark = pytest.mark.slow  # two model versions over a real framework store


def _row_id(doc_id: str) -> str:
    """The ``langchain_id`` the application gives a corpus document (the tool's document id of its row)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, doc_id))


def _judgements(queries, qrels, folder: Path) -> tuple[Judgements, Path, Path]:
    """The corpus's qrels in the rows' ids, in memory and as the files ``reindex eval`` reads."""
    judged = {q: {_row_id(d): grade for d, grade in rels.items()} for q, rels in qrels.items()}
    return write_judgements(queries, judged, folder)


def _app_url(ws: Workspace) -> str:
    """The application's own connection string to the PostgreSQL the tool uses (a Unix socket).

    ``prepared_statement_cache_size=0``: langchain-postgres' searches return the ``embedding`` column, and
    SQLAlchemy's asyncpg dialect keeps them prepared; after a cut-over that changes the dimension, each pooled
    connection's first search fails with "cached statement plan is invalid" (docs/adapters.md). Without the
    cache, every statement is planned for the view as it is.
    """
    info = ws.store._client.info
    return (
        f"postgresql+asyncpg://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
        "&prepared_statement_cache_size=0"
    )


class App:
    """The application: langchain-postgres' PGVectorStore on the table (or view) named ``kb``."""

    def __init__(self, url: str):
        from langchain_postgres import PGEngine

        self.engine = PGEngine.from_connection_string(url=url)

    def build(self, embeddings, texts, metadatas, ids) -> None:
        self.engine.init_vectorstore_table(table_name="kb", vector_size=384)
        self.open(embeddings).add_texts(texts, metadatas=metadatas, ids=ids)

    def open(self, embeddings):
        from langchain_postgres import PGVectorStore

        return PGVectorStore.create_sync(engine=self.engine, table_name="kb", embedding_service=embeddings)

    @staticmethod
    def search(store, query: str, k: int) -> list[tuple[str, str]]:
        return [(str(d.id), d.page_content) for d in store.similarity_search(query, k=k)]

    @staticmethod
    def add(store, text: str) -> str:
        [doc_id] = store.add_texts([text], metadatas=[{"source": "app"}])  # the store makes a UUID
        return str(uuid.UUID(str(doc_id)))


#: SQL through the name, as the application reads it; the query vector is a row's own, so no model is needed
VIEW_QUERY = (
    "SELECT langchain_id, content, vector_dims(embedding) FROM kb "
    "ORDER BY embedding <=> (SELECT embedding FROM kb ORDER BY langchain_id LIMIT 1) LIMIT 3"
)


def _finds(store, texts, added) -> None:
    for text, doc_id in zip(texts, added, strict=True):
        assert App.search(store, text, 1)[0][0] == doc_id, text


def _ids(ws, physical) -> list[str]:
    return sorted(p.doc_id for page in ws.store.scroll(physical, batch_size=64) for p in page)


def _payloads(ws, physical) -> dict[str, dict]:
    return {
        p.doc_id: {k: v for k, v in p.payload.items() if k != MODEL_KEY}
        for page in ws.store.scroll(physical, batch_size=64)
        for p in page
    }


def test_a_langchain_postgres_application_through_a_model_change(
    tmp_path, minilm_path, minilm, minilm_256, demo_corpus
):
    docs, judged_queries, qrels = judged_corpus(demo_corpus)
    texts = [d["text"] for d in docs]
    metadatas = [{"source": f"s{i % 3}"} for i in range(N)]
    queries = list(judged_queries.values())[:4]
    with pg_workspace(tmp_path) as ws:
        app = App(_app_url(ws))
        app.build(minilm, texts, metadatas, [_row_id(d["id"]) for d in docs])
        running = app.open(minilm)  # started before the tool came, never restarted
        before = [App.search(running, q, 4) for q in queries]
        original, payloads = ws.store.read_schema("kb"), _payloads(ws, "kb")
        assert original.primary.name == "langchain_id" and original.primary.kind == "uuid"
        assert original.vector == "embedding" and original.metric == "cosine"

        adopted = commands.adopt(ws, "kb", str(minilm_path), text_field="content")
        assert adopted["tag"] == "point" and adopted["points_tagged"] == N
        assert [App.search(app.open(minilm), q, 4) for q in queries] == before

        # The table becomes a view of its name in one transaction: a reader through the name never misses it.
        with SqlReader(ws, VIEW_QUERY) as migrating:
            migrated = commands.migrate(ws, "kb")
        assert migrated["migrated"] and migrated["name_missing_ms"] == 0 and ws.store.resolve("kb") == "kb__v2"
        assert migrating.failures == [] and migrating.queries > 0
        assert original.differences(ws.store.read_schema("kb__v2")) == [] and _payloads(ws, "kb__v2") == payloads
        assert [App.search(app.open(minilm), q, 4) for q in queries] == before
        added = [App.add(app.open(minilm), WRITES[0])]
        assert sync(ws, "kb").versions["v2"]["embedded"] == 1
        assert ws.store.count("kb__v2") == N + 1 and verify(ws, "kb").ok

        plan = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        assert plan.to_version["metric"] == "cosine" and plan.to_version["dim"] == 256
        built = commands.apply(ws, plan, cutover=False)
        assert built.physical == "kb__v3" and ws.store.count("kb__v3") == N + 1
        assert original.for_version(256, "cosine").differences(ws.store.read_schema("kb__v3")) == []
        assert _payloads(ws, "kb__v3") == _payloads(ws, "kb__v2")
        added.append(App.add(app.open(minilm), WRITES[1]))  # into v2, still live
        live_ids = _ids(ws, "kb__v2")

        # The gate judges v3 against the live v2 on the corpus's qrels; one asking for a gain refuses.
        judgements, queries_file, qrels_file = _judgements(judged_queries, qrels, tmp_path)
        _, _, decisions = commands.evaluate_versions(
            ws, "kb", str(queries_file), str(qrels_file), versions="live,v3", gate=GATE
        )
        assert decisions["v3"].passed, decisions["v3"].reasons
        with pytest.raises(GateRefusedError) as refused:
            commands.apply(ws, plan, judgements=judgements, gate=STRICT)
        assert refused.value.exit_code == EXIT_GATE_REFUSED and "refused promoting v3" in refused.value.message
        assert ws.store.resolve("kb") == "kb__v2" and ws.store.count("kb__v3") == N + 1

        with SqlReader(ws, VIEW_QUERY) as reader:
            moved = commands.apply(ws, plan, judgements=judgements, gate=GATE)  # the gated cut-over
            assert moved.gate["passed"] and moved.cut_over and moved.live == "kb__v3"
            assert moved.stats["caught_up"] == 1
            assert _ids(ws, "kb__v3") == live_ids and verify(ws, "kb").ok
            after = app.open(minilm_256)
            _finds(after, WRITES[:2], added)
            added.append(App.add(after, WRITES[2]))
            _finds(app.open(minilm_256), WRITES, added)
            live_ids = _ids(ws, "kb__v3")
            assert len(live_ids) == N + 3

            assert commands.rollback(ws, "kb")["live"] == "kb__v2"
        assert reader.failures == [] and reader.queries > 0
        assert _ids(ws, "kb__v2") == live_ids and _payloads(ws, "kb__v2") == _payloads(ws, "kb__v3")
        assert verify(ws, "kb").ok
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        back = app.open(minilm)
        _finds(back, WRITES, added)
        written = {doc_id: p for doc_id, p in _payloads(ws, "kb__v2").items() if doc_id in added}
        assert [written[a]["content"] for a in added] == WRITES  # the application's rows are in the live version
        _finds(running, WRITES, added)  # the instance that never restarted
        assert [[a for a in App.search(running, q, 4 + 3) if a[0] not in added][:4] for q in queries] == before
