"""LlamaIndex's ``MilvusVectorStore`` opened by a name that is an alias, as it is after ``reindex migrate``.

``MilvusVectorStore`` (llama-index-vector-stores-milvus 1.2) decides whether its
collection exists by looking the name up in ``list_collections``, which lists
collections, not aliases. Given the alias ``kb`` it would create a collection
called ``kb``, which Milvus refuses ("collection 'kb' already exists"), so an
application restarted after ``migrate`` fails at start-up. The store reads and
writes through whatever name it holds, and Milvus resolves an alias for every
one of those calls, so the store is opened on the physical collection the alias
points at (it exists: nothing is created) and then given the alias back, and
every later read and write goes through the alias and follows cut-overs and
rollbacks without a restart::

    # before: store = MilvusVectorStore(uri=uri, collection_name="kb", dim=384)
    store = open_milvus_vector_store(uri=uri, collection_name="kb", dim=384)

A name that is still a collection, or does not exist yet, is passed through
unchanged, so the same line serves before adoption and on a first run.
"""

from __future__ import annotations

from typing import Any

try:
    from llama_index.vector_stores.milvus import MilvusVectorStore
    from pymilvus import MilvusClient
except ImportError as exc:  # pragma: no cover - exercised only without the package
    raise ImportError(
        "reindexer.integrations.llamaindex_milvus needs LlamaIndex's Milvus store: "
        "pip install --no-deps llama-index-vector-stores-milvus (it pins pymilvus<3 but runs on pymilvus 3)"
    ) from exc

from reindexer.errors import UsageError

__all__ = ["open_milvus_vector_store", "physical_collection"]


def physical_collection(client: Any, name: str) -> str:
    """The collection ``name`` stands for: itself when it is a collection (or nothing yet), else its alias' target."""
    if name in client.list_collections():
        return name
    res = client.list_aliases()
    aliases = res.get("aliases", []) if isinstance(res, dict) else list(res)
    if name not in aliases:
        return name
    return client.describe_alias(name)["collection_name"]


def open_milvus_vector_store(*, uri: str, collection_name: str, token: str = "", **kwargs: Any) -> MilvusVectorStore:
    """A ``MilvusVectorStore`` whose reads and writes go through ``collection_name``, alias or collection.

    Takes ``MilvusVectorStore``'s own arguments. ``overwrite=True`` is refused when the name is an
    alias: the store would drop the physical collection, which is a version the tool manages.
    """
    client = MilvusClient(uri=uri, token=token)
    try:
        physical = physical_collection(client, collection_name)
    finally:
        client.close()
    if physical != collection_name and kwargs.get("overwrite"):
        raise UsageError(
            f"{collection_name!r} is an alias of {physical!r}; overwrite=True would drop that collection",
            hint="drop versions with `reindex gc`, or open the store without overwrite",
        )
    store = MilvusVectorStore(uri=uri, token=token, collection_name=physical, **kwargs)
    # Pydantic field, read by every call the store makes: from here on Milvus resolves the alias each time.
    store.collection_name = collection_name
    return store
