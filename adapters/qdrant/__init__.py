"""The Qdrant adapter: Qdrant behind the ``VectorStore`` interface: local mode (embedded) and server.

Point ids
    Qdrant accepts only unsigned integers and UUIDs. The point id is derived
    from the document id, deterministically: a canonical decimal string
    (``"42"``, not ``"042"``) becomes that integer, a canonical UUID string
    becomes that UUID, anything else becomes ``uuid5(DOC_ID_NAMESPACE, doc_id)``.
    The document id itself is always kept in the payload under ``DOC_ID_KEY``;
    reads take it from there, or from ``str(point.id)`` for points written
    outside the tool. ``DOC_ID_KEY`` is removed from the payload handed back;
    everything else (``MODEL_KEY`` included) is returned as stored.

Collection metadata
    Qdrant's own collection ``metadata`` (qdrant-client >= 1.16). The payload
    index spec and the index settings are kept there too, as JSON under
    ``reindex.payload_indexes`` and ``reindex.index_params``, because local
    mode shows neither.

Scores
    cosine: cosine similarity; dot: inner product (both higher is better);
    euclid: Euclidean distance (lower is better). Hits come best first.

Vectors
    With the cosine metric Qdrant normalises vectors on write, so a vector read
    back is the unit vector of the one written.

Modules, bottom up: ``point_ids`` (document ids as point ids), ``conversions``
(between qdrant-client's objects and the tool's data), ``connection`` (client,
errors, local mode's storage), ``structure`` (collections, their vectors and
schema), and ``store`` (``QdrantStore``, the ``VectorStore``: points, searches,
aliases). Here: ``QdrantBackend``, which the ``reindexer.backends`` entry point
names; importing it imports no client library.
"""

from __future__ import annotations

from typing import Any, ClassVar

from reindexer.adapters.backend import EmbeddedOrServerBackend
from reindexer.adapters.base import VectorStore
from reindexer.adapters.qdrant.store import QdrantStore

__all__ = ["QdrantBackend", "QdrantStore"]


class QdrantBackend(EmbeddedOrServerBackend):
    """``qdrant+local:PATH`` (local mode), ``qdrant://HOST[:6333]``, ``qdrant+https://HOST[:6333]``."""

    name = "qdrant"
    schemes: ClassVar[tuple[str, ...]] = ("qdrant+local", "qdrant", "qdrant+https")
    examples: ClassVar[tuple[str, ...]] = ("qdrant+local:PATH", "qdrant://HOST:PORT")
    secret_env = "QDRANT_API_KEY"
    embedded_scheme = "qdrant+local"
    default_port = 6333

    def open_embedded(self, path: str) -> VectorStore:
        return QdrantStore(path=path)

    def open_server(self, url: str, secret: str | None) -> VectorStore:
        return QdrantStore(url=url, api_key=secret)

    def wraps(self, client: Any) -> bool:
        return type(client).__name__ == "QdrantClient"

    def wrap(self, client: Any) -> VectorStore:
        return QdrantStore(client=client)
