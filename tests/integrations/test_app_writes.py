"""Framework applications through adopt, migrate, a model change, cut-over and rollback, reading and writing.

Each application (langchain-qdrant, langchain-milvus, LlamaIndex's Qdrant and
Milvus stores) builds its collection its own default way, on Qdrant local,
Milvus Lite and (LlamaIndex's Milvus store) the Milvus 2.3.5 server, and keeps using it while the tool
works. It is reopened by the collection's name after every step, as a
restarted application would be, and the instance started before adoption keeps
running beside it. After every step:

- where the model did not change, it reads the same answers as before the tool
  came (its own new documents aside);
- it adds a document without an id of its own where the framework allows it
  (LangChain: Milvus auto-ids, UUIDs on Qdrant), between the steps, and finds
  every document it added; ``sync``, the build's catch-up and the passes before
  each alias swap pick them up: the version the alias reaches holds every point
  the live one held, once each and under its own id, and ``verify`` agrees;
- every version's schema equals the original's field by field, except the
  dimension the plan names, and holds the payloads as the application wrote
  them (the tool's model tag aside).

The new model version is real: the same MiniLM weights under a 256-dimension
truncation (the session fixtures ``minilm`` and ``minilm_256``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")


from reindexer import commands  # noqa: E402
from reindexer.adapters.base import MODEL_KEY  # noqa: E402
from reindexer.commands import sync, verify  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402
from tests.plugins.stores import _url_for  # noqa: E402

pytestmark = pytest.mark.slow  # two model versions over a real framework store

N = 20
K = 4
WRITES = [
    "Zebras cross the Mara river every year in search of fresh grazing.",  # after adopt and migrate
    "A sourdough starter needs flour, water and a warm kitchen.",  # after the shadow is built
    "Lighthouses once burned whale oil to guide ships past the reef.",  # after the cut-over
]


@pytest.fixture(scope="module")
def corpus(demo_corpus):
    docs = demo_corpus.documents[:N]
    return [d["text"] for d in docs], [{"source": f"s{i % 3}"} for i in range(N)], \
        list(demo_corpus.queries.values())[:4]


# -- the applications: each builds "kb" its own default way and reopens it by that name --------------


@dataclass
class LangChainQdrant:
    path: str
    text_field = "page_content"
    metric = "cosine"

    def build(self, embeddings, texts, metadatas):
        from langchain_qdrant import QdrantVectorStore

        first = QdrantVectorStore.from_texts(texts, embeddings, metadatas=metadatas, path=self.path,
                                             collection_name="kb")
        first.client.close()  # embedded: one process per folder, and the tool's is next

    def open(self, ws, embeddings):
        from langchain_qdrant import QdrantVectorStore

        # Local mode allows one client per folder: the application shares the tool's.
        return QdrantVectorStore(client=ws.store._client, collection_name="kb", embedding=embeddings)

    def search(self, store, query, k):
        return [(str(uuid.UUID(d.metadata["_id"])), d.page_content) for d in store.similarity_search(query, k=k)]

    def add(self, store, text):
        [point_id] = store.add_texts([text], metadatas=[{"source": "app"}])  # the store makes a UUID
        return str(uuid.UUID(str(point_id)))

    def check_original(self, schema):
        assert schema.vector == "" and schema.metric == "cosine"  # one unnamed vector


@dataclass
class LangChainMilvus:
    uri: str
    text_field = "text"
    metric = "euclid"  # langchain-milvus' L2, not the model's cosine

    def build(self, embeddings, texts, metadatas):
        from langchain_milvus import Milvus

        Milvus.from_texts(texts, embeddings, metadatas=metadatas, collection_name="kb",
                          connection_args={"uri": self.uri})

    def open(self, ws, embeddings):
        from langchain_milvus import Milvus

        return Milvus(embeddings, collection_name="kb", connection_args={"uri": self.uri})

    def search(self, store, query, k):
        return [(str(d.metadata["pk"]), d.page_content) for d in store.similarity_search(query, k=k)]

    def add(self, store, text):
        [pk] = store.add_texts([text], metadatas=[{"source": "app"}])  # the server allocates the key
        return str(pk)

    def check_original(self, schema):
        assert (schema.primary.name, schema.primary.kind, schema.primary.auto_id, schema.dynamic) == \
            ("pk", "int64", True, False)


@dataclass
class LangChainMilvusBM25(LangChainMilvus):
    """langchain-milvus in hybrid mode: a dense vector, and a sparse one that its BM25 built-in function
    (a Milvus function) fills from the text; its searches fuse both (RRF). The tool copies the function
    with the schema, so every version's sparse vectors are the store's BM25 of the text, never stale."""

    def _kwargs(self) -> dict[str, Any]:
        from langchain_milvus import BM25BuiltInFunction

        # Milvus Lite (3.2) refuses langchain-milvus' (0.4) defaults for the BM25 field, AUTOINDEX and
        # a search's drop_ratio_build: the application names the index and parameters Milvus asks for.
        return {"collection_name": "kb", "connection_args": {"uri": self.uri},
                "builtin_function": BM25BuiltInFunction(), "vector_field": ["dense", "sparse"],
                "index_params": [{"index_type": "AUTOINDEX", "metric_type": "L2"},
                                 {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25"}],
                "search_params": [{"metric_type": "L2", "params": {}}, {"metric_type": "BM25", "params": {}}]}

    def build(self, embeddings, texts, metadatas):
        from langchain_milvus import Milvus

        Milvus.from_texts(texts, embeddings, metadatas=metadatas, **self._kwargs())

    def open(self, ws, embeddings):
        from langchain_milvus import Milvus

        return Milvus(embeddings, **self._kwargs())

    def search(self, store, query, k):
        return [(str(d.metadata["pk"]), d.page_content)
                for d in store.similarity_search(query, k=k, ranker_type="rrf")]  # fmt: skip

    # BM25 weighs a document's terms by the whole collection: once the application adds documents,
    # the others' scores move, so "the same answers as before" holds only until the first write.
    ranks_by_itself = False

    def check_versions(self, ws, a: str, b: str) -> None:
        """Both versions hold, per document, the sparse vector the store's BM25 makes of its text."""
        client = ws.store._client
        rows = {name: {r["pk"]: (r["text"], r["sparse"]) for r in client.query(name, filter="pk >= 0", limit=1000,
                                                                              output_fields=["text", "sparse"])}
                for name in (a, b)}  # fmt: skip
        assert rows[a] == rows[b] and len(rows[a]) == N + 3
        assert all(sparse for _, sparse in rows[a].values())

    def check_original(self, schema):
        super().check_original(schema)
        [function] = schema.options["functions"]
        assert (function["type"], function["input"], function["output"]) == ("bm25", ["text"], ["sparse"])


