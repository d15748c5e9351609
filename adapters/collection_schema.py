"""A collection's schema, read from the live collection and given to every new version and copy.

Applications own their schemas: a LangChain or LlamaIndex store reads and writes
the fields it made, under the names and types it chose, and breaks on anything
else. So a version the tool builds is created from the live version's
``CollectionSchema`` (``VectorStore.read_schema``), not from the tool's own
default, and only what the plan changes differs: the dimension and metric of the
vector the tool embeds into, and the index settings a plan names.

The object is backend-neutral data: ``fields`` lists what the backend calls
fields (Milvus: every field, the primary key and the vectors included; Qdrant:
its dense and sparse vectors, since payload is schemaless there) with the
backend's own type names lowercased, and ``options`` holds the rest of what
that backend needs to rebuild the collection, as plain JSON-able values. Two
schemas compare equal field by field (``differences``), which is what tests and
``reindex verify`` check a new version against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class FieldSchema:
    name: str
    kind: str  # the backend's type, lowercased: int64, varchar, float_vector, sparse_float_vector, json, ...
    params: dict[str, Any] = field(default_factory=dict)  # max_length, dim, element_type, max_capacity, ...
    primary: bool = False
    auto_id: bool = False
    nullable: bool = False
    partition_key: bool = False
    default: Any = None


@dataclass(frozen=True)
class CollectionSchema:
    backend: str
    fields: tuple[FieldSchema, ...]
    #: The vector the tool embeds into: a Milvus field, a Qdrant named vector ("" for Qdrant's unnamed one).
    vector: str
    metric: str  # the tool's metric name: cosine, dot, euclid
    dynamic: bool = False
    #: field -> the backend's index description (type and parameters) for scalar and payload indexes
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    shards: int | None = None
    replicas: int | None = None
    #: Anything else the backend needs to rebuild the collection (JSON-able).
    options: dict[str, Any] = field(default_factory=dict)

    def field(self, name: str) -> FieldSchema | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def primary(self) -> FieldSchema | None:
        return next((f for f in self.fields if f.primary), None)

    @property
    def partition_key(self) -> str | None:
        return next((f.name for f in self.fields if f.partition_key), None)

    def for_version(self, dim: int, metric: str) -> CollectionSchema:
        """This schema with the embedded vector's dimension and metric set to a new version's."""

        def sized(f: FieldSchema) -> FieldSchema:
            key = "size" if "size" in f.params else "dim"  # Qdrant's name for it, Milvus'
            return replace(f, params={**f.params, key: dim})

        fields = tuple(sized(f) if f.name == self.vector else f for f in self.fields)
        return replace(self, fields=fields, metric=metric)

    def without(self, names: set[str]) -> CollectionSchema:
        """This schema less the fields ``names`` (the vectors the tool makes itself, such as its BM25 one)."""
        return replace(self, fields=tuple(f for f in self.fields if f.name not in names)) if names else self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionSchema:
        data = dict(data)
        data["fields"] = tuple(FieldSchema(**f) for f in data.get("fields", ()))
        return cls(**data)

    def differences(self, other: CollectionSchema, ignore: tuple[str, ...] = ()) -> list[str]:
        """What differs from ``other``, one line per field or setting; ``ignore`` names settings to skip."""
        out = []
        mine, theirs = {f.name: f for f in self.fields}, {f.name: f for f in other.fields}
        for name in sorted(set(mine) | set(theirs)):
            a, b = mine.get(name), theirs.get(name)
            if a is None or b is None:
                out.append(
                    f"field {name!r}: {'missing' if a is None else 'present'} here, "
                    f"{'missing' if b is None else 'present'} there"
                )
            elif a != b:
                out.append(f"field {name!r}: {_describe(a)} != {_describe(b)}")
        for key in ("vector", "metric", "dynamic", "indexes", "shards", "replicas", "options"):
            if key not in ignore and getattr(self, key) != getattr(other, key):
                out.append(f"{key}: {getattr(self, key)!r} != {getattr(other, key)!r}")
        return out


def _describe(f: FieldSchema) -> str:
    flags = [k for k in ("primary", "auto_id", "nullable", "partition_key") if getattr(f, k)]
    return f"{f.kind}{f.params or ''}{'[' + ','.join(flags) + ']' if flags else ''}"
