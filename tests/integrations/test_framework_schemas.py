"""Collections as the frameworks make them by default, through adopt, migrate, a model change, cut-over and rollback.

Each application builds its collection its own way (langchain-milvus: an
auto-id INT64 key ``pk``, typed fields, no dynamic field, L2; LlamaIndex's
Milvus store: a VARCHAR ``id``, an ``embedding`` field, a FLAT IP index;
Qdrant: a named dense vector beside a sparse one) and keeps using it while
the tool works: after every step it reads the same answers where the model
did not change, it can still add documents, and every version's schema
equals the original's, field by field. The new model version is real: the
same MiniLM weights under a 256-dimension truncation.
"""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")


from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.sync import verify  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402

N = 24
K = 4
NEW_TEXTS = ["Zebras cross the Mara river every year in search of fresh grazing.",
             "A sourdough starter needs flour, water and a warm kitchen."]






@pytest.fixture(scope="module")
def corpus(demo_corpus):
    docs = demo_corpus.documents[:N]
    return [d["text"] for d in docs], [{"source": f"s{i % 3}"} for i in range(N)], \
        list(demo_corpus.queries.values())[:4]


def _ws(tmp_path, store_url):
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=10))


@pytest.mark.slow  # two model versions over a real framework store
def test_langchain_milvus_defaults_keep_their_schema_and_their_writes(tmp_path, minilm_path, minilm, minilm_256,
                                                                     corpus):
    langchain_milvus = pytest.importorskip("langchain_milvus", reason="pip install langchain-milvus (test extra)")
    texts, metadatas, queries = corpus
    db = str(tmp_path / "m.db")

    def app(embeddings):  # the application (re)opening its store by the collection's name
        return langchain_milvus.Milvus(embeddings, collection_name="kb", connection_args={"uri": db})

    def answers(store, k=K):
        return [[(d.metadata["pk"], d.page_content, d.metadata["source"]) for d in store.similarity_search(q, k=k)]
                for q in queries]

    first = langchain_milvus.Milvus.from_texts(texts, minilm, metadatas=metadatas, collection_name="kb",
                                               connection_args={"uri": db})
    before = answers(first)
    with _ws(tmp_path, f"milvus+lite:{db}") as ws:
        original = ws.store.read_schema("kb")
        assert (original.primary.name, original.primary.auto_id, original.dynamic, original.metric) == \
            ("pk", True, False, "euclid")

        assert commands.adopt(ws, "kb", str(minilm_path))["tag"] == "collection"
        assert answers(app(minilm)) == before

        assert commands.migrate(ws, "kb")["migrated"]
        assert ws.store.resolve("kb") == "kb__v2"
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        assert answers(app(minilm)) == before
        added = app(minilm).add_texts(NEW_TEXTS[:1], metadatas=[{"source": "app"}])  # between two runs of the tool

        plan = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        assert plan.to_version["metric"] == "euclid"  # the application's metric, not the model's default
        result = commands.apply(ws, plan)
        assert result.live == "kb__v3" and ws.store.count("kb__v3") == N + 1
        assert original.for_version(256, "euclid").differences(ws.store.read_schema("kb__v3")) == []
        assert verify(ws, "kb").ok
        after_change = app(minilm_256)
        assert after_change.similarity_search(NEW_TEXTS[0], k=1)[0].metadata["pk"] == added[0]
        added += after_change.add_texts(NEW_TEXTS[1:], metadatas=[{"source": "app"}])

        rolled = commands.rollback(ws, "kb")
        # Re-embedded into v2 by its model: the document added after the cut-over, and the one the
        # application added to v2 before the build, which v2's ledger had never seen.
        assert rolled["live"] == "kb__v2" and rolled["re_embedded"] == 2
        back = app(minilm)
        for text, pk in zip(NEW_TEXTS, added, strict=True):
            assert back.similarity_search(text, k=1)[0].metadata["pk"] == pk
        new_pks = set(added)
        # The original documents rank as before; the new ones may come in between.
        assert [[a for a in hits if a[0] not in new_pks][:K] for hits in answers(back, K + len(NEW_TEXTS))] == before
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        assert verify(ws, "kb").ok


def _sparse(i: int):
    from qdrant_client import models

    return models.SparseVector(indices=[i, 1000 + i % 5], values=[1.0, 0.25 * (i % 4 + 1)])