class _LlamaIndexApp:
    """LlamaIndex stores take embeddings from the application: the handle carries its model."""

    def nodes(self, embeddings, texts, metadatas, ids):
        from llama_index.core.schema import TextNode

        vectors = embeddings.embed_documents(texts)
        return [TextNode(text=t, id_=i, embedding=v, metadata=m)
                for t, v, m, i in zip(texts, vectors, metadatas, ids, strict=True)]

    def search(self, handle, query, k):
        from llama_index.core.vector_stores import VectorStoreQuery

        store, embeddings = handle
        res = store.query(VectorStoreQuery(query_embedding=embeddings.embed_query(query), similarity_top_k=k))
        return [(self.doc_id(i), n.get_content()) for i, n in zip(res.ids, res.nodes, strict=True)]

    def add(self, handle, text):
        store, embeddings = handle
        [node] = self.nodes(embeddings, [text], [{"source": "app"}], [str(uuid.uuid4())])
        store.add([node])
        return self.doc_id(node.id_)

    def doc_id(self, node_id):
        return node_id


@dataclass
class LlamaIndexQdrant(_LlamaIndexApp):
    path: str
    text_field = "_node_content"  # the node as JSON, its text inside
    metric = "cosine"

    def build(self, embeddings, texts, metadatas):
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        client = QdrantClient(path=self.path)
        store = QdrantVectorStore(client=client, collection_name="kb")
        store.add(self.nodes(embeddings, texts, metadatas, [str(uuid.UUID(int=i + 1)) for i in range(N)]))
        client.close()

    def open(self, ws, embeddings):
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        return QdrantVectorStore(client=ws.store._client, collection_name="kb"), embeddings

    def doc_id(self, node_id):
        return str(uuid.UUID(node_id))

    def check_original(self, schema):
        assert schema.metric == "cosine"


