"""A hybrid Qdrant collection keeps its sparse vectors through adopt, migrate, a model change and rollback.

The application made it with a named dense vector beside a sparse one and
searches both, fused; after every step its hybrid answers are the same where
the model did not change, and every version's schema equals the original's,
field by field. The new model version is real: the same MiniLM weights under a
256-dimension truncation. The frameworks' own default collections (LangChain,
LlamaIndex, on Qdrant and Milvus) go through the same flow in test_app_writes.py.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")


from reindexer import commands  # noqa: E402
from reindexer.commands import verify  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402

N = 24
K = 4
NEW_TEXTS = ["Zebras cross the Mara river every year in search of fresh grazing."]


@pytest.fixture(scope="module")
def corpus(demo_corpus):
    docs = demo_corpus.documents[:N]
    return [d["text"] for d in docs], [{"source": f"s{i % 3}"} for i in range(N)], \
        list(demo_corpus.queries.values())[:4]


def _ws(tmp_path, store_url):
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=10))


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
