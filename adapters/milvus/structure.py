"""A Milvus collection's structure: reading its schema and indexes, and making its indexes.

``MilvusStructure`` caches each collection's ``RowLayout`` (``_schema``), reads the
schema an application made (``read_schema``, ``describe``, ``vector_names``), and
makes the vector, scalar and BM25 indexes a new collection needs, repairing a
collection a killed process left without its vector index. A layer of
``MilvusStore``; the operations on points are ``reindexer.adapters.milvus.store``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from reindexer.adapters.base import (
    META_INDEX_PARAMS,
    META_VECTOR,
    CollectionInfo,
    CollectionSpec,
)
from reindexer.adapters.collection_schema import CollectionSchema, FieldSchema
from reindexer.adapters.metadata import split_metadata
from reindexer.adapters.milvus.connection import MilvusConnection
from reindexer.adapters.milvus.layout import (
    DEFAULT_HNSW_EF_CONSTRUCT,
    DEFAULT_HNSW_M,
    INDEX_INFO_KEYS,
    METRIC_FROM_MILVUS,
    METRIC_TO_MILVUS,
    PK_MAX_LENGTH,
    SCALAR_KINDS,
    VECTOR_FIELD,
    RowLayout,
    derived_index_params,
    float_vectors,
    plain,
    plain_function,
    valid_name,
)
from reindexer.adapters.milvus.lexical import (
    LEXICAL_FUNCTION,
    LEXICAL_TEXT_FIELD,
    function_outputs,
    own_lexical,
)
from reindexer.adapters.names import ambiguous_vector, check_vector_name
from reindexer.errors import (
    BackendError,
    NotFoundError,
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class MilvusStructure(MilvusConnection):
    """Reading and making a collection's schema and indexes (a layer of ``MilvusStore``)."""

    def _schema(self, name: str, refresh: bool = False) -> RowLayout:
        if not refresh and name in self._schemas:
            return self._schemas[name]
        return self._describe_raw(name)[0]

    def _describe_raw(self, name: str) -> tuple[RowLayout, dict[str, Any]]:
        """Fetch a collection's description, refresh the cached schema, return both."""
        if not valid_name(name):
            raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
        desc = self._call(lambda: self._client.describe_collection(name, timeout=self._timeout), f"describe {name!r}")
        schema = self._parse_schema(name, desc)
        self._schemas[name] = schema
        return schema, desc

    def _parse_schema(self, name: str, desc: dict[str, Any]) -> RowLayout:
        from pymilvus import DataType

        physical = desc.get("collection_name") or name
        pk = pk_is_str = None
        pk_max = PK_MAX_LENGTH
        dims = float_vectors(desc)
        vector = self._managed_vector(name, physical, desc, list(dims))
        fields: list[str] = []
        other_vectors: list[str] = []
        outputs = function_outputs(desc)
        for f in desc.get("fields", []):
            ftype = f.get("type")
            params = f.get("params") or {}
            if f.get("name") in outputs or f.get("is_function_output"):
                continue  # a function's output (BM25): the store writes it, never a client
            if f.get("is_primary"):
                pk = f["name"]
                pk_is_str = ftype == DataType.VARCHAR
                pk_max = int(params.get("max_length", PK_MAX_LENGTH) or PK_MAX_LENGTH)
            elif f["name"] == vector or f.get("is_dynamic") or f.get("name") == "$meta":
                continue
            else:
                # Every other field is payload, other vector fields too: a row is written whole.
                fields.append(f["name"])
                if "VECTOR" in getattr(ftype, "name", str(ftype)).upper():
                    other_vectors.append(f["name"])
        if pk is None:
            raise BackendError(f"collection {name!r} has no primary key")
        dim = dims[vector]
        found = self._vector_index(physical, vector)
        if found is None and self._finish_half_made(physical, vector, desc):
            found = self._vector_index(physical, vector)
        if found is None:
            raise BackendError(
                f"collection {physical!r} has no index on its vector field {vector!r}",
                hint="Milvus needs a vector index before a collection can be loaded and searched",
            )
        metric, index_type, index_params = found
        return RowLayout(
            collection=physical,
            pk=pk,
            pk_is_str=bool(pk_is_str),
            pk_max_length=pk_max,
            vector=vector,
            dim=dim,
            fields=tuple(fields),
            other_vectors=tuple(other_vectors),
            dynamic=bool(desc.get("enable_dynamic_field")),
            metric=metric,
            index_type=index_type,
            index_params=index_params,
            num_shards=int(desc.get("num_shards") or 1),
            lexical=own_lexical(desc),
        )

    def _managed_vector(self, name: str, physical: str, desc: dict[str, Any], vectors: list[str]) -> str:
        """The float vector field the tool embeds into: adopt's choice, else the recorded one, else the only one."""
        if not vectors:
            raise BackendError(f"collection {name!r} has no float vector field")
        chosen = self._chosen.get(name, self._chosen.get(physical))
        wanted = chosen if chosen is not None else (desc.get("properties") or {}).get(META_VECTOR)
        if wanted is None:
            if len(vectors) > 1:
                raise ambiguous_vector(name, vectors)
            return vectors[0]
        check_vector_name(name, str(wanted), vectors)
        return str(wanted)

    def vector_names(self, name: str) -> list[str]:
        if not valid_name(name):
            raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
        desc = self._call(lambda: self._client.describe_collection(name, timeout=self._timeout), f"describe {name!r}")
        return list(float_vectors(desc))

    def _vector_choice_changed(self, name: str) -> None:
        self._forget()

    def _finish_half_made(self, physical: str, vector: str, desc: dict[str, Any]) -> bool:
        """Make the missing index of a collection the tool made, from what its properties record.

        ``create_collection`` makes the collection, then its indexes: a process killed between the
        two left a collection that cannot be loaded, and every later command failed on it (the crash
        tests' kill at the start of a build, 1 run in 10 on a loaded machine). Only a collection that
        records the tool's metric (every version the tool makes) is repaired; an application's is not.
        """
        props = desc.get("properties") or {}
        metric = props.get("reindex.metric")  # written with every version (reindexer.build.steps)
        if metric not in METRIC_TO_MILVUS:
            return False
        index_params = json.loads(props.get(META_INDEX_PARAMS) or "{}")
        spec = CollectionSpec(physical, dim=int(float_vectors(desc)[vector]), metric=metric, index_params=index_params)
        log.warning(
            "%s: %r was left without its vector index by a killed process; making it now", self.location, physical
        )
        self._create_vector_index(spec, field=vector)
        lexical = index_params.get("lexical")
        built = self._call(lambda: self._client.list_indexes(physical, timeout=self._timeout), "list indexes")
        if lexical and lexical.get("vector") not in (built or []):
            self._create_lexical_index(physical, lexical)
        return True

    def _vector_index(self, collection: str, vector: str) -> tuple[str, str, dict[str, Any]] | None:
        names = self._call(
            lambda: self._client.list_indexes(collection, field_name=vector, timeout=self._timeout),
            f"list indexes of {collection!r}",
        )
        for index_name in names or []:
            info = self._call(
                lambda n=index_name: self._client.describe_index(collection, n, timeout=self._timeout),
                f"describe index of {collection!r}",
            )
            if info and info.get("field_name", vector) == vector:
                return str(info.get("metric_type", "")).upper(), str(info.get("index_type", "")), info
        return None

    def _forget(self) -> None:
        self._schemas.clear()

    def _create_vector_index(
        self, spec: CollectionSpec, like: CollectionSchema | None = None, field: str | None = None
    ) -> None:
        from pymilvus import MilvusClient

        m = spec.index_params.get("hnsw_m", DEFAULT_HNSW_M)
        efc = spec.index_params.get("hnsw_ef_construct", DEFAULT_HNSW_EF_CONSTRUCT)
        vector_field = field or (like.vector if like is not None else VECTOR_FIELD)
        same = like.options.get("vector_index") if like is not None else None
        if same and like is not None and like.options.get("index_params") == spec.index_params:
            # The plan left the index settings alone: the live version's index, as it is.
            candidates = [(same["index_type"], dict(same.get("params") or {}))]
        elif spec.index_params.get("quantization") == "scalar":
            candidates = [
                ("HNSW_SQ", {"M": m, "efConstruction": efc, "sq_type": "SQ8"}),
                ("IVF_SQ8", {"nlist": 128}),  # servers before 2.5 have no HNSW_SQ
            ]
        else:
            candidates = [("HNSW", {"M": m, "efConstruction": efc})]
        for i, (index_type, params) in enumerate(candidates):
            index_params = MilvusClient.prepare_index_params()
            index_params.add_index(
                field_name=vector_field,
                index_type=index_type,
                metric_type=METRIC_TO_MILVUS[spec.metric],
                params=params,
            )
            try:
                self._call(
                    # sync=False: the collection is empty, so nothing waits on the
                    # build; pymilvus would otherwise poll it every 0.5 s.
                    lambda ip=index_params: self._client.create_index(spec.name, ip, timeout=self._timeout, sync=False),
                    f"create index on {spec.name!r}",
                    missing_is_transient=True,
                )
                return
            except BackendError as exc:
                if i + 1 < len(candidates) and "index type" in str(exc).lower():
                    continue
                raise

    def _create_scalar_indexes(self, name: str, like: CollectionSchema) -> None:
        from pymilvus import MilvusClient

        for field_name, index in sorted(like.indexes.items()):
            index_type = index.get("index_type", "")
            if index.get("metric_type") == "BM25" and index_type == "AUTOINDEX":
                # Milvus Lite describes a BM25 index it made from AUTOINDEX as AUTOINDEX, and then
                # refuses AUTOINDEX for it: the one index a BM25 function's output takes.
                index_type = "SPARSE_INVERTED_INDEX"
            index_params = MilvusClient.prepare_index_params()
            index_params.add_index(
                field_name=field_name,
                index_type=index_type,
                index_name=index.get("index_name") or field_name,
                params=dict(index.get("params") or {}),
                **({"metric_type": index["metric_type"]} if index.get("metric_type") else {}),
            )
            self._call(
                lambda ip=index_params: self._client.create_index(name, ip, timeout=self._timeout, sync=False),
                f"create index on {name!r}.{field_name}",
                missing_is_transient=True,
            )

    def _create_lexical_index(self, name: str, lexical: dict[str, Any]) -> None:
        from pymilvus import MilvusClient

        index_params = MilvusClient.prepare_index_params()
        index_params.add_index(
            field_name=lexical["vector"],
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": float(lexical.get("k1", 1.2)), "bm25_b": float(lexical.get("b", 0.75))},
        )
        self._call(
            lambda: self._client.create_index(name, index_params, timeout=self._timeout, sync=False),
            f"create the BM25 index on {name!r}",
            missing_is_transient=True,
        )

    def _check_vector_fields(self, name: str, like: CollectionSchema) -> None:
        """Refuse, before creating anything, a schema with several vector fields on a server that holds one.

        Servers before 2.4 allow one vector field per collection (dense or sparse), so no such
        collection can live there to be adopted; a schema read elsewhere (Milvus Lite, a newer
        server) cannot be rebuilt there either.
        """
        vectors = [f.name for f in like.fields if f.kind.endswith("_vector")]
        if len(vectors) < 2 or self._lite:
            return
        version = self._server_version()
        if version >= (2, 4) or version == (0, 0):  # a server that does not say decides for itself
            return
        raise UsageError(
            f"cannot create {name!r}: its schema has {len(vectors)} vector fields "
            f"({', '.join(repr(v) for v in vectors)}), and this Milvus server "
            f"({'.'.join(map(str, version))}) allows one vector field per collection",
            hint="Milvus Lite and servers from 2.4 hold several vector fields",
        )

    def read_schema(self, name: str) -> CollectionSchema:
        s, desc = self._describe_raw(name)
        fields = []
        # The tool's BM25 (text field, sparse vector, function) is made again from a plan's lexical
        # settings, never copied; an application's functions are copied with their fields.
        tools = {LEXICAL_TEXT_FIELD, s.lexical} if s.lexical is not None else set()
        for f in desc.get("fields", []):
            if f.get("is_dynamic") or f.get("name") == "$meta" or f.get("name") in tools:
                continue
            params = {k: plain(v) for k, v in (f.get("params") or {}).items()}
            for key in ("element_type", "max_capacity"):
                if f.get(key) is not None:
                    params[key] = plain(f[key])
            fields.append(
                FieldSchema(
                    name=f["name"],
                    kind=plain(f.get("type")),
                    params=params,
                    primary=bool(f.get("is_primary")),
                    auto_id=bool(f.get("auto_id")) if f.get("is_primary") else False,
                    nullable=bool(f.get("nullable")),
                    partition_key=bool(f.get("is_partition_key")),
                    default=plain(f.get("default_value")) if f.get("default_value") is not None else None,
                )
            )
        indexes: dict[str, dict[str, Any]] = {}
        vector_index: dict[str, Any] = {}
        for index_name in (
            self._call(
                lambda: self._client.list_indexes(s.collection, timeout=self._timeout),
                f"list indexes of {s.collection!r}",
            )
            or []
        ):
            info = (
                self._call(
                    lambda n=index_name: self._client.describe_index(s.collection, n, timeout=self._timeout),
                    f"describe index of {s.collection!r}",
                )
                or {}
            )
            kept = {
                "index_type": str(info.get("index_type", "")),
                "index_name": index_name,
                "params": {k: plain(v) for k, v in info.items() if k not in INDEX_INFO_KEYS},
            }
            if info.get("metric_type"):  # another vector field's index: its metric comes over with it
                kept["metric_type"] = str(info["metric_type"])
            if info.get("field_name") == s.vector:
                vector_index = kept
            elif info.get("field_name") in tools:
                continue
            elif info.get("field_name"):
                indexes[str(info["field_name"])] = kept
        raw_props = {str(k): str(v) for k, v in (desc.get("properties") or {}).items()}
        own, _, index_params = split_metadata(raw_props)
        options: dict[str, Any] = {
            "vector_index": vector_index,
            "index_params": index_params if index_params is not None else derived_index_params(s),
            "properties": {k: v for k, v in own.items() if not k.startswith("reindex.")},
        }
        if desc.get("description"):
            options["description"] = str(desc["description"])
        functions = [plain_function(fn) for fn in desc.get("functions") or [] if fn.get("name") != LEXICAL_FUNCTION]
        if functions:
            options["functions"] = functions
        if any(f.partition_key for f in fields):
            options["num_partitions"] = int(desc.get("num_partitions") or 0) or None
        return CollectionSchema(
            backend=self.backend,
            fields=tuple(fields),
            vector=s.vector,
            metric=METRIC_FROM_MILVUS.get(s.metric, s.metric.lower()),
            dynamic=s.dynamic,
            indexes=indexes,
            shards=s.num_shards,
            options=options,
        )

    def describe(self, name: str) -> CollectionInfo:
        s, desc = self._describe_raw(name)
        metadata, indexes, index_params = split_metadata(desc.get("properties") or {})
        if indexes is None:
            indexes = self._scalar_indexes(s, desc)
        if index_params is None:
            index_params = derived_index_params(s)
        return CollectionInfo(
            name=name,
            dim=s.dim,
            metric=METRIC_FROM_MILVUS.get(s.metric, s.metric.lower()),
            metadata=metadata,
            payload_indexes=indexes,
            index_params=index_params,
            vector=s.vector,
        )

    def _scalar_indexes(self, s: RowLayout, desc: dict[str, Any]) -> dict[str, str]:
        """Scalar-field indexes of a collection made outside the tool."""
        types = {f["name"]: getattr(f.get("type"), "name", str(f.get("type"))) for f in desc.get("fields", [])}
        out: dict[str, str] = {}
        names = self._call(
            lambda: self._client.list_indexes(s.collection, timeout=self._timeout),
            f"list indexes of {s.collection!r}",
        )
        for index_name in names or []:
            info = self._call(
                lambda n=index_name: self._client.describe_index(s.collection, n, timeout=self._timeout),
                f"describe index of {s.collection!r}",
            )
            field_name = (info or {}).get("field_name")
            # vector fields' indexes (the function outputs' BM25 ones too) are not payload indexes
            if field_name and field_name in types and "VECTOR" not in types[field_name].upper():
                out[field_name] = SCALAR_KINDS.get(types[field_name], types[field_name].lower())
        return out
