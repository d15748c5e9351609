"""Collections with several dense vectors: the operator names the one to re-embed; the others stay as they were.

An application keeps a ``title`` and a ``body`` vector per document (and, on
Qdrant, a sparse ``bm25`` one for hybrid search), built with the backends' own
clients the way an application builds them. Adopt refuses to guess which one
the model made and refuses a name the collection lacks, before writing
anything; adopted with ``--vector-name body``, every later step (migrate, a
model change with a new dimension, cut-over, rollback, verify, the Searcher)
works on ``body`` alone, and ``title`` and ``bm25`` come through every version
bit for bit (a cosine-distance Qdrant vector up to float32 rounding: Qdrant
normalises it again on every write). The new model version is real: the same MiniLM weights under a
256-dimension truncation.

The Milvus case runs on Milvus Lite, not on the suite's 2.3.5 server: servers before 2.4 allow
one vector field per collection ("multiple vector fields is not supported"), so no such
collection exists there to adopt, and the tool refuses to build one there from a schema read
elsewhere (exit 2, before creating anything); the last test holds both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reindexer import commands
from reindexer.commands import verify
from reindexer.config import Config
from reindexer.embedding import Embedder
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings
from reindexer.searcher import Searcher
from reindexer.workspace import Workspace

pytestmark = pytest.mark.slow  # two model versions over a real store

N = 20
K = 3
TRUNCATED = ModelSettings(truncate_dim=256)


@pytest.fixture(scope="module")
def docs(demo_corpus):
    return demo_corpus.documents[:N]


@pytest.fixture(scope="module")
def embedded(minilm_path, docs):
    model = Embedder(minilm_path)
    return model.embed_documents([d["title"] for d in docs]), model.embed_documents([d["text"] for d in docs])


@pytest.fixture(scope="module")
def queries(demo_corpus):
    return list(demo_corpus.queries.values())[:3]


def _ws(tmp_path: Path, store_url: str) -> Workspace:
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=8))


def _state_bytes(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.glob("state.db*")) if not p.name.endswith("-shm")}


def _bits(vector) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _refusals(ws, tmp_path, minilm_path, store_snapshot):
    """Adopt without a choice, and with a name the collection lacks: exit 2, store and state unchanged."""
    ws.state.list_models()  # the state file exists and is settled before the snapshot
    state_before, store_before = _state_bytes(tmp_path), store_snapshot()
    with pytest.raises(UsageError, match=r"2 dense vectors \('body', 'title'\)") as exc:
        commands.adopt(ws, "kb", str(minilm_path))
    assert exc.value.exit_code == 2 and "--vector-name" in exc.value.hint
    with pytest.raises(UsageError, match=r"no dense vector 'summary'; its dense vectors: 'body', 'title'") as exc:
        commands.adopt(ws, "kb", str(minilm_path), vector_name="summary")
    assert exc.value.exit_code == 2
    assert _state_bytes(tmp_path) == state_before and store_snapshot() == store_before
    assert ws.state.get_collection(ws.store_url, "kb") is None


def _searcher_uses_body(ws, queries, minilm_path, settings=None):
    """The query side searches the managed vector with the live version's model."""
    model = Embedder(minilm_path, settings)
    with Searcher("kb", workspace=ws, refresh=0) as searcher:
        for q in queries:
            hits = searcher.search(q, k=K)
            direct = ws.store.search(ws.store.resolve("kb"), model.embed_queries([q])[0].tolist(), K)
            assert [h.doc_id for h in hits] == [h.doc_id for h in direct]