@dataclass
class LlamaIndexMilvus(_LlamaIndexApp):
    uri: str
    text_field = "text"  # its own field; _node_content holds the rest of the node
    metric = "dot"  # MilvusVectorStore's IP

    def build(self, embeddings, texts, metadatas):
        from llama_index.vector_stores.milvus import MilvusVectorStore

        store = MilvusVectorStore(uri=self.uri, collection_name="kb", dim=384, overwrite=True)
        store.add(self.nodes(embeddings, texts, metadatas, [f"n{i}" for i in range(N)]))

    def open(self, ws, embeddings):
        # MilvusVectorStore(collection_name="kb") would try to create "kb" once it is an alias
        # (it looks the name up in list_collections); the documented way opens it (docs/adapters.md).
        from reindexer.integrations.llamaindex_milvus import open_milvus_vector_store

        return open_milvus_vector_store(uri=self.uri, collection_name="kb"), embeddings

    def check_original(self, schema):
        assert (schema.primary.name, schema.primary.kind, schema.primary.auto_id, schema.dynamic) == \
            ("id", "varchar", False, True)


@dataclass
class LlamaIndexMilvusBM25(LlamaIndexMilvus):
    """LlamaIndex's Milvus store in hybrid mode: a dense vector and a sparse one its BM25 built-in
    function fills from the text; its hybrid queries fuse both (RRF)."""

    ranks_by_itself = False  # BM25 weighs terms by the whole collection: answers move as it grows

    @staticmethod
    def _kwargs() -> dict[str, Any]:
        from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction

        return {"enable_sparse": True, "sparse_embedding_function": BM25BuiltInFunction(),
                "hybrid_ranker": "RRFRanker", "hybrid_ranker_params": {"k": 60},
                # Milvus Lite (3.2) takes no AUTOINDEX and no drop_ratio for the BM25 field
                "sparse_index_config": {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25",
                                        "params": {}}}

    def build(self, embeddings, texts, metadatas):
        from llama_index.vector_stores.milvus import MilvusVectorStore

        store = MilvusVectorStore(uri=self.uri, collection_name="kb", dim=384, overwrite=True, **self._kwargs())
        store.add(self.nodes(embeddings, texts, metadatas, [f"n{i}" for i in range(N)]))

    def open(self, ws, embeddings):
        from reindexer.integrations.llamaindex_milvus import open_milvus_vector_store

        return open_milvus_vector_store(uri=self.uri, collection_name="kb", **self._kwargs()), embeddings

    def search(self, handle, query, k):
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

        store, embeddings = handle
        res = store.query(VectorStoreQuery(query_embedding=embeddings.embed_query(query), query_str=query,
                                           similarity_top_k=k, mode=VectorStoreQueryMode.HYBRID))
        return [(self.doc_id(i), n.get_content()) for i, n in zip(res.ids, res.nodes, strict=True)]

    def check_versions(self, ws, a: str, b: str) -> None:
        """Both versions hold, per node, the sparse vector the store's BM25 makes of its text."""
        client = ws.store._client
        rows = {name: {r["id"]: (r["text"], r["sparse_embedding"]) for r in client.query(
            name, filter='id != ""', limit=1000, output_fields=["text", "sparse_embedding"])} for name in (a, b)}
        assert rows[a] == rows[b] and len(rows[a]) == N + 3
        assert all(sparse for _, sparse in rows[a].values())

    def check_original(self, schema):
        super().check_original(schema)
        [function] = schema.options["functions"]
        assert (function["type"], function["output"]) == ("bm25", ["sparse_embedding"])


APPS = {"langchain-qdrant": LangChainQdrant, "langchain-milvus": LangChainMilvus,
        "llamaindex-milvus-bm25": LlamaIndexMilvusBM25,
        "langchain-milvus-bm25": LangChainMilvusBM25,
        "llamaindex-qdrant": LlamaIndexQdrant, "llamaindex-milvus": LlamaIndexMilvus}
