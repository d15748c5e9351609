"""The Milvus adapter: Milvus behind the ``VectorStore`` interface: Milvus Lite (embedded) and server.

Schema
    Collections the tool creates have a VARCHAR primary key ``id`` (max 512
    bytes) holding the document id, a FLOAT_VECTOR field ``vector`` and dynamic
    fields, so any payload (nested JSON included) round-trips. A payload key that
    collides with a schema field (``id``, ``vector``) is stored as
    ``reindex_escaped:<key>`` and handed back under its own name. Collection
    and alias names follow the server's rule (letters, digits, underscores;
    not starting with a digit), on Milvus Lite too. For
    collections made outside the tool the primary key and the single float
    vector field are read from ``describe_collection``; every other field is
    payload.

Collection metadata
    Collection properties. The payload index spec and the index settings are
    kept there too, as JSON under ``reindex.payload_indexes`` and
    ``reindex.index_params``. Milvus (2.3 to 2.4) cannot index dynamic fields,
    so payload indexes are recorded, not built (``capabilities.payload_indexes``
    is False).

Index settings
    HNSW with ``hnsw_m`` / ``hnsw_ef_construct`` (defaults 16 / 100, as
    Qdrant's). ``quantization: scalar`` asks for HNSW_SQ (SQ8); servers older
    than 2.5 do not have it and get IVF_SQ8 instead. ``shards`` is the number of
    shards (Milvus Lite ignores it).

Consistency
    Reads use ``Strong`` consistency, so they see every write acknowledged
    before them (``scroll``: the collection's default level, Strong for the
    collections the tool makes).

Scores
    cosine: cosine similarity; dot: inner product (both higher is better);
    euclid: Euclidean distance, lower is better (Milvus reports the squared
    distance; the adapter takes its square root so both backends agree). Hits
    come best first.

After a server restart collections must be loaded again: a read that fails
with "collection not loaded" loads the collection and is tried once more.

Modules, bottom up: ``lite`` (Milvus Lite's quirks), ``layout`` (names, metrics,
the row layout, schema translations), ``lexical`` (the BM25 function),
``connection`` (client, errors, retries), ``structure`` (schemas and indexes),
``rows`` (points as rows), ``auto_ids`` (auto-id collections), and ``store``
(``MilvusStore``, the ``VectorStore``). Here: ``MilvusBackend``, which the
``reindexer.backends`` entry point names; importing it imports no client library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from reindexer.adapters.backend import EmbeddedOrServerBackend
from reindexer.adapters.base import VectorStore
from reindexer.adapters.milvus.layout import MILVUS_NAME_RULE, PK_MAX_LENGTH, check_name
from reindexer.adapters.milvus.store import MilvusStore
from reindexer.errors import UsageError

__all__ = ["MilvusBackend", "MilvusStore"]


class MilvusBackend(EmbeddedOrServerBackend):
    """``milvus+lite:PATH.db`` (Milvus Lite), ``milvus://HOST[:19530]``, ``milvus+https://HOST[:19530]``."""

    name = "milvus"
    schemes: ClassVar[tuple[str, ...]] = ("milvus+lite", "milvus", "milvus+https")
    examples: ClassVar[tuple[str, ...]] = ("milvus+lite:PATH.db", "milvus://HOST:PORT")
    secret_env = "MILVUS_TOKEN"
    embedded_scheme = "milvus+lite"
    default_port = 19530
    name_rule = MILVUS_NAME_RULE
    # the VARCHAR primary key create_collection makes
    max_doc_id_bytes = PK_MAX_LENGTH

    def validate_collection_name(self, name: str, what: str = "collection") -> None:
        check_name(name, what)

    def check_embedded_path(self, path: Path) -> None:
        if path.suffix != ".db":
            raise UsageError(
                f"Milvus Lite needs a file ending in .db, not {path.name!r}",
                hint="for example milvus+lite:.reindex/milvus.db",
            )

    def open_embedded(self, path: str) -> VectorStore:
        return MilvusStore(uri=path)

    def open_server(self, url: str, secret: str | None) -> VectorStore:
        return MilvusStore(uri=url, token=secret)

    def wraps(self, client: Any) -> bool:
        return type(client).__name__ == "MilvusClient"

    def wrap(self, client: Any) -> VectorStore:
        return MilvusStore(client=client)