def test_qdrant_title_and_body_vectors_with_a_sparse_one(tmp_path, minilm_path, docs, embedded, queries):
    from qdrant_client import models

    titles, bodies = embedded
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        client = ws.store._client  # the application's client: local mode allows one per folder
        client.create_collection(
            "kb",
            # DOT: Qdrant renormalises a cosine vector on every write, which may move its last bit (docs/adapters.md)
            vectors_config={"title": models.VectorParams(size=384, distance=models.Distance.DOT),
                            "body": models.VectorParams(size=384, distance=models.Distance.COSINE)},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)})
        client.upsert("kb", [
            models.PointStruct(id=i, vector={"title": t.tolist(), "body": b.tolist(),
                                             "bm25": models.SparseVector(indices=[i, 500 + i % 7], values=[1.0, 0.5])},
                               payload={"text": d["text"], "title": d["title"]})
            for i, (d, t, b) in enumerate(zip(docs, titles, bodies, strict=True))])

        def others(name):
            points = client.retrieve(name, ids=list(range(N)), with_vectors=["title", "bm25"])
            return {p.id: (_bits(p.vector["title"]), tuple(p.vector["bm25"].indices), _bits(p.vector["bm25"].values))
                    for p in points}

        def titles_search(name, q):  # the application's own search on its other vector
            return [p.id for p in client.query_points(name, query=Embedder(minilm_path).embed_queries([q])[0].tolist(),
                                                      using="title", limit=K).points]

        kept = others("kb")
        _refusals(ws, tmp_path, minilm_path, lambda: (others("kb"), client.get_collection("kb").config.metadata))
        title_answers = [titles_search("kb", q) for q in queries]

        adopted = commands.adopt(ws, "kb", str(minilm_path), vector_name="body")
        assert adopted["vector"] == "body" and adopted["points_tagged"] == N
        original = ws.store.read_schema("kb")
        assert original.vector == "body" and ws.store.describe("kb").vector == "body"
        commands.migrate(ws, "kb")
        assert others("kb__v2") == kept and original.differences(ws.store.read_schema("kb__v2")) == []
        _searcher_uses_body(ws, queries, minilm_path)

        with pytest.raises(UsageError, match="embeds into the vector 'body'") as exc:
            commands.plan(ws, "kb", model_path=str(minilm_path), settings=TRUNCATED, vector_name="title")
        assert exc.value.exit_code == 2
        plan = commands.plan(ws, "kb", model_path=str(minilm_path), settings=TRUNCATED, vector_name="body")
        assert plan.to_version["vector"] == "body"
        result = commands.apply(ws, plan)
        assert result.live == "kb__v3"
        info = client.get_collection("kb__v3").config.params.vectors
        assert (info["body"].size, info["title"].size) == (256, 384)
        assert others("kb__v3") == kept
        assert original.for_version(256, "cosine").differences(ws.store.read_schema("kb__v3")) == []
        assert verify(ws, "kb").ok
        _searcher_uses_body(ws, queries, minilm_path, TRUNCATED)
        assert [titles_search("kb", q) for q in queries] == title_answers  # hybrid and title search keep working

        rolled = commands.rollback(ws, "kb")
        assert rolled["live"] == "kb__v2"
        assert others("kb") == kept and verify(ws, "kb").ok
        _searcher_uses_body(ws, queries, minilm_path)


