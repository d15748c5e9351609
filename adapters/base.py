"""The one small interface every vector store implements.

Everything speaks *document ids* (strings). How a backend keys its points
(Qdrant: unsigned ints or UUIDs; Milvus: a VARCHAR primary key) stays inside
the adapter. Every method maps its client's exceptions into
``reindexer.errors`` at the boundary: ``TransientBackendError`` for failures
worth retrying (the adapter retries them itself, bounded, then raises
``BackendUnavailableError``), ``BackendError`` for the rest, ``NotFoundError``
for a missing collection or alias, ``StoreLockedError`` for an embedded store
held by another process.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from reindexer.errors import UsageError

# Payload keys the tool adds to every point it writes. They sit beside the
# application's own payload, which is copied untouched.
DOC_ID_KEY = "reindex_doc_id"
MODEL_KEY = "reindex_model"
RESERVED_PAYLOAD_KEYS = frozenset({DOC_ID_KEY, MODEL_KEY})

METRICS = ("cosine", "dot", "euclid")
PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool", "text")

# Collection metadata keys where adapters keep what some backends cannot show themselves
# (Qdrant local ignores payload indexes; index settings read back differently per backend).
META_PAYLOAD_INDEXES = "reindex.payload_indexes"
META_INDEX_PARAMS = "reindex.index_params"
INTERNAL_META_KEYS = frozenset({META_PAYLOAD_INDEXES, META_INDEX_PARAMS})
INDEX_PARAM_KEYS = frozenset({"hnsw_m", "hnsw_ef_construct", "quantization", "shards"})


@dataclass(frozen=True)
class Capabilities:
    atomic_alias_swap: bool
    collection_metadata: bool
    payload_indexes: bool
    # Embedded stores allow one process per data folder.
    embedded: bool


@dataclass
class Point:
    doc_id: str
    vector: list[float] | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    doc_id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class CollectionSpec:
    name: str
    dim: int
    metric: str = "cosine"
    # Strings only: both backends store collection metadata as string pairs.
    metadata: dict[str, str] = field(default_factory=dict)
    # field name -> one of PAYLOAD_INDEX_TYPES
    payload_indexes: dict[str, str] = field(default_factory=dict)
    # Index settings a copy-mode plan may change: hnsw_m, hnsw_ef_construct,
    # quantization ("none", "scalar"), shards.
    index_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {self.metric!r}")
        if self.dim <= 0:
            raise ValueError("dim must be positive")


@dataclass
class CollectionInfo:
    name: str
    dim: int
    metric: str
    metadata: dict[str, str]
    payload_indexes: dict[str, str]
    index_params: dict[str, Any] = field(default_factory=dict)


class VectorStore(abc.ABC):
    """A vector database seen through the operations reindexer needs."""

    #: Backend name as used in store URLs and state ("qdrant", "milvus").
    backend: str = ""
    capabilities: Capabilities

    # -- collections -------------------------------------------------------
    @abc.abstractmethod
    def list_collections(self) -> list[str]:
        """Physical collections, aliases excluded."""

    @abc.abstractmethod
    def collection_exists(self, name: str) -> bool:
        """True for a physical collection; False for an alias or nothing."""

    @abc.abstractmethod
    def create_collection(self, spec: CollectionSpec) -> None:
        """Create a physical collection; ``ConflictError`` if the name is taken."""

    @abc.abstractmethod
    def drop_collection(self, name: str) -> None:
        """Drop a physical collection; ``ConflictError`` while an alias points at it."""

    @abc.abstractmethod
    def describe(self, name: str) -> CollectionInfo:
        """Dimension, metric, metadata and payload indexes of a collection or alias."""

    @abc.abstractmethod
    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        """Merge string pairs into a collection's metadata."""

    # -- points ------------------------------------------------------------
    @abc.abstractmethod
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by document id; visible to reads on return."""

    @abc.abstractmethod
    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        """Delete by document id; unknown ids are ignored."""

    @abc.abstractmethod
    def count(self, name: str) -> int:
        """Exact number of points."""

    @abc.abstractmethod
    def scroll(
        self, name: str, batch_size: int = 256, with_vectors: bool = False
    ) -> Iterator[list[Point]]:
        """Every point, page by page, in no guaranteed order."""

    @abc.abstractmethod
    def retrieve(
        self, name: str, doc_ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]:
        """The points among ``doc_ids`` that exist, in no guaranteed order."""

    @abc.abstractmethod
    def search(
        self,
        name: str,
        vector: Sequence[float],
        k: int,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """Top-k by the collection's metric, best first; ``where`` is payload equality."""

    # -- aliases -----------------------------------------------------------
    @abc.abstractmethod
    def list_aliases(self) -> dict[str, str]:
        """alias -> physical collection."""

    def get_alias(self, alias: str) -> str | None:
        return self.list_aliases().get(alias)

    @abc.abstractmethod
    def set_alias(self, alias: str, collection: str) -> None:
        """Create ``alias`` or repoint it to ``collection`` in one atomic step.

        Readers see either the old target or the new one, never neither.
        ``ConflictError`` when ``alias`` is the name of a physical collection.
        """

    @abc.abstractmethod
    def drop_alias(self, alias: str) -> None:
        """Remove an alias; a missing alias is not an error."""

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        """Release connections and embedded-store locks."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, name: str) -> str | None:
        """The physical collection behind ``name`` (an alias or a collection)."""
        target = self.get_alias(name)
        if target is not None:
            return target
        return name if self.collection_exists(name) else None


# -- checks and metadata encoding shared by every adapter ------------------------
def validate_spec(spec: CollectionSpec) -> None:
    """Checks shared by both adapters: metadata strings, index types, index settings."""
    check_metadata(spec.metadata)
    for field_name, kind in spec.payload_indexes.items():
        if kind not in PAYLOAD_INDEX_TYPES:
            raise UsageError(
                f"payload index {field_name!r}: type must be one of {PAYLOAD_INDEX_TYPES}, not {kind!r}"
            )
    unknown = set(spec.index_params) - INDEX_PARAM_KEYS
    if unknown:
        raise UsageError(
            f"unknown index settings: {', '.join(sorted(unknown))}",
            hint=f"use {', '.join(sorted(INDEX_PARAM_KEYS))}",
        )
    quant = spec.index_params.get("quantization", "none")
    if quant not in ("none", "scalar"):
        raise UsageError(f"quantization must be 'none' or 'scalar', not {quant!r}")
    for key in ("hnsw_m", "hnsw_ef_construct", "shards"):
        if key in spec.index_params:
            value = spec.index_params[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"{key} must be a positive integer, not {value!r}")


def check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"collection metadata must map strings to strings: {key!r}: {value!r}")


def meta_str(value: Any) -> str:
    """Metadata values are strings on every backend; anything else is stored as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def split_metadata(raw: dict[str, Any] | None) -> tuple[dict[str, str], dict | None, dict | None]:
    """(user metadata, payload index spec or None, index params or None)."""
    metadata = {str(k): meta_str(v) for k, v in (raw or {}).items()}
    indexes = params = None
    if META_PAYLOAD_INDEXES in metadata:
        try:
            indexes = json.loads(metadata[META_PAYLOAD_INDEXES])
        except ValueError:
            indexes = None
    if META_INDEX_PARAMS in metadata:
        try:
            params = json.loads(metadata[META_INDEX_PARAMS])
        except ValueError:
            params = None
    return {k: v for k, v in metadata.items() if k not in INTERNAL_META_KEYS}, indexes, params
