"""A framework application keeps adding documents without ids while the tool syncs, builds and cuts over.

LangChain's ``add_texts`` with no ids: on Milvus Lite (langchain-milvus'
defaults, an auto-id INT64 key) the server allocates the keys; on Qdrant
(langchain-qdrant) the store generates UUIDs. The application writes after
adoption, between a sync and a build, and between a shadow's build and its
cut-over (an apply with ``--no-cutover``, then ``reindex cutover``, as with a
gate that takes its time). At every cut-over and rollback the version the
alias reaches holds every point the live version held, each exactly once and
under its own id, and the application finds its documents there. The new
model version is real: the same MiniLM weights under a 256-dimension
truncation.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")


from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.sync import sync, verify  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.integrations.embeddings import TRUNCATED  # noqa: E402

pytestmark = pytest.mark.slow  # two model versions over a real framework store

N = 16
WRITES = [
    ["Zebras cross the Mara river every year in search of fresh grazing."],  # after adopt and migrate
    ["A sourdough starter needs flour, water and a warm kitchen."],  # after the shadow is built
    ["Lighthouses once burned whale oil to guide ships past the reef."],  # after the cut-over
]






@pytest.fixture(scope="module")
def texts(demo_corpus):
    return [d["text"] for d in demo_corpus.documents[:N]]


def _ws(tmp_path, store_url):
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=8))


def _ids(ws, physical) -> Counter:
    return Counter(p.doc_id for page in ws.store.scroll(physical, batch_size=64) for p in page)


def _flow(ws, minilm_path, app, key, text_field, id_key):
    """adopt, migrate, app writes, sync, build, app writes, cut over, app writes, roll back.

    ``app(v)`` opens the application's store with model version v (1 or 2), ``key`` turns the ids
    the framework hands back into document ids, ``id_key`` is where it puts them in a result's metadata.
    """
    commands.adopt(ws, "kb", str(minilm_path), text_field=text_field)
    commands.migrate(ws, "kb")
    added = [key(i) for i in app(1).add_texts(WRITES[0], metadatas=[{"source": "app"}])]
    assert sync(ws, "kb").versions["v2"]["embedded"] == 1
    assert _ids(ws, "kb__v2")[added[0]] == 1 and ws.store.count("kb__v2") == N + 1 and verify(ws, "kb").ok

    built = commands.apply(ws, commands.plan(ws, "kb", model_path=str(minilm_path), settings=TRUNCATED),
                           cutover=False)
    assert built.physical == "kb__v3" and ws.store.count("kb__v3") == N + 1
    added += [key(i) for i in app(1).add_texts(WRITES[1], metadatas=[{"source": "app"}])]  # into v2, still live
    live_ids = _ids(ws, "kb__v2")

    moved = commands.cutover(ws, "kb")
    assert moved["live"] == "kb__v3" and moved["caught_up"] == {"embedded": 1, "deleted": 0}
    assert _ids(ws, "kb__v3") == live_ids and set(live_ids.values()) == {1}  # every point, once, by its id
    assert verify(ws, "kb").ok
    after = app(2)
    for text, doc_id in zip(WRITES, added, strict=False):
        assert key(after.similarity_search(text[0], k=1)[0].metadata[id_key]) == doc_id
    added += [key(i) for i in after.add_texts(WRITES[2], metadatas=[{"source": "app"}])]
    live_ids = _ids(ws, "kb__v3")
    assert len(live_ids) == N + 3

    assert commands.rollback(ws, "kb")["live"] == "kb__v2"
    assert _ids(ws, "kb__v2") == live_ids and verify(ws, "kb").ok
    back = app(1)
    for text, doc_id in zip(WRITES, added, strict=True):
        assert key(back.similarity_search(text[0], k=1)[0].metadata[id_key]) == doc_id


def test_langchain_milvus_auto_ids(tmp_path, minilm_path, minilm, minilm_256, texts):
    langchain_milvus = pytest.importorskip("langchain_milvus", reason="pip install langchain-milvus (test extra)")
    db = str(tmp_path / "m.db")
    models = {1: minilm, 2: minilm_256}
    langchain_milvus.Milvus.from_texts(texts, minilm, metadatas=[{"source": "corpus"}] * N, collection_name="kb",
                                       connection_args={"uri": db})
    with _ws(tmp_path, f"milvus+lite:{db}") as ws:
        _flow(ws, minilm_path,
              lambda v: langchain_milvus.Milvus(models[v], collection_name="kb", connection_args={"uri": db}),
              str, "text", "pk")


def test_langchain_qdrant_generated_uuids(tmp_path, minilm_path, minilm, minilm_256, texts):
    langchain_qdrant = pytest.importorskip("langchain_qdrant", reason="pip install langchain-qdrant (test extra)")
    models = {1: minilm, 2: minilm_256}
    first = langchain_qdrant.QdrantVectorStore.from_texts(texts, minilm, path=str(tmp_path / "q"),
                                                          collection_name="kb")
    first.client.close()  # embedded: one process per folder
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        client = ws.store._client  # the application shares the tool's client: local mode allows one
        _flow(ws, minilm_path,
              lambda v: langchain_qdrant.QdrantVectorStore(client=client, collection_name="kb", embedding=models[v]),
              lambda i: str(uuid.UUID(str(i))), "page_content", "_id")


def test_langchain_milvus_insert_after_migrating_a_collection_that_lost_documents(tmp_path, minilm_path, minilm,
                                                                                texts):
    """A copy of keys 1..N with one deleted: Milvus Lite's counter would hand the app's next insert key N."""
    langchain_milvus = pytest.importorskip("langchain_milvus", reason="pip install langchain-milvus (test extra)")
    db = str(tmp_path / "m.db")
    first = langchain_milvus.Milvus.from_texts(texts, minilm, metadatas=[{"source": "corpus"}] * N,
                                               collection_name="kb", connection_args={"uri": db})
    first.delete(ids=[first.similarity_search(texts[0], k=1)[0].metadata["pk"]])  # the application drops one
    with _ws(tmp_path, f"milvus+lite:{db}") as ws:
        commands.adopt(ws, "kb", str(minilm_path), text_field="text")
        commands.migrate(ws, "kb")
        before = {p.doc_id: p.payload["text"] for page in ws.store.scroll("kb") for p in page}
        app = langchain_milvus.Milvus(minilm, collection_name="kb", connection_args={"uri": db})
        [new] = app.add_texts(WRITES[0], metadatas=[{"source": "app"}])
        after = {p.doc_id: p.payload["text"] for page in ws.store.scroll("kb") for p in page}
        assert str(new) not in before and after == {**before, str(new): WRITES[0][0]}