def test_milvus_lite_title_and_body_vector_fields(tmp_path, minilm_path, docs, embedded, queries):
    from pymilvus import DataType, MilvusClient

    titles, bodies = embedded
    with _ws(tmp_path, f"milvus+lite:{tmp_path}/m.db") as ws:
        client = ws.store._client
        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("title_vector", DataType.FLOAT_VECTOR, dim=384)
        schema.add_field("body_vector", DataType.FLOAT_VECTOR, dim=384)
        index = MilvusClient.prepare_index_params()
        index.add_index("title_vector", index_type="HNSW", metric_type="IP", params={"M": 8, "efConstruction": 64})
        index.add_index("body_vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 100})
        client.create_collection("kb", schema=schema, index_params=index, consistency_level="Strong")
        client.insert("kb", [{"text": d["text"], "title_vector": t.tolist(), "body_vector": b.tolist()}
                             for d, t, b in zip(docs, titles, bodies, strict=True)])

        def others(name):
            rows = client.query(name, filter="pk >= 0", output_fields=["pk", "title_vector"],
                                consistency_level="Strong")
            return {r["pk"]: _bits(r["title_vector"]) for r in rows}

        kept = others("kb")
        with pytest.raises(UsageError, match=r"2 dense vectors \('body_vector', 'title_vector'\)"):
            commands.adopt(ws, "kb", str(minilm_path))
        with pytest.raises(UsageError, match="no dense vector 'vector'"):
            commands.adopt(ws, "kb", str(minilm_path), vector_name="vector")
        assert ws.state.get_collection(ws.store_url, "kb") is None and others("kb") == kept

        assert commands.adopt(ws, "kb", str(minilm_path), vector_name="body_vector")["vector"] == "body_vector"
        original = ws.store.read_schema("kb")
        assert original.vector == "body_vector"
        commands.migrate(ws, "kb")
        assert others("kb__v2") == kept and original.differences(ws.store.read_schema("kb__v2")) == []
        _searcher_uses_body(ws, queries, minilm_path)

        result = commands.apply(ws, commands.plan(ws, "kb", model_path=str(minilm_path), settings=TRUNCATED))
        assert result.live == "kb__v3"
        assert others("kb__v3") == kept
        assert original.for_version(256, "cosine").differences(ws.store.read_schema("kb__v3")) == []
        dims = {f["name"]: f["params"].get("dim") for f in client.describe_collection("kb__v3")["fields"]}
        assert (dims["body_vector"], dims["title_vector"]) == (256, 384)
        assert verify(ws, "kb").ok
        _searcher_uses_body(ws, queries, minilm_path, TRUNCATED)

        assert commands.rollback(ws, "kb")["live"] == "kb__v2"
        assert others("kb") == kept and verify(ws, "kb").ok


@pytest.mark.server
def test_the_2_3_server_holds_one_vector_field_and_the_tool_refuses_a_second_up_front(milvus_server, tmp_path):
    """Milvus before 2.4: no collection with two vector fields exists to adopt, and none is built from elsewhere."""
    from pymilvus import DataType, MilvusClient, MilvusException

    from reindexer.adapters import open_store
    from reindexer.adapters.base import CollectionSpec

    def two_vectors(client, name):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("title_vector", DataType.FLOAT_VECTOR, dim=4)
        schema.add_field("body_vector", DataType.FLOAT_VECTOR, dim=4)
        index = MilvusClient.prepare_index_params()
        for field in ("title_vector", "body_vector"):
            index.add_index(field, index_type="FLAT", metric_type="COSINE")
        client.create_collection(name, schema=schema, index_params=index)

    lite = MilvusClient(uri=str(tmp_path / "m.db"))
    two_vectors(lite, "kb")
    with open_store(f"milvus+lite:{tmp_path}/m.db") as store:
        store.use_vector("kb", "body_vector")
        schema = store.read_schema("kb")
    assert [f.name for f in schema.fields if f.kind == "float_vector"] == ["title_vector", "body_vector"]

    server = MilvusClient(uri=milvus_server.uri)
    if tuple(int(x) for x in server.get_server_version().lstrip("v").split(".")[:2]) >= (2, 4):
        pytest.skip("a server from 2.4 holds several vector fields: test_milvus_lite_title_and_body_vector_fields")
    with pytest.raises(MilvusException, match="multiple vector fields is not supported"):
        two_vectors(server, "kb")  # the application cannot make one
    with open_store(milvus_server.url) as store:
        with pytest.raises(UsageError, match=r"2 vector fields \('title_vector', 'body_vector'\), and this Milvus "
                                             r"server \(2\.3\) allows one vector field per collection") as exc:
            store.create_collection(CollectionSpec(name="kb__v2", dim=4, schema=schema))
        assert exc.value.exit_code == 2 and "from 2.4" in exc.value.hint
        assert store.list_collections() == []
