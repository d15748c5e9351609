"""A LlamaIndex application on its own PostgreSQL table, through adopt, migrate, a model change with a
dimension change, a gated cut-over and a rollback, reading, writing and deleting all along.

The application is LlamaIndex's ``PGVectorStore`` (llama-index-vector-stores-postgres) with its
default table, ``data_kb`` for ``table_name="kb"`` (``id bigserial PRIMARY KEY, text varchar NOT
NULL, metadata_ json, node_id varchar, embedding vector(384)``, a btree index on
``metadata_->>'ref_doc_id'``) and the HNSW index its ``hnsw_kwargs`` make, on ``pgvector+local``
(pgserver's PostgreSQL), reached over its own drivers (SQLAlchemy on psycopg2, and asyncpg) by
name. What sets it apart from langchain-postgres' table:

- the key the tool knows a row by is the table's ``id``, which PostgreSQL generates, while
  LlamaIndex knows a node by ``node_id``: the qrels of the gate name ``id``;
- that ``id`` comes from a sequence ``OWNED BY data_kb.id``; every version of the table draws
  from it, so a row the application writes into any version gets an id none holds, and
  migrate's drop of ``data_kb`` must leave the sequence to the versions;
- ``metadata_`` is ``json``, not ``jsonb``: the model tag lives in it all the same;
- with ``hybrid_search=True`` the table has a generated ``text_search_tsv`` column, which no
  INSERT may write and every version must generate again.

The new model version is the same MiniLM truncated to 256 dimensions, evaluated against the live
version on judged queries and cut over through a gate (a gate asking for a gain refuses first,
and leaves the view where it was). A reader runs SQL through the view the whole time the view is
repointed (a dimension change both ways) and no query of it fails.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "llama_index.vector_stores.postgres",
    reason="scripts/setup.sh: pip install --no-deps llama-index-vector-stores-postgres==0.9.0",
)
pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

from reindexer import commands  # noqa: E402
from reindexer.ab import Judgements  # noqa: E402
from reindexer.adapters.base import MODEL_KEY  # noqa: E402
from reindexer.commands import sync, verify  # noqa: E402
from reindexer.errors import EXIT_GATE_REFUSED, EXIT_USAGE, GateRefusedError, UsageError  # noqa: E402
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

TABLE = "data_kb"  # PGVectorStore's table for table_name="kb"
#: LlamaIndex's documented HNSW settings; ef_search is set on each of its searches
HNSW = {"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40, "hnsw_dist_method": "vector_cosine_ops"}


class App:
    """The application: LlamaIndex's PGVectorStore on the table (or view) ``data_kb``, over a Unix socket."""

    def __init__(self, ws: Workspace, hybrid: bool = False):
        info = ws.store._client.info
        where = f"{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
        self.hybrid = hybrid
        self.urls = {
            "connection_string": f"postgresql+psycopg2://{where}",
            # asyncpg keeps statements prepared; LlamaIndex's searches return the embedding column, whose type
            # a dimension change alters (docs/adapters.md): plan every statement for the view as it is.
            "async_connection_string": f"postgresql+asyncpg://{where}&prepared_statement_cache_size=0",
        }

    def open(self, embeddings, dim: int = 384, setup: bool = False, hnsw: bool = True):
        """A store as the application makes one, its model's dimension its ``embed_dim``. ``setup`` (LlamaIndex's
        ``perform_setup``) creates the table and, with ``hnsw``, its HNSW index: once ``data_kb`` is a view,
        CREATE INDEX on it fails (LlamaIndex logs it), and the tool gives every version its HNSW index
        (docs/adapters.md)."""
        from llama_index.vector_stores.postgres import PGVectorStore

        store = PGVectorStore.from_params(
            **self.urls,
            table_name="kb",
            embed_dim=dim,
            hnsw_kwargs=dict(HNSW) if hnsw else None,
            perform_setup=setup,
            hybrid_search=self.hybrid,
        )
        return store, embeddings

    @staticmethod
    def nodes(embeddings, docs: list[dict[str, Any]]) -> list:
        from llama_index.core.schema import TextNode

        vectors = embeddings.embed_documents([d["text"] for d in docs])
        return [
            TextNode(id_=d["id"], text=d["text"], embedding=v, metadata={"source": d.get("source", "corpus")})
            for d, v in zip(docs, vectors, strict=True)
        ]

    @staticmethod
    def search(handle, query: str, k: int, mode: str = "default") -> list[tuple[str, str]]:
        from llama_index.core.vector_stores import VectorStoreQuery

        store, embeddings = handle
        res = store.query(
            VectorStoreQuery(
                query_embedding=embeddings.embed_query(query), query_str=query, similarity_top_k=k, mode=mode
            )
        )
        return [(node_id, node.get_content()) for node_id, node in zip(res.ids, res.nodes, strict=True)]

    @staticmethod
    def nodes_found(handle, query: str) -> list:
        from llama_index.core.vector_stores import VectorStoreQuery

        store, embeddings = handle
        return store.query(VectorStoreQuery(query_embedding=embeddings.embed_query(query), similarity_top_k=4)).nodes

    @staticmethod
    def add(handle, text: str) -> str:
        store, embeddings = handle
        [node_id] = store.add(App.nodes(embeddings, [{"id": str(uuid.uuid4()), "text": text, "source": "app"}]))
        return node_id