@pytest.mark.slow  # two model versions
def test_a_hybrid_qdrant_collection_keeps_its_sparse_vectors_through_a_re_embed(tmp_path, minilm_path, minilm,
                                                                             corpus):
    from qdrant_client import models

    texts, _, queries = corpus
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        client = ws.store._client  # the application's client: local mode allows one per folder
        client.create_collection(
            "kb", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.DOT)},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)})
        vectors = minilm.embed_documents(texts)
        client.upsert("kb", [models.PointStruct(id=i, vector={"dense": v, "bm25": _sparse(i)},
                                                payload={"page_content": t, "metadata": {"n": i}})
                             for i, (t, v) in enumerate(zip(texts, vectors, strict=True))])

        def sparse_of(name):
            points = client.retrieve(name, ids=list(range(N)), with_vectors=["bm25"])
            return {p.id: (list(p.vector["bm25"].indices), list(p.vector["bm25"].values)) for p in points}

        def hybrid(name):  # the application's hybrid query: dense and sparse, fused
            return [[p.id for p in client.query_points(name, prefetch=[
                models.Prefetch(query=minilm.embed_query(q), using="dense", limit=8),
                models.Prefetch(query=_sparse(3), using="bm25", limit=8)],
                query=models.FusionQuery(fusion=models.Fusion.RRF), limit=K).points] for q in queries]

        sparse, before = sparse_of("kb"), hybrid("kb")
        original = ws.store.read_schema("kb")
        commands.adopt(ws, "kb", str(minilm_path), text_field="page_content")
        commands.migrate(ws, "kb")
        assert sparse_of("kb") == sparse and hybrid("kb") == before
        assert original.differences(ws.store.read_schema("kb__v2")) == []

        plan = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        result = commands.apply(ws, plan)
        assert result.live == "kb__v3"
        assert sparse_of("kb__v3") == sparse
        assert original.for_version(256, "dot").differences(ws.store.read_schema("kb__v3")) == []
        assert verify(ws, "kb").ok
        # The application writes a point of its own, both vectors, under the new model.
        client.upsert("kb", [models.PointStruct(id=N, vector={"dense": [0.0] * 255 + [1.0], "bm25": _sparse(N)},
                                                payload={"page_content": NEW_TEXTS[0], "metadata": {"n": N}})])
        rolled = commands.rollback(ws, "kb")
        assert rolled["live"] == "kb__v2"
        [point] = client.retrieve("kb", ids=[N], with_vectors=True)
        assert point.vector["bm25"] == _sparse(N) and len(point.vector["dense"]) == 384
        assert sparse_of("kb") == sparse and hybrid("kb") == before
        assert verify(ws, "kb").ok


@pytest.mark.slow
def test_llamaindex_stores_defaults_through_adopt_and_migrate(tmp_path, minilm_path, minilm, corpus):
    pytest.importorskip("llama_index.core", reason="pip install 'reindexer[llamaindex]'")
    milvus_store = pytest.importorskip(  # pins pymilvus<3, so not in the test extra; runs on pymilvus 3
        "llama_index.vector_stores.milvus", reason="pip install --no-deps llama-index-vector-stores-milvus")
    qdrant_store = pytest.importorskip("llama_index.vector_stores.qdrant",
                                       reason="pip install llama-index-vector-stores-qdrant (in the test extra)")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import VectorStoreQuery

    texts, metadatas, queries = corpus
    vectors = minilm.embed_documents(texts)
    nodes = [TextNode(text=t, id_=f"n{i}", embedding=v, metadata=m)
             for i, (t, v, m) in enumerate(zip(texts, vectors, metadatas, strict=True))]

    def answers(store):
        return [store.query(VectorStoreQuery(query_embedding=minilm.embed_query(q), similarity_top_k=K)).ids
                for q in queries]

    db = str(tmp_path / "li.db")
    app = milvus_store.MilvusVectorStore(uri=db, collection_name="kb", dim=384, overwrite=True)
    app.add([n.model_copy() for n in nodes])
    before = answers(app)
    with _ws(tmp_path / "m", f"milvus+lite:{db}") as ws:
        original = ws.store.read_schema("kb")
        # LlamaIndex's Milvus store keeps the text in its own field; _node_content holds the rest of the node.
        assert commands.adopt(ws, "kb", str(minilm_path), text_field="text")["tag"] == "point"
        commands.migrate(ws, "kb")
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        # The running application goes on reading and writing through the alias. (A restarted one
        # cannot: MilvusVectorStore looks its name up in list_collections, which lists no aliases,
        # and then tries to create it; see docs/adapters.md.)
        assert answers(app) == before
        app.add([TextNode(text=NEW_TEXTS[0], id_="new", embedding=minilm.embed_documents(NEW_TEXTS[:1])[0])])
        assert commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False).mode == "noop"

    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q"))
    app = qdrant_store.QdrantVectorStore(client=client, collection_name="kb")
    app.add([n.model_copy(update={"id_": str(uuid.UUID(int=i + 1))}) for i, n in enumerate(nodes)])  # Qdrant: UUIDs
    before = answers(app)
    client.close()
    with _ws(tmp_path / "qw", f"qdrant+local:{tmp_path}/q") as ws:
        original = ws.store.read_schema("kb")
        commands.adopt(ws, "kb", str(minilm_path), text_field="_node_content")
        commands.migrate(ws, "kb")
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        again = qdrant_store.QdrantVectorStore(client=ws.store._client, collection_name="kb")
        assert answers(again) == before
        again.add([TextNode(text=NEW_TEXTS[0], id_="00000000-0000-4000-8000-000000000001",
                            embedding=minilm.embed_documents(NEW_TEXTS[:1])[0])])
        assert ws.store.count("kb") == N + 1