MODULES = {"langchain-qdrant": "langchain_qdrant", "langchain-milvus": "langchain_milvus",
           "langchain-milvus-bm25": "langchain_milvus",
           "llamaindex-qdrant": "llama_index.vector_stores.qdrant",
           "llamaindex-milvus": "llama_index.vector_stores.milvus",
           "llamaindex-milvus-bm25": "llama_index.vector_stores.milvus"}
PACKAGES = {"llamaindex-milvus": "scripts/setup.sh: pip install --no-deps llama-index-vector-stores-milvus==1.2.0",
            "llamaindex-milvus-bm25": "scripts/setup.sh: pip install --no-deps llama-index-vector-stores-milvus==1.2.0"}
# langchain-milvus on the 2.3.5 server is not a cell: its auto-id key cannot be kept in a copy there
# (servers take given keys in an auto-id collection from 2.6), so migrate refuses before any write;
# tests/test_adopt.py::test_langchain_milvus_defaults_on_the_milvus_server holds that refusal.
CELLS = [
    pytest.param(("langchain-qdrant", "qdrant-local"), id="langchain-qdrant-local"),
    pytest.param(("llamaindex-qdrant", "qdrant-local"), id="llamaindex-qdrant-local"),
    pytest.param(("langchain-milvus", "milvus-lite"), id="langchain-milvus-lite"),
    pytest.param(("langchain-milvus-bm25", "milvus-lite"), id="langchain-milvus-bm25-lite"),
    pytest.param(("llamaindex-milvus", "milvus-lite"), id="llamaindex-milvus-lite"),
    pytest.param(("llamaindex-milvus-bm25", "milvus-lite"), id="llamaindex-milvus-bm25-lite"),
    pytest.param(("llamaindex-milvus", "milvus-server"), id="llamaindex-milvus-server", marks=pytest.mark.server),
]


def _location(store_url: str) -> str:
    """Where the application connects for the tool's store URL: a folder, a .db file, a server's URI."""
    for prefix in ("qdrant+local:", "milvus+lite:"):
        if store_url.startswith(prefix):
            return store_url[len(prefix):]
    assert store_url.startswith("milvus://"), store_url
    return "http://" + store_url[len("milvus://"):]


@pytest.fixture
def app_and_store(request, tmp_path):
    """The application (not yet built) and the store URL the tool opens, for one cell of the matrix."""
    name, kind = request.param
    pytest.importorskip(MODULES[name], reason=PACKAGES.get(name, "pip install the test extra"))
    for store_url in _url_for(request, kind, tmp_path):
        yield APPS[name](_location(store_url)), store_url


def _ws(tmp_path: Path, store_url: str) -> Workspace:
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=8))


def _ids(ws, physical) -> Counter:
    return Counter(p.doc_id for page in ws.store.scroll(physical, batch_size=64) for p in page)


def _payloads(ws, physical) -> dict[str, dict]:
    """Every point's payload but the tool's own model tag, by document id."""
    return {p.doc_id: {k: v for k, v in p.payload.items() if k != MODEL_KEY}
            for page in ws.store.scroll(physical, batch_size=64) for p in page}


def _answers(app: Any, handle, queries, added=()) -> list[list[tuple[str, str]]]:
    """The top K of each query, the application's own additions left out (they may rank in between)."""
    return [[a for a in app.search(handle, q, K + len(added)) if a[0] not in added][:K] for q in queries]


def _finds(app: Any, handle, texts, added) -> None:
    for text, doc_id in zip(texts, added, strict=True):
        assert app.search(handle, text, 1)[0][0] == doc_id, text