def _finds(handle, texts, added) -> None:
    for text, node_id in zip(texts, added, strict=True):
        assert App.search(handle, text, 1)[0][0] == node_id, text


def _payloads(ws, physical) -> dict[str, dict]:
    """Rows by the tool's document id (the table's ``id``), without the model tag."""
    return {
        p.doc_id: {k: v for k, v in p.payload.items() if k != MODEL_KEY}
        for page in ws.store.scroll(physical, batch_size=64)
        for p in page
    }


def _id_of(ws, physical: str, node_id: str) -> int:
    return next(int(doc_id) for doc_id, p in _payloads(ws, physical).items() if p["node_id"] == node_id)


def _judgements(ws, queries, qrels, folder: Path) -> tuple[Judgements, Path, Path]:
    """The corpus's qrels in the tool's document ids (the ``id`` of each node's row), as files and in memory."""
    id_of_node = {p["node_id"]: doc_id for doc_id, p in _payloads(ws, TABLE).items()}
    judged = {q: {id_of_node[node]: grade for node, grade in rels.items()} for q, rels in qrels.items()}
    return write_judgements(queries, judged, folder)


#: SQL through the name, as the application reads it; the query vector is a row's own, so no model is needed
VIEW_QUERY = (
    f"SELECT id, node_id, vector_dims(embedding) FROM {TABLE} "
    f"ORDER BY embedding <=> (SELECT embedding FROM {TABLE} ORDER BY id LIMIT 1) LIMIT 3"
)


def _sequence_owner(ws) -> str | None:
    """The table whose ``id`` owns ``data_kb_id_seq`` (``OWNED BY``), or None."""
    row = ws.store._client.execute(
        "SELECT refobjid::regclass::text FROM pg_depend WHERE objid = 'data_kb_id_seq'::regclass "
        "AND classid = 'pg_class'::regclass AND refclassid = 'pg_class'::regclass AND deptype = 'a'"
    ).fetchone()
    return None if row is None else str(row[0])


def _hnsw(ws, physical: str) -> list[str]:
    rows = ws.store._client.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (physical,)
    ).fetchall()
    return [str(r[0]).split(" USING ", 1)[1] for r in rows if " USING hnsw " in str(r[0])]


def _setup_failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("PG Setup")]


