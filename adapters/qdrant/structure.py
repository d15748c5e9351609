"""A Qdrant collection's structure: its vectors, creating, describing and dropping it, its metadata and schema.

``QdrantStructure`` caches which dense vector the tool embeds into and which other
vectors each collection holds (``_vector_name``, ``_remember``, ``_forget``), makes
collections (an application's vectors, shards and options carried over with
``spec.schema``), and reads them back (``describe``, ``read_schema``). A layer of
``QdrantStore``; the operations on points and aliases are
``reindexer.adapters.qdrant.store``.
"""

from __future__ import annotations

import json
from typing import Any

from reindexer.adapters.base import (
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    META_VECTOR,
    CollectionInfo,
    CollectionSpec,
)
from reindexer.adapters.collection_schema import CollectionSchema, FieldSchema
from reindexer.adapters.metadata import check_metadata, meta_str, split_metadata, validate_spec
from reindexer.adapters.qdrant.connection import QdrantConnection
from reindexer.adapters.qdrant.conversions import (
    METRIC_FROM_QDRANT,
    dense_params,
    dense_vectors,
    derived_index_params,
    embedding_vector,
    qdrant_distance,
    schema_kind,
)
from reindexer.errors import NotFoundError


class QdrantStructure(QdrantConnection):
    """Collections as wholes: their vectors, creation, description, metadata and schema."""

    def _vector_name(self, name: str) -> str | None:
        """None for the unnamed vector, else the name of the dense vector the tool embeds into."""
        if name not in self._vector_names:
            info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
            self._remember(name, info)
        return self._vector_names[name]

    def _remember(self, name: str, info: Any) -> tuple[str | None, Any]:
        vector_name, params = embedding_vector(info, name, self._chosen.get(name))
        self._vector_names[name] = vector_name
        self._sparse_names[name] = tuple(sorted(info.config.params.sparse_vectors or {}))
        self._dense_names[name] = tuple(dense_vectors(info))
        return vector_name, params

    def _has_other_vectors(self, name: str) -> bool:
        self._vector_name(name)
        return bool(self._sparse_names.get(name)) or len(self._dense_names.get(name, ())) > 1

    def _forget(self, *names: str) -> None:
        caches = (self._vector_names, self._sparse_names, self._dense_names)
        for cache in caches:
            if names:
                for n in names:
                    cache.pop(n, None)
            else:
                cache.clear()

    def vector_names(self, name: str) -> list[str]:
        info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
        return list(dense_vectors(info))

    def _vector_choice_changed(self, name: str) -> None:
        self._forget(name)

    # -- collections ---------------------------------------------------------
    def list_collections(self) -> list[str]:
        resp = self._call(lambda: self._client.get_collections(), "list collections")
        return sorted(c.name for c in resp.collections)

    def create_collection(self, spec: CollectionSpec) -> None:
        from qdrant_client import models

        validate_spec(spec)
        self._check_new_collection(spec.name, spec.name in self.list_aliases())
        params = spec.index_params
        hnsw = None
        if "hnsw_m" in params or "hnsw_ef_construct" in params:
            hnsw = models.HnswConfigDiff(m=params.get("hnsw_m"), ef_construct=params.get("hnsw_ef_construct"))
        quantization = None
        if params.get("quantization") == "scalar":
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        metadata = dict(spec.metadata)
        metadata[META_PAYLOAD_INDEXES] = json.dumps(spec.payload_indexes, sort_keys=True)
        metadata[META_INDEX_PARAMS] = json.dumps(params, sort_keys=True)
        own: Any = models.VectorParams(size=spec.dim, distance=qdrant_distance(spec.metric))
        vectors_config, sparse_config, extra = own, None, {}
        like = spec.schema if spec.schema is not None and spec.schema.backend == self.backend else None
        if like is not None:
            # The application's vectors: the one the tool embeds gets the plan's size and metric,
            # every other dense and sparse vector comes over as it was.
            dense = {
                f.name: own
                if f.name == like.vector
                else models.VectorParams(size=int(f.params["size"]), distance=models.Distance(f.params["distance"]))
                for f in like.fields
                if f.kind == "dense_vector"
            }
            vectors_config = dense.get("", own) if set(dense) <= {""} else dense
            sparse_config = {
                f.name: models.SparseVectorParams(
                    modifier=models.Modifier(f.params["modifier"]) if f.params.get("modifier") else None
                )
                for f in like.fields
                if f.kind == "sparse_vector"
            } or None
            if like.replicas:
                extra["replication_factor"] = like.replicas
            if like.options.get("on_disk_payload") is not None:
                extra["on_disk_payload"] = like.options["on_disk_payload"]
            if like.vector:
                metadata[META_VECTOR] = like.vector
        lexical = params.get("lexical")
        if lexical:
            # BM25's term weights are written by the tool; the store multiplies in IDF, kept true as points come and go.
            sparse_config = {
                **(sparse_config or {}),
                lexical["vector"]: models.SparseVectorParams(modifier=models.Modifier.IDF),
            }
        self._forget(spec.name)
        self._call(
            lambda: self._client.create_collection(
                spec.name,
                vectors_config=vectors_config,
                sparse_vectors_config=sparse_config,
                hnsw_config=hnsw,
                quantization_config=quantization,
                shard_number=params.get("shards") or (like.shards if like is not None else None),
                metadata=metadata,
                **extra,
            ),
            f"create collection {spec.name!r}",
        )
        if self.capabilities.embedded:
            self._tune_local_storage()
        if self.capabilities.payload_indexes:
            # Where False (local mode) the spec is only recorded, in the metadata above.
            kinds = {
                "keyword": models.PayloadSchemaType.KEYWORD,
                "integer": models.PayloadSchemaType.INTEGER,
                "float": models.PayloadSchemaType.FLOAT,
                "bool": models.PayloadSchemaType.BOOL,
                "text": models.PayloadSchemaType.TEXT,
            }
            for field_name, kind in spec.payload_indexes.items():
                self._call(
                    lambda f=field_name, k=kind: self._client.create_payload_index(
                        spec.name, f, field_schema=kinds[k], wait=True
                    ),
                    f"create payload index {field_name!r} on {spec.name!r}",
                )

    def drop_collection(self, name: str) -> None:
        self._check_droppable(name, lambda: name in self.list_aliases())
        self._forget()
        self._call(lambda: self._client.delete_collection(name), f"drop collection {name!r}")

    def describe(self, name: str) -> CollectionInfo:
        info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
        vector_name, params = self._remember(name, info)
        metadata, indexes, index_params = split_metadata(info.config.metadata)
        if indexes is None:
            indexes = {field_name: schema_kind(schema) for field_name, schema in (info.payload_schema or {}).items()}
        if index_params is None:
            index_params = derived_index_params(info, params)
        distance = params.distance.value if hasattr(params.distance, "value") else str(params.distance)
        return CollectionInfo(
            name=name,
            dim=params.size,
            metric=METRIC_FROM_QDRANT.get(distance.lower(), distance.lower()),
            metadata=metadata,
            payload_indexes=indexes,
            index_params=index_params,
            vector=vector_name or "",
        )

    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        check_metadata(metadata)
        target = self.resolve(name)
        if target is None:
            raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
        info = self._call(lambda: self._client.get_collection(target), f"describe {target!r}")
        merged = {str(k): meta_str(v) for k, v in (info.config.metadata or {}).items()}
        merged.update(metadata)
        self._forget()  # a recorded META_VECTOR changes which vector every name means
        self._call(
            lambda: self._client.update_collection(target, metadata=merged),
            f"set metadata of {target!r}",
        )

    def read_schema(self, name: str) -> CollectionSchema:
        info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
        vector_name, params = self._remember(name, info)
        vectors = info.config.params.vectors
        dense = vectors if isinstance(vectors, dict) else {"": vectors}
        fields = [FieldSchema(name=n, kind="dense_vector", params=dense_params(v)) for n, v in sorted(dense.items())]
        for n, v in sorted((info.config.params.sparse_vectors or {}).items()):
            modifier = getattr(v, "modifier", None)
            fields.append(
                FieldSchema(
                    name=n,
                    kind="sparse_vector",
                    params={"modifier": getattr(modifier, "value", modifier)} if modifier else {},
                )
            )
        metadata, recorded, _ = split_metadata(info.config.metadata)
        indexes = {f: {"type": k} for f, k in (recorded or {}).items()} or {
            f: {"type": schema_kind(v)} for f, v in (info.payload_schema or {}).items()
        }
        distance = params.distance.value if hasattr(params.distance, "value") else str(params.distance)
        return CollectionSchema(
            backend=self.backend,
            fields=tuple(fields),
            vector=vector_name or "",
            metric=METRIC_FROM_QDRANT.get(distance.lower(), distance.lower()),
            indexes=indexes,
            shards=getattr(info.config.params, "shard_number", None),
            replicas=getattr(info.config.params, "replication_factor", None),
            options={"on_disk_payload": getattr(info.config.params, "on_disk_payload", None)},
        )