@pytest.mark.parametrize("app_and_store", CELLS, indirect=True)
def test_a_framework_application_through_a_model_change(app_and_store, tmp_path, minilm_path, minilm, minilm_256,
                                                        corpus):
    app, store_url = app_and_store
    texts, metadatas, queries = corpus
    app.build(minilm, texts, metadatas)
    with _ws(tmp_path, store_url) as ws:
        running = app.open(ws, minilm)  # started before the tool came, never restarted
        before = _answers(app, running, queries)
        original, payloads = ws.store.read_schema("kb"), _payloads(ws, "kb")
        app.check_original(original)

        commands.adopt(ws, "kb", str(minilm_path), text_field=app.text_field)
        assert _answers(app, app.open(ws, minilm), queries) == before

        assert commands.migrate(ws, "kb")["migrated"] and ws.store.resolve("kb") == "kb__v2"
        assert original.differences(ws.store.read_schema("kb__v2")) == [] and _payloads(ws, "kb__v2") == payloads
        assert _answers(app, app.open(ws, minilm), queries) == before
        added = [app.add(app.open(ws, minilm), WRITES[0])]
        assert sync(ws, "kb").versions["v2"]["embedded"] == 1
        assert _ids(ws, "kb__v2")[added[0]] == 1 and ws.store.count("kb__v2") == N + 1 and verify(ws, "kb").ok

        plan = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
        assert plan.to_version["metric"] == app.metric  # the application's metric, not the model's default
        built = commands.apply(ws, plan, cutover=False)
        assert built.physical == "kb__v3" and ws.store.count("kb__v3") == N + 1
        assert original.for_version(256, app.metric).differences(ws.store.read_schema("kb__v3")) == []
        assert _payloads(ws, "kb__v3") == _payloads(ws, "kb__v2")  # the payloads as the application wrote them
        added.append(app.add(app.open(ws, minilm), WRITES[1]))  # into v2, still live
        if getattr(app, "ranks_by_itself", True):
            assert _answers(app, app.open(ws, minilm), queries, added) == before
        live_ids = _ids(ws, "kb__v2")

        moved = commands.cutover(ws, "kb")
        assert moved["live"] == "kb__v3" and moved["caught_up"] == {"embedded": 1, "deleted": 0}
        assert _ids(ws, "kb__v3") == live_ids and set(live_ids.values()) == {1}  # every point, once, by its id
        assert verify(ws, "kb").ok
        after = app.open(ws, minilm_256)
        _finds(app, after, WRITES[:2], added)
        added.append(app.add(after, WRITES[2]))
        _finds(app, app.open(ws, minilm_256), WRITES, added)
        live_ids = _ids(ws, "kb__v3")
        assert len(live_ids) == N + 3

        assert commands.rollback(ws, "kb")["live"] == "kb__v2"
        assert _ids(ws, "kb__v2") == live_ids and set(live_ids.values()) == {1}
        assert _payloads(ws, "kb__v2") == _payloads(ws, "kb__v3")
        assert verify(ws, "kb").ok
        assert original.differences(ws.store.read_schema("kb__v2")) == []
        back = app.open(ws, minilm)
        _finds(app, back, WRITES, added)
        if getattr(app, "ranks_by_itself", True):
            assert _answers(app, back, queries, added) == before
            assert _answers(app, running, queries, added) == before  # the instance that never restarted
        if hasattr(app, "check_versions"):
            app.check_versions(ws, "kb__v2", "kb__v3")
        _finds(app, running, WRITES, added)


def test_langchain_milvus_insert_after_migrating_a_collection_that_lost_documents(tmp_path, minilm_path, minilm,
                                                                                corpus):
    """A copy of keys 1..N with one deleted: Milvus Lite's counter would hand the app's next insert key N."""
    langchain_milvus = pytest.importorskip("langchain_milvus", reason="pip install langchain-milvus (test extra)")
    texts = corpus[0]
    db = str(tmp_path / "m.db")
    first = langchain_milvus.Milvus.from_texts(texts, minilm, metadatas=[{"source": "corpus"}] * N,
                                               collection_name="kb", connection_args={"uri": db})
    first.delete(ids=[first.similarity_search(texts[0], k=1)[0].metadata["pk"]])  # the application drops one
    with _ws(tmp_path, f"milvus+lite:{db}") as ws:
        commands.adopt(ws, "kb", str(minilm_path), text_field="text")
        commands.migrate(ws, "kb")
        before = {p.doc_id: p.payload["text"] for page in ws.store.scroll("kb") for p in page}
        app = langchain_milvus.Milvus(minilm, collection_name="kb", connection_args={"uri": db})
        [new] = app.add_texts(WRITES[:1], metadatas=[{"source": "app"}])
        after = {p.doc_id: p.payload["text"] for page in ws.store.scroll("kb") for p in page}
        assert str(new) not in before and after == {**before, str(new): WRITES[0]}
