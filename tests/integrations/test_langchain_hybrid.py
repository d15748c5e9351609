"""A LangChain application in hybrid mode (issue 23): langchain-qdrant's ``QdrantVectorStore`` with
``RetrievalMode.HYBRID`` keeps a dense vector and a sparse one of its own (``langchain-sparse``),
made by the application's sparse encoder. The tool adopts and migrates the collection, changes the
model and rolls back: the application's sparse vectors stay exactly as it wrote them in every
version, and its hybrid queries, made through reindexer with its own sparse encoder, come each from
one version, the live one.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
langchain_qdrant = pytest.importorskip("langchain_qdrant", reason="pip install langchain-qdrant (in the test extra)")

from langchain_core.documents import Document  # noqa: E402
from langchain_qdrant import RetrievalMode, SparseEmbeddings, SparseVector  # noqa: E402

from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.model_identity import ModelSettings  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.test_langchain_app import MiniLMEmbeddings  # noqa: E402

K = 5
SPARSE = "langchain-sparse"  # langchain-qdrant's name for it


class KeywordSparse(SparseEmbeddings):
    """The application's own sparse encoder: lower-cased words, counted, indexed by CRC-32."""

    @staticmethod
    def _one(text: str) -> SparseVector:
        counts = Counter(zlib.crc32(w.encode()) for w in re.findall(r"\w+", text.lower()))
        indices = sorted(counts)
        return SparseVector(indices=indices, values=[float(counts[i]) for i in indices])

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> SparseVector:
        return self._one(text)


@pytest.fixture(scope="module")
def minilm_embeddings(minilm_path):
    from sentence_transformers import SentenceTransformer

    return MiniLMEmbeddings(SentenceTransformer(str(minilm_path), device="cpu"))


def sparse_vectors(folder, physical: str) -> dict[str, tuple[tuple[int, ...], tuple[float, ...]]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(folder))
    try:
        points, _ = client.scroll(physical, limit=1000, with_vectors=[SPARSE], with_payload=False)
        return {str(p.id): (tuple(p.vector[SPARSE].indices), tuple(p.vector[SPARSE].values)) for p in points}
    finally:
        client.close()


def assert_moves_to(answers, physical: str, patience: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + patience
    while True:
        got = answers("hybrid")
        assert all(len({v for v, _ in answer}) == 1 for answer in got)  # never two versions in one answer
        if {v for answer in got for v, _ in answer} == {physical}:
            return
        assert time.monotonic() < deadline, f"still not answering from {physical}"
        time.sleep(0.2)


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_a_hybrid_langchain_app_through_adopt_migrate_a_model_change_and_rollback(
    tmp_path, minilm_path, minilm_embeddings, demo_corpus
):
    from langchain_qdrant import QdrantVectorStore

    from reindexer.integrations.langchain import ReindexerVectorStore

    folder = tmp_path / "qdrant"
    docs = [Document(page_content=d["text"], metadata={"article": d["id"]}) for d in demo_corpus.documents[:40]]
    queries = list(demo_corpus.queries.values())[:6]
    sparse = KeywordSparse()

    # 1. The application builds its hybrid collection: a dense and a sparse vector per point.
    app = QdrantVectorStore.from_documents(docs, minilm_embeddings, sparse_embedding=sparse, path=str(folder),
                                           collection_name="docs", retrieval_mode=RetrievalMode.HYBRID)
    assert len(app.similarity_search(queries[0], k=K)) == K
    app.client.close()
    written = sparse_vectors(folder, "docs")
    assert len(written) == 40 and all(indices for indices, _ in written.values())

    # 2. The operator adopts and migrates it: the sparse vectors come over as they were.
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{folder}", state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=16)
    with Workspace(config) as ws:
        commands.adopt(ws, "docs", str(minilm_path), text_field="page_content")
        assert commands.migrate(ws, "docs")["copied_to"] == "docs__v2"
    assert sparse_vectors(folder, "docs__v2") == written

    # 3. A model change with a change of dimension, cut over and rolled back under the application,
    #    whose hybrid queries go through reindexer with its own sparse encoder.
    with Workspace(config) as ws:
        store = ReindexerVectorStore("docs", workspace=ws, refresh=0, sparse_vector=SPARSE,
                                     sparse_encoder=lambda texts: [sparse.embed_query(t) for t in texts])
        try:
            def answers(mode: str) -> list[list[tuple[str, str]]]:
                return [[(d.metadata["reindex"]["version"], d.id) for d in store.similarity_search(q, k=K, mode=mode)]
                        for q in queries]

            hybrid, dense = answers("hybrid"), answers("dense")
            assert {v for answer in hybrid for v, _ in answer} == {"docs__v2"}
            assert hybrid != dense  # the application's sparse vectors take part
            lexical = answers("lexical")
            assert lexical and all(answer for answer in lexical)

            plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                 settings=ModelSettings(truncate_dim=128))
            assert commands.apply(ws, plan).live == "docs__v3"
            # each answer is wholly from one version; the Searcher keeps answering from v2 while v3's
            # model loads in the background, then from v3
            assert_moves_to(answers, "docs__v3")
            assert commands.rollback(ws, "docs")["live"] == "docs__v2"
            assert_moves_to(answers, "docs__v2")
            assert answers("hybrid") == hybrid  # back to the same version: the same answers
        finally:
            store.close()
    # every version holds the application's sparse vectors, exactly as it wrote them
    assert sparse_vectors(folder, "docs__v3") == written and sparse_vectors(folder, "docs__v2") == written
