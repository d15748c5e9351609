"""open_milvus_vector_store: LlamaIndex's Milvus store reopened by a name that is an alias, on Milvus Lite.

The full flow with a real model is in test_app_writes.py (Lite and the 2.3.5
server); here the helper's own cases, with four-dimension vectors: a first run,
a collection, an alias that moves under a running store, and overwrite refused.
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="pip install 'reindexer[llamaindex]'")
pytest.importorskip("llama_index.vector_stores.milvus",
                    reason="scripts/setup.sh: pip install --no-deps llama-index-vector-stores-milvus==1.2.0")

from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.vector_stores import VectorStoreQuery  # noqa: E402
from llama_index.vector_stores.milvus import MilvusVectorStore  # noqa: E402
from pymilvus import MilvusClient, MilvusException  # noqa: E402

from reindexer.errors import UsageError  # noqa: E402
from reindexer.integrations.llamaindex_milvus import open_milvus_vector_store  # noqa: E402


def _nodes(prefix: str, n: int = 3) -> list[TextNode]:
    return [TextNode(text=f"{prefix} {i}", id_=f"{prefix}{i}", embedding=[1.0, float(i), 0.0, 0.0]) for i in range(n)]


def _ids(store) -> list[str]:
    return sorted(store.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0, 0.0], similarity_top_k=10)).ids)


def test_a_first_run_creates_the_collection_and_a_collection_opens_as_itself(tmp_path):
    uri = str(tmp_path / "m.db")
    store = open_milvus_vector_store(uri=uri, collection_name="kb", dim=4)
    store.add(_nodes("a"))
    client = MilvusClient(uri=uri)
    assert client.list_collections() == ["kb"]
    again = open_milvus_vector_store(uri=uri, collection_name="kb")
    assert again.collection_name == "kb" and _ids(again) == ["a0", "a1", "a2"]


def test_an_alias_opens_and_the_store_follows_it_when_it_moves(tmp_path):
    uri = str(tmp_path / "m.db")
    MilvusVectorStore(uri=uri, collection_name="kb__v1", dim=4).add(_nodes("v1_"))
    MilvusVectorStore(uri=uri, collection_name="kb__v2", dim=4).add(_nodes("v2_"))
    client = MilvusClient(uri=uri)
    client.create_alias("kb__v1", "kb")

    # What the application did before: the store would create "kb", and Milvus refuses.
    with pytest.raises(MilvusException, match="already exists"):
        MilvusVectorStore(uri=uri, collection_name="kb", dim=4)
    assert sorted(client.list_collections()) == ["kb__v1", "kb__v2"]

    store = open_milvus_vector_store(uri=uri, collection_name="kb")
    assert store.collection_name == "kb" and _ids(store) == ["v1_0", "v1_1", "v1_2"]
    store.add([TextNode(text="new", id_="new", embedding=[1.0, 0.5, 0.0, 0.0])])
    assert client.query("kb__v1", filter='id == "new"', output_fields=["id"]) == [{"id": "new"}]

    client.alter_alias("kb__v2", "kb")  # a cut-over, under the running store
    assert _ids(store) == ["v2_0", "v2_1", "v2_2"]
    store.add([TextNode(text="newer", id_="newer", embedding=[1.0, 0.5, 0.0, 0.0])])
    assert client.query("kb__v2", filter='id == "newer"', output_fields=["id"]) == [{"id": "newer"}]
    assert sorted(client.list_collections()) == ["kb__v1", "kb__v2"]


def test_overwrite_on_an_alias_is_refused_and_drops_nothing(tmp_path):
    uri = str(tmp_path / "m.db")
    MilvusVectorStore(uri=uri, collection_name="kb__v1", dim=4).add(_nodes("v1_"))
    client = MilvusClient(uri=uri)
    client.create_alias("kb__v1", "kb")
    with pytest.raises(UsageError, match="'kb' is an alias of 'kb__v1'") as exc:
        open_milvus_vector_store(uri=uri, collection_name="kb", dim=4, overwrite=True)
    assert exc.value.exit_code == 2
    assert client.list_collections() == ["kb__v1"]
    assert client.query("kb__v1", filter='id != ""', output_fields=["id"], consistency_level="Strong") == \
        [{"id": f"v1_{i}"} for i in range(3)]