def test_a_llamaindex_application_through_a_model_change(
    tmp_path, caplog, minilm_path, minilm, minilm_256, demo_corpus
):
    caplog.set_level(logging.WARNING, logger="llama_index.vector_stores.postgres")
    docs, queries, qrels = judged_corpus(demo_corpus)
    asked = list(queries.values())[:4]
    with pg_workspace(tmp_path) as ws:
        app = App(ws)
        app.open(minilm, setup=True)[0].add(App.nodes(minilm, docs))  # the table and its HNSW index
        running = app.open(minilm)  # started before the tool came, never restarted
        before = [App.search(running, q, 4) for q in asked]
        seen = {node_id for answer in before for node_id, _ in answer} | {d for rels in qrels.values() for d in rels}
        removed = next(d["id"] for d in reversed(docs) if d["id"] not in seen)  # the application deletes it later
        original, payloads = ws.store.read_schema(TABLE), _payloads(ws, TABLE)
        assert original.primary.name == "id" and original.primary.kind == "bigint"
        assert original.primary.default == "nextval('data_kb_id_seq'::regclass)"
        assert original.vector == "embedding" and original.metric == "cosine"
        assert original.field("metadata_").kind == "json"
        assert _sequence_owner(ws) == TABLE and _hnsw(ws, TABLE) == [
            "hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')"
        ]

        adopted = commands.adopt(ws, TABLE, str(minilm_path), text_field="text")
        assert adopted["tag"] == "point" and adopted["points_tagged"] == N
        assert [App.search(app.open(minilm), q, 4) for q in asked] == before
        # The tag is a top-level key of metadata_; LlamaIndex makes its nodes from metadata_'s _node_content.
        assert all(MODEL_KEY in r[0] for r in ws.store._client.execute(f"SELECT metadata_::jsonb FROM {TABLE}"))
        assert {json.dumps(n.metadata) for n in App.nodes_found(app.open(minilm), asked[0])} == {'{"source": "corpus"}'}

        # The copy draws its ids from the application's sequence, released from data_kb, so that dropping
        # data_kb (migrate's last step) leaves it to the versions.
        # The table becomes a view of its name in one transaction: a reader through the name never misses it.
        with SqlReader(ws, VIEW_QUERY) as migrating:
            migrated = commands.migrate(ws, TABLE)
        assert migrated["migrated"] and migrated["name_missing_ms"] == 0 and ws.store.resolve(TABLE) == "data_kb__v2"
        assert migrating.failures == [] and migrating.queries > 0
        assert original.differences(ws.store.read_schema("data_kb__v2")) == [] and _payloads(ws, TABLE) == payloads
        assert _sequence_owner(ws) is None and len(_hnsw(ws, "data_kb__v2")) == 1
        assert [App.search(app.open(minilm), q, 4) for q in asked] == before
        added = [App.add(app.open(minilm), WRITES[0])]
        assert _id_of(ws, TABLE, added[0]) == N + 1  # the sequence goes on where the table left it
        assert sync(ws, TABLE).versions["v2"]["embedded"] == 1
        assert ws.store.count("data_kb__v2") == N + 1 and verify(ws, TABLE).ok

        plan = commands.plan(ws, TABLE, model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        assert plan.to_version["metric"] == "cosine" and plan.to_version["dim"] == 256
        built = commands.apply(ws, plan, cutover=False)
        assert built.physical == "data_kb__v3" and ws.store.count("data_kb__v3") == N + 1
        assert original.for_version(256, "cosine").differences(ws.store.read_schema("data_kb__v3")) == []
        assert _payloads(ws, "data_kb__v3") == _payloads(ws, "data_kb__v2") and len(_hnsw(ws, "data_kb__v3")) == 1
        added.append(App.add(app.open(minilm), WRITES[1]))  # into v2, still live

        # The gate judges v3 against the live v2 on the corpus's qrels, in the table's ids.
        judgements, queries_file, qrels_file = _judgements(ws, queries, qrels, tmp_path)
        _, _, decisions = commands.evaluate_versions(
            ws, TABLE, str(queries_file), str(qrels_file), versions="live,v3", gate=GATE
        )
        assert decisions["v3"].passed, decisions["v3"].reasons
        with pytest.raises(GateRefusedError) as refused:
            commands.apply(ws, plan, judgements=judgements, gate=STRICT)
        assert refused.value.exit_code == EXIT_GATE_REFUSED and "refused promoting v3" in refused.value.message
        assert ws.store.resolve(TABLE) == "data_kb__v2" and ws.store.count("data_kb__v3") == N + 1

        with SqlReader(ws, VIEW_QUERY) as reader:
            moved = commands.apply(ws, plan, judgements=judgements, gate=GATE)  # the gated cut-over
            assert moved.gate["passed"] and moved.cut_over and moved.live == "data_kb__v3"
            assert moved.stats["caught_up"] == 1 and verify(ws, TABLE).ok
            assert _payloads(ws, "data_kb__v3") == _payloads(ws, "data_kb__v2")
            after = app.open(minilm_256, 256)
            _finds(after, WRITES[:2], added)
            added.append(App.add(after, WRITES[2]))
            assert _id_of(ws, TABLE, added[2]) == N + 3  # after every id of every version
            after[0].delete_nodes(node_ids=[removed])
            _finds(app.open(minilm_256, 256), WRITES, added)
            live = _payloads(ws, "data_kb__v3")
            assert len(live) == N + 2 and removed not in {p["node_id"] for p in live.values()}

            rolled = commands.rollback(ws, TABLE)
            # WRITES[2] at least (WRITES[1] too, where v2 had not recorded its own write), and the deletion
            assert rolled["live"] == "data_kb__v2" and rolled["re_embedded"] >= 1 and rolled["deleted"] == 1
        assert reader.failures == [] and reader.queries > 0
        assert _payloads(ws, "data_kb__v2") == live  # the same ids, text, node_id and metadata
        assert verify(ws, TABLE).ok
        assert original.differences(ws.store.read_schema("data_kb__v2")) == []
        _finds(app.open(minilm), WRITES, added)
        _finds(running, WRITES, added)  # the instance that never restarted
        assert [[a for a in App.search(running, q, 4 + 3) if a[0] not in added][:4] for q in asked] == before
        added.append(App.add(running, "Tide pools shelter anemones, crabs and small fish at low water."))
        assert _id_of(ws, TABLE, added[3]) == N + 4
    assert _setup_failures(caplog) == []


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    with pg_workspace(tmp_path_factory.mktemp("llamaindex-pg")) as ws:
        yield ws


def test_a_hybrid_search_table_keeps_its_generated_column_in_every_version(
    small_ws, caplog, minilm_path, minilm, demo_corpus
):
    """``hybrid_search=True``: ``text_search_tsv tsvector GENERATED ALWAYS AS (to_tsvector(...)) STORED``.
    adopt rewrites the rows in place (their tags), migrate copies them: neither may write that column."""
    caplog.set_level(logging.WARNING, logger="llama_index.vector_stores.postgres")
    ws, docs = small_ws, demo_corpus.documents[:8]
    app = App(ws, hybrid=True)
    app.open(minilm, setup=True)[0].add(App.nodes(minilm, docs))
    original = ws.store.read_schema(TABLE)
    generated = original.field("text_search_tsv")
    assert generated.params == {"generated": "stored"} and generated.default.startswith("to_tsvector('english'")
    query = "how to roll back a deploy of the file storage service"
    before = {mode: App.search(app.open(minilm), query, 3, mode) for mode in ("default", "sparse", "hybrid")}
    tsv = {p["node_id"]: p["text_search_tsv"] for p in _payloads(ws, TABLE).values()}

    assert commands.adopt(ws, TABLE, str(minilm_path), text_field="text")["points_tagged"] == len(docs)
    assert commands.migrate(ws, TABLE)["migrated"] and ws.store.resolve(TABLE) == "data_kb__v2"
    assert original.differences(ws.store.read_schema("data_kb__v2")) == []
    assert {p["node_id"]: p["text_search_tsv"] for p in _payloads(ws, TABLE).values()} == tsv
    store = app.open(minilm, setup=True, hnsw=False)  # its setup takes the view for the table: nothing to create
    assert {mode: App.search(store, query, 3, mode) for mode in before} == before
    node = App.add(store, "Roll back a storage deploy with the previous release tag.")  # PostgreSQL fills its tsv
    assert App.search(store, "previous release tag", 1, "sparse")[0][0] == node
    assert sync(small_ws, TABLE).versions["v2"]["embedded"] == 1 and verify(ws, TABLE).ok
    assert _setup_failures(caplog) == []


def test_an_identity_key_is_adopted_in_place_and_its_copy_refused_naming_the_fix(small_ws, minilm_path, minilm):
    """``id bigint GENERATED ALWAYS AS IDENTITY``: adopt rewrites rows keeping their ids (OVERRIDING SYSTEM
    VALUE); no other version can share an identity's sequence, so migrate refuses (exit 2) and changes nothing."""
    ws, texts = small_ws, ["Tapir runs the nightly jobs.", "Editor owns the rich text widgets."]
    conn = ws.store._client
    conn.execute(
        "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, "
        "meta jsonb NOT NULL DEFAULT '{}', embedding vector(384) NOT NULL)"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO notes (body, embedding) VALUES (%s, %s::vector)",
            [(t, str(v)) for t, v in zip(texts, minilm.embed_documents(texts), strict=True)],
        )
    assert commands.adopt(ws, "notes", str(minilm_path), text_field="body")["points_tagged"] == 2
    assert sorted(_payloads(ws, "notes")) == ["1", "2"]
    with pytest.raises(UsageError, match="identity column") as exc:
        commands.migrate(ws, "notes")
    assert exc.value.exit_code == EXIT_USAGE and "SET DEFAULT nextval('notes_id_seq')" in (exc.value.hint or "")
    assert ws.store.resolve("notes") == "notes" and "notes__v2" not in ws.store.list_collections()
