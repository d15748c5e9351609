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

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")

from langchain_core.embeddings import Embeddings  # noqa: E402

from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.embedding import Embedder, ModelSettings  # noqa: E402
from reindexer.sync import verify  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402

N = 24
K = 4
TRUNCATED = ModelSettings(truncate_dim=256)
NEW_TEXTS = ["Zebras cross the Mara river every year in search of fresh grazing.",
             "A sourdough starter needs flour, water and a warm kitchen."]


class EmbedderEmbeddings(Embeddings):
    """The application's embeddings: the same model the tool registers, behind LangChain's interface."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return EmbedderEmbeddings(Embedder(minilm_path))


@pytest.fixture(scope="module")
def minilm_256(minilm_path):
    return EmbedderEmbeddings(Embedder(minilm_path, TRUNCATED))


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
    langchain_milvus = pytest.importorskip("langchain_milvus", reason="pip install 'reindexer[frameworks]'")
    texts, metadatas, queries = corpus
    db = str(tmp_path / "m.db")

    def app(embeddings):  # the application (re)opening its store by the collection's name
        return langchain_milvus.Milvus(embeddings, collection_name="kb", connection_args={"uri": db})

    def answers(store):
        return [[(d.metadata["pk"], d.page_content, d.metadata["source"]) for d in store.similarity_search(q, k=K)]
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

        plan = commands.plan(ws, "kb", model_path=str(minilm_path), settings=TRUNCATED)
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
        assert [[a for a in hits if a[0] not in new_pks] for hits in answers(back)] == \
            [[a for a in hits if a[0] not in new_pks] for hits in before]
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        assert verify(ws, "kb").ok
