"""A LangChain application's collection, adopted, migrated and then queried through reindexer.

The application built its collection with langchain-qdrant's ``QdrantVectorStore``
on Qdrant local (``page_content`` and ``metadata`` in each payload), embedding
with the real all-MiniLM-L6-v2. The tool adopts it (checking a re-embedded
sample), migrates it behind an alias of its own name, and the application
changes one line, from ``QdrantVectorStore`` to ``ReindexerVectorStore`` (or to
a ``ReindexerRetriever``): it gets the same documents, in the same order, with
the same scores. Then, still in one process and without a restart, a model
change with a change of dimension is cut over and rolled back under it.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
langchain_qdrant = pytest.importorskip("langchain_qdrant", reason="pip install langchain-qdrant (in the test extra)")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.model_identity import ModelSettings  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402

K = 5
LANGCHAIN_ONLY = ("_id", "_collection_name")  # what langchain-qdrant adds to metadata when it reads


class MiniLMEmbeddings(Embeddings):
    """What an application would write: the SentenceTransformer behind LangChain's interface."""

    def __init__(self, model):
        self.model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="session")
def minilm_embeddings(minilm_path):
    from sentence_transformers import SentenceTransformer

    return MiniLMEmbeddings(SentenceTransformer(str(minilm_path), device="cpu"))


def _app_documents(demo_corpus) -> list[Document]:
    return [Document(page_content=d["text"], metadata={"article": d["id"], "title": d["title"], **d["meta"]})
            for d in demo_corpus.documents[:60]]


def _answers(pairs) -> list[tuple[str, str, dict]]:
    """(id, text, metadata) of each document, minus what only one side adds."""
    out = []
    for doc, _ in pairs:
        meta = {k: v for k, v in doc.metadata.items() if k not in LANGCHAIN_ONLY and k != "reindex"}
        out.append((doc.id or doc.metadata.get("_id"), doc.page_content, meta))
    return out


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_langchain_app_changes_one_line(tmp_path, minilm_path, minilm_embeddings, demo_corpus):
    from langchain_qdrant import QdrantVectorStore

    from reindexer.integrations.langchain import ReindexerRetriever, ReindexerVectorStore
    from reindexer.integrations.llamaindex import ReindexerRetriever as LlamaIndexRetriever

    folder = tmp_path / "qdrant"
    queries = list(demo_corpus.queries.values())[:6]

    # 1. The application, before reindexer: its own store, its own embeddings.
    app = QdrantVectorStore.from_documents(_app_documents(demo_corpus), minilm_embeddings, path=str(folder),
                                           collection_name="docs")
    before = [app.similarity_search_with_score(q, k=K) for q in queries]
    app.client.close()  # embedded: one process per folder, and the operator's turn comes next
    for pairs in before:
        assert len(pairs) == K and all(d.metadata["_id"] for d, _ in pairs)

    # 2. The operator: adopt the collection (a re-embedded sample must agree) and put it behind an alias.
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{folder}", state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=32)
    with Workspace(config) as ws:
        adopted = commands.adopt(ws, "docs", str(minilm_path), text_field="page_content")
        assert adopted["min_cosine"] > 0.99 and adopted["points_tagged"] == 60
        moved = commands.migrate(ws, "docs")
        assert moved["migrated"] and moved["copied_to"] == "docs__v2"
        v1_label = adopted["model"]

    # 3. The application again, one line changed: the same documents, order and scores.
    store = ReindexerVectorStore("docs", store=f"qdrant+local:{folder}")
    try:
        after = [store.similarity_search_with_score(q, k=K) for q in queries]
        assert [_answers(p) for p in after] == [_answers(p) for p in before]
        for b, a in zip(before, after, strict=False):
            assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
        for doc, score in after[0]:
            assert doc.metadata["reindex"] == {"version": "docs__v2", "model": v1_label, "score": score,
                                               "doc_id": doc.id, "model_tag": v1_label.split("@")[1]}
        as_retriever = store.as_retriever(search_kwargs={"k": K}).invoke(queries[0])
        assert [d.id for d in as_retriever] == [d.id for d, _ in after[0]]
        plain = ReindexerRetriever(searcher=store.searcher, k=K).invoke(queries[0])
        assert [d.id for d in plain] == [d.id for d, _ in after[0]]
        second = after[0][1][0]
        by_filter = store.similarity_search(queries[0], k=K, filter={"metadata.article": second.metadata["article"]})
        assert [d.id for d in by_filter] == [second.id]
    finally:
        store.close()
    # ... or over the QdrantClient the application already holds (an embedded folder has one owner).
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(folder))
    try:
        with ReindexerVectorStore("docs", store=client) as store:
            assert _answers(store.similarity_search_with_score(queries[0], k=K)) == _answers(before[0])
        assert client.collection_exists("docs__v2")  # the application's client is still open
    finally:
        client.close()

    # 4. A model change with a change of dimension, cut over and rolled back under the running
    #    application (one process: an embedded store has one owner, so they share the Workspace).
    with Workspace(config) as ws:
        store = ReindexerVectorStore("docs", workspace=ws, refresh=0)
        retriever = store.as_retriever(search_kwargs={"k": K})
        nodes = LlamaIndexRetriever("docs", workspace=ws, similarity_top_k=K, searcher_options={"refresh": 0})
        try:
            plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                 settings=ModelSettings(truncate_dim=128))
            assert plan.dimension_change and plan.from_version["physical"] == "docs__v2"
            assert commands.apply(ws, plan).live == "docs__v3"
            v2_label = ws.state.get_model(plan.to_version["model_fingerprint"]).label
            for q in queries:
                docs = retriever.invoke(q)
                assert {(d.metadata["reindex"]["version"], d.metadata["reindex"]["model"]) for d in docs} == {
                    ("docs__v3", v2_label)}
                assert all(d.metadata["reindex"]["model_tag"] == v2_label.split("@")[1] for d in docs)
                # the payload is the application's layout still: text and metadata as it wrote them
                assert all(d.page_content and "article" in d.metadata for d in docs)
            got = nodes.retrieve(queries[0])
            assert {n.node.metadata["reindex"]["version"] for n in got} == {"docs__v3"}
            assert all(n.node.text and n.node.metadata["article"] for n in got)

            commands.rollback(ws, "docs")
            back = [store.similarity_search_with_score(q, k=K) for q in queries]
            assert [_answers(p) for p in back] == [_answers(p) for p in before]
            assert {d.metadata["reindex"]["version"] for p in back for d, _ in p} == {"docs__v2"}
        finally:
            store.close()
            nodes.close()
