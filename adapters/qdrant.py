"""Qdrant behind the ``VectorStore`` interface: local mode (embedded) and server.

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
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from reindexer.adapters.addressing import redact_url
from reindexer.adapters.backend import EmbeddedOrServerBackend
from reindexer.adapters.base import (
    DOC_ID_KEY,
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    META_VECTOR,
    Capabilities,
    CollectionInfo,
    CollectionSpec,
    Hit,
    Point,
    VectorStore,
)
from reindexer.adapters.collection_schema import CollectionSchema, FieldSchema
from reindexer.adapters.error_mapping import grpc_transient_codes, map_common_error
from reindexer.adapters.metadata import check_metadata, meta_str, split_metadata, validate_spec
from reindexer.adapters.names import ambiguous_vector, check_vector_name
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    TransientBackendError,
    UsageError,
)

log = logging.getLogger(__name__)

#: Fixed namespace for uuid5 point ids; changing it would orphan every point.
DOC_ID_NAMESPACE = uuid.UUID("5b0f3d9e-8c1a-5f7e-9a43-7d2c1e6b4a10")

_UINT64_MAX = 2**64 - 1
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def point_id_for(doc_id: str) -> int | str:
    """The Qdrant point id for a document id (see the module docstring)."""
    if not isinstance(doc_id, str) or not doc_id:
        raise UsageError(f"document ids must be non-empty strings, not {doc_id!r}")
    if doc_id.isascii() and doc_id.isdigit():
        value = int(doc_id)
        if str(value) == doc_id and value <= _UINT64_MAX:
            return value
    try:
        parsed = uuid.UUID(doc_id)
    except ValueError:
        pass
    else:
        if str(parsed) == doc_id:
            return doc_id
    return str(uuid.uuid5(DOC_ID_NAMESPACE, doc_id))


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


class QdrantStore(VectorStore):
    backend = "qdrant"

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: int | None = None,
        client: Any = None,
    ):
        if sum(x is not None for x in (path, url, client)) != 1:
            raise ValueError("QdrantStore needs exactly one of path=, url= or client=")
        from qdrant_client import QdrantClient

        self._local = path is not None or _is_local_client(client)
        self._secrets = [api_key] if api_key else []
        self._vector_names: dict[str, str | None] = {}
        self._sparse_names: dict[str, tuple[str, ...]] = {}
        self._dense_names: dict[str, tuple[str, ...]] = {}
        # collection -> the dense vector adopt chose, until the collection's metadata records it
        self._chosen: dict[str, str] = {}
        self._client: Any = None
        # A client handed in belongs to the application that opened it: close() leaves it open.
        self._owns_client = client is None
        self.capabilities = Capabilities(
            atomic_alias_swap=True,
            collection_metadata=True,
            # Local mode accepts payload indexes but ignores them (and warns).
            payload_indexes=not self._local,
            embedded=self._local,
            # Local mode is pure Python in this process: parallel writes only contend for the GIL.
            write_concurrency=1 if self._local else 4,
            lexical_vectors=True,
        )
        if client is not None:
            self._client = client
            self.location = _client_location(client)
        elif self._local:
            assert path is not None  # _local without a client means path=
            folder = Path(path).expanduser()
            self.location = f"qdrant+local:{folder}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(folder))
            except RuntimeError as exc:
                if "already accessed" in str(exc):
                    raise self._held_elsewhere(
                        f"Qdrant local store in {folder}", "Qdrant", "qdrant://HOST:PORT"
                    ) from None
                raise BackendError(f"cannot open the Qdrant local store in {folder}: {exc}") from None
            except OSError as exc:
                raise BackendError(f"cannot open the Qdrant local store in {folder}: {exc.strerror or exc}") from None
            self._tune_local_storage()
        else:
            self.location = url or ""
            with warnings.catch_warnings():
                # "Api key is used with an insecure connection": the operator's choice.
                warnings.simplefilter("ignore", UserWarning)
                self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
            try:
                self._call(lambda: self._client.get_collections(), "connect")
            except BaseException:
                self.close()
                raise

    # -- plumbing ------------------------------------------------------------
    def _map(self, exc: BaseException, what: str) -> ReindexError:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        where = f"{what} on {self.location}"
        if isinstance(exc, UnexpectedResponse):
            detail = self._redact(_response_detail(exc))
            status = exc.status_code
            lowered = detail.lower()
            if status in _TRANSIENT_STATUS:
                return TransientBackendError(f"{where}: HTTP {status}: {detail}")
            if status == 404 or "not found" in lowered or "doesn't exist" in lowered:
                return NotFoundError(f"{where}: {detail}")
            if status == 409 or "already exists" in lowered:
                return ConflictError(f"{where}: {detail}")
            return BackendError(f"{where}: HTTP {status}: {detail}")
        if isinstance(exc, ResponseHandlingException):
            return TransientBackendError(f"{where}: {self._redact(str(exc.source or exc))}")
        text = self._redact(str(exc))
        lowered = text.lower()
        if isinstance(exc, ValueError):  # local mode reports problems as ValueError
            if "not found" in lowered:
                return NotFoundError(f"{where}: {text}")
            if "already exists" in lowered:
                return ConflictError(f"{where}: {text}")
            return BackendError(f"{where}: {text}")
        try:
            import httpx

            if isinstance(exc, (httpx.TransportError, httpx.TimeoutException)):
                return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
        except ImportError:  # pragma: no cover
            pass
        try:
            import grpc

            if isinstance(exc, grpc.RpcError) and exc.code() in grpc_transient_codes():
                return TransientBackendError(f"{where}: {exc.code().name}: {text}")
        except ImportError:  # pragma: no cover
            pass
        return map_common_error(exc, where, self._redact)

    def _tune_local_storage(self) -> None:
        """Let local mode's SQLite files commit without an fsync per point.

        Local mode writes every point in its own transaction; with SQLite's
        defaults each one waits for the disk (about 80 points a second here).
        Write-ahead logging with ``synchronous=NORMAL`` keeps every committed
        point through a crash of the process (a power cut may lose the last
        few) and makes a 256-point upsert about a hundred times faster. Reaches
        into qdrant-client internals, so any surprise leaves the defaults.
        """
        try:
            collections = self._client._client.collections  # QdrantLocal
            for collection in collections.values():
                conn = getattr(getattr(collection, "storage", None), "storage", None)
                if conn is not None:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
        except Exception:  # noqa: BLE001 - an optimisation only
            log.debug("could not tune Qdrant local storage", exc_info=True)

    def _vector_name(self, name: str) -> str | None:
        """None for the unnamed vector, else the name of the dense vector the tool embeds into."""
        if name not in self._vector_names:
            info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
            self._remember(name, info)
        return self._vector_names[name]

    def _remember(self, name: str, info: Any) -> tuple[str | None, Any]:
        vector_name, params = _vector_params(info, name, self._chosen.get(name))
        self._vector_names[name] = vector_name
        self._sparse_names[name] = tuple(sorted(info.config.params.sparse_vectors or {}))
        self._dense_names[name] = tuple(_dense_vectors(info))
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
        return list(_dense_vectors(info))

    def _vector_choice_changed(self, name: str) -> None:
        self._forget(name)

    def _to_point(self, record: Any, with_vectors: bool, vector_name: str | None) -> Point:
        payload = dict(record.payload or {})
        doc_id = payload.pop(DOC_ID_KEY, None)
        if not isinstance(doc_id, str):
            doc_id = str(record.id)
        vector = None
        others: dict[str, Any] = {}
        if with_vectors:
            vector = _extract_vector(record.vector, vector_name)
            if isinstance(record.vector, dict):
                others = {k: _plain_vector(v) for k, v in record.vector.items() if k != (vector_name or "")}
        return Point(doc_id=doc_id, vector=vector, payload=payload, other_vectors=others)

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
        own: Any = models.VectorParams(size=spec.dim, distance=_distance(spec.metric))
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
            indexes = {field_name: _schema_kind(schema) for field_name, schema in (info.payload_schema or {}).items()}
        if index_params is None:
            index_params = _derived_index_params(info, params)
        distance = params.distance.value if hasattr(params.distance, "value") else str(params.distance)
        return CollectionInfo(
            name=name,
            dim=params.size,
            metric=_METRICS_BACK.get(distance.lower(), distance.lower()),
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

    # -- points --------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        from qdrant_client import models

        if not points:
            return
        vector_name = self._vector_name(name)
        kept = self._kept_other_vectors(name, points)
        structs = []
        for p in points:
            if p.vector is None:
                raise UsageError(f"point {p.doc_id!r} has no vector")
            vector: Any = [float(x) for x in p.vector]
            others = {**kept.get(p.doc_id, {}), **p.other_vectors}
            if vector_name or others:
                vector = {vector_name or "": vector, **{k: _client_vector(v) for k, v in others.items()}}
            payload = dict(p.payload)
            payload[DOC_ID_KEY] = p.doc_id
            structs.append(models.PointStruct(id=point_id_for(p.doc_id), vector=vector, payload=payload))
        self._call(
            lambda: self._client.upsert(name, points=structs, wait=True),
            f"upsert {len(structs)} points into {name!r}",
        )

    def _kept_other_vectors(self, name: str, points: Sequence[Point]) -> dict[str, dict[str, Any]]:
        """The stored other vectors of points written without theirs (a re-embedded text keeps its sparse vector)."""
        if not self._has_other_vectors(name):
            return {}
        every = set(self._sparse_names.get(name, ())) | set(self._dense_names.get(name, ())) - {
            self._vector_name(name) or ""
        }
        bare = [p.doc_id for p in points if not every <= set(p.other_vectors)]
        if not bare:
            return {}
        return {p.doc_id: p.other_vectors for p in self.retrieve(name, bare, with_vectors=True) if p.other_vectors}

    def set_other_vectors(self, name: str, points: Sequence[Point]) -> None:
        from qdrant_client import models

        todo = [
            models.PointVectors(
                id=point_id_for(p.doc_id), vector={k: _client_vector(v) for k, v in p.other_vectors.items()}
            )
            for p in points
            if p.other_vectors
        ]
        if todo:
            self._call(
                lambda: self._client.update_vectors(name, points=todo, wait=True),
                f"write other vectors of {len(todo)} points of {name!r}",
            )

    def read_schema(self, name: str) -> CollectionSchema:
        info = self._call(lambda: self._client.get_collection(name), f"describe {name!r}")
        vector_name, params = self._remember(name, info)
        vectors = info.config.params.vectors
        dense = vectors if isinstance(vectors, dict) else {"": vectors}
        fields = [FieldSchema(name=n, kind="dense_vector", params=_dense_params(v)) for n, v in sorted(dense.items())]
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
            f: {"type": _schema_kind(v)} for f, v in (info.payload_schema or {}).items()
        }
        distance = params.distance.value if hasattr(params.distance, "value") else str(params.distance)
        return CollectionSchema(
            backend=self.backend,
            fields=tuple(fields),
            vector=vector_name or "",
            metric=_METRICS_BACK.get(distance.lower(), distance.lower()),
            indexes=indexes,
            shards=getattr(info.config.params, "shard_number", None),
            replicas=getattr(info.config.params, "replication_factor", None),
            options={"on_disk_payload": getattr(info.config.params, "on_disk_payload", None)},
        )

    def set_payload_key(self, name: str, points: Sequence[Point], key: str, value: Any | None) -> None:
        # set_payload / delete_payload leave every vector of the point (sparse, other named ones) as it is.
        from qdrant_client import models

        if not points:
            return
        ids: list[Any] = [point_id_for(p.doc_id) for p in points]
        if value is None:
            self._call(
                lambda: self._client.delete_payload(name, keys=[key], points=ids, wait=True),
                f"remove {key!r} from {len(ids)} points of {name!r}",
            )
        else:
            self._call(
                lambda: self._client.set_payload(
                    name, payload={key: value}, points=models.PointIdsList(points=ids), wait=True
                ),
                f"set {key!r} on {len(ids)} points of {name!r}",
            )

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        from qdrant_client import models

        if not doc_ids:
            # Still say so when the collection is missing.
            self._vector_name(name)
            return
        ids: list[Any] = list(dict.fromkeys(point_id_for(d) for d in doc_ids))
        self._call(
            lambda: self._client.delete(name, points_selector=models.PointIdsList(points=ids), wait=True),
            f"delete {len(ids)} points from {name!r}",
        )

    def count(self, name: str) -> int:
        result = self._call(lambda: self._client.count(name, exact=True), f"count {name!r}")
        return int(result.count)

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        vector_name = self._vector_name(name) if with_vectors else None
        offset = None
        while True:
            records, offset = self._call(
                lambda o=offset: self._client.scroll(
                    name, limit=batch_size, offset=o, with_payload=True, with_vectors=with_vectors
                ),
                f"scroll {name!r}",
            )
            if records:
                yield [self._to_point(r, with_vectors, vector_name) for r in records]
            if offset is None:
                return

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """The store filters: ``must_not`` a match keeps the points that lack ``key`` as well as other values.

        A server evaluates it in its engine; local mode in its own loop, without building a
        Point, a document and a ledger lookup for each point as a full pass does.
        """
        from qdrant_client import models

        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        flt = models.Filter(must_not=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])
        offset = None
        while True:
            records, offset = self._call(
                lambda o=offset: self._client.scroll(
                    name, scroll_filter=flt, limit=batch_size, offset=o, with_payload=True, with_vectors=False
                ),
                f"scroll {name!r} for points without {key}={value}",
            )
            if records:
                yield [self._to_point(r, False, None) for r in records]
            if offset is None:
                return

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        vector_name = self._vector_name(name) if with_vectors else None
        unique = list(dict.fromkeys(doc_ids))
        out: list[Point] = []
        for start in range(0, len(unique), 1024):
            ids = [point_id_for(d) for d in unique[start : start + 1024]]
            records = self._call(
                lambda ids=ids: self._client.retrieve(name, ids=ids, with_payload=True, with_vectors=with_vectors),
                f"retrieve from {name!r}",
            )
            out.extend(self._to_point(r, with_vectors, vector_name) for r in records)
        if not unique:
            self._vector_name(name)  # a missing collection is still an error
        return out

    def search(
        self,
        name: str,
        vector: Sequence[float],
        k: int,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        vector_name = self._vector_name(name)
        query_filter = _filter(where)
        resp = self._call(
            lambda: self._client.query_points(
                name,
                query=[float(x) for x in vector],
                using=vector_name or None,
                limit=k,
                query_filter=query_filter,
                with_payload=True,
            ),
            f"search {name!r}",
        )
        return _hits(resp.points)

    def search_lexical(
        self, name: str, vector_name: str, sparse: dict[str, list], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        from qdrant_client import models

        if k <= 0 or not sparse["indices"]:
            return []  # no query term: nothing matches (and Qdrant refuses an empty sparse query)
        resp = self._call(
            lambda: self._client.query_points(
                name,
                query=models.SparseVector(indices=sparse["indices"], values=sparse["values"]),
                using=vector_name,
                limit=k,
                query_filter=_filter(where),
                with_payload=True,
            ),
            f"lexical search {name!r}",
        )
        return _hits(p for p in resp.points if p.score > 0)

    def search_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        vector_name: str,
        sparse: dict[str, list],
        k: int,
        where: dict[str, Any] | None = None,
        *,
        rrf_k: int = 60,
        prefetch: int = 100,
    ) -> list[Hit]:
        from qdrant_client import models

        if k <= 0:
            return []
        query_filter = _filter(where)
        dense = models.Prefetch(
            query=[float(x) for x in vector], using=self._vector_name(name) or None, limit=prefetch, filter=query_filter
        )
        prefetches = [dense]
        if sparse["indices"]:
            prefetches.append(
                models.Prefetch(
                    query=models.SparseVector(indices=sparse["indices"], values=sparse["values"]),
                    using=vector_name,
                    limit=prefetch,
                    filter=query_filter,
                )
            )
        resp = self._call(
            lambda: self._client.query_points(
                name,
                prefetch=prefetches,
                query=models.RrfQuery(rrf=models.Rrf(k=rrf_k)),
                limit=k,
                query_filter=query_filter,
                with_payload=True,
            ),
            f"hybrid search {name!r}",
        )
        return _hits(resp.points)

    # -- aliases -------------------------------------------------------------
    def list_aliases(self) -> dict[str, str]:
        resp = self._call(lambda: self._client.get_aliases(), "list aliases")
        return {a.alias_name: a.collection_name for a in resp.aliases}

    def set_alias(self, alias: str, collection: str) -> None:
        from qdrant_client import models

        self._check_alias_target(alias, collection)
        current = self.list_aliases().get(alias)
        if current == collection:
            return
        ops: list[Any] = []
        if current is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._forget(alias)
        # One request: Qdrant applies the delete and the create atomically.
        self._call(lambda: self._client.update_collection_aliases(ops), f"set alias {alias!r} -> {collection!r}")

    def drop_alias(self, alias: str) -> None:
        from qdrant_client import models

        if alias not in self.list_aliases():
            return
        self._forget(alias)
        self._call(
            lambda: self._client.update_collection_aliases(
                [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))]
            ),
            f"drop alias {alias!r}",
        )


# -- helpers ---------------------------------------------------------------
def _is_local_client(client: Any) -> bool:
    if client is None:
        return False
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _client_location(client: Any) -> str:
    """Where an application's own client points, without credentials."""
    inner = getattr(client, "_client", None)
    folder = getattr(inner, "location", None)
    if _is_local_client(client):
        return f"qdrant+local:{folder}"
    rest = getattr(inner, "rest_uri", None) or "a Qdrant server"
    return redact_url(str(rest))


def _distance(metric: str) -> Any:
    from qdrant_client import models

    return {
        "cosine": models.Distance.COSINE,
        "dot": models.Distance.DOT,
        "euclid": models.Distance.EUCLID,
    }[metric]


_METRICS_BACK = {"cosine": "cosine", "dot": "dot", "euclid": "euclid", "manhattan": "manhattan"}


def _response_detail(exc: Any) -> str:
    content = exc.content
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        parsed = json.loads(content)
        detail = parsed.get("status", {}).get("error") or content
    except (ValueError, AttributeError):
        detail = content or exc.reason_phrase
    return str(detail)[:500]


def _dense_vectors(info: Any) -> dict[str, Any]:
    """Name ("" for the unnamed one) -> parameters of each dense vector, by name."""
    vectors = info.config.params.vectors
    if vectors is None:
        return {}
    return dict(sorted(vectors.items())) if isinstance(vectors, dict) else {"": vectors}


def _vector_params(info: Any, name: str, chosen: str | None = None) -> tuple[str | None, Any]:
    """(name or None for the unnamed one, parameters) of the vector the tool embeds into.

    The one ``chosen`` (adopt's choice, not yet recorded), else the one the collection's
    metadata records (``META_VECTOR``), else its only dense vector.
    """
    dense = _dense_vectors(info)
    if not dense:
        raise BackendError(f"collection {name!r} has no dense vector")
    wanted = chosen if chosen is not None else (info.config.metadata or {}).get(META_VECTOR)
    if wanted is None:
        if len(dense) > 1:
            raise ambiguous_vector(name, list(dense))
        wanted = next(iter(dense))
    check_vector_name(name, wanted, list(dense))
    return (wanted or None), dense[wanted]


def _extract_vector(raw: Any, vector_name: str | None) -> list[float] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        if vector_name is not None:
            # A point may lack a named vector; another vector is never handed back in its place.
            raw = raw.get(vector_name)
            if raw is None:
                return None
        elif "" in raw:
            raw = raw[""]
        elif len(raw) == 1:
            raw = next(iter(raw.values()))
        else:
            return None
    return [float(x) for x in raw]


def _schema_kind(schema: Any) -> str:
    kind = getattr(schema, "data_type", schema)
    kind = getattr(kind, "value", kind)
    return str(kind)


def _derived_index_params(info: Any, vector_params: Any) -> dict[str, Any]:
    """Index settings read from the collection, for collections made outside the tool."""
    out: dict[str, Any] = {}
    hnsw = getattr(vector_params, "hnsw_config", None) or info.config.hnsw_config
    if hnsw is not None:
        if getattr(hnsw, "m", None) is not None:
            out["hnsw_m"] = hnsw.m
        if getattr(hnsw, "ef_construct", None) is not None:
            out["hnsw_ef_construct"] = hnsw.ef_construct
    quant = getattr(vector_params, "quantization_config", None) or info.config.quantization_config
    if quant is not None:
        out["quantization"] = "scalar" if hasattr(quant, "scalar") else type(quant).__name__.lower()
    shards = getattr(info.config.params, "shard_number", None)
    if shards:
        out["shards"] = shards
    return out


def _filter(where: dict[str, Any] | None) -> Any:
    if not where:
        return None
    from qdrant_client import models

    must: list[Any] = []
    for key, value in where.items():
        if isinstance(value, bool) or isinstance(value, (int, str)):
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        elif isinstance(value, float):
            must.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
        else:
            raise UsageError(f"where: {key!r} must equal a string, number or boolean, not {type(value).__name__}")
    return models.Filter(must=must)


def _dense_params(v: Any) -> dict[str, Any]:
    distance = v.distance.value if hasattr(v.distance, "value") else str(v.distance)
    return {"size": int(v.size), "distance": distance}


def _plain_vector(v: Any) -> Any:
    """A vector as read, as plain data: a sparse one as {"indices": [...], "values": [...]}."""
    if hasattr(v, "indices") and hasattr(v, "values"):
        return {"indices": [int(i) for i in v.indices], "values": [float(x) for x in v.values]}
    return v


def _client_vector(v: Any) -> Any:
    from qdrant_client import models

    if isinstance(v, dict) and set(v) == {"indices", "values"}:
        return models.SparseVector(indices=v["indices"], values=v["values"])
    return v


def _hits(points: Any) -> list[Hit]:
    """Scored points as hits: the document id from the payload (the point id for points made elsewhere)."""
    hits = []
    for sp in points:
        payload = dict(sp.payload or {})
        doc_id = payload.pop(DOC_ID_KEY, None)
        if not isinstance(doc_id, str):
            doc_id = str(sp.id)
        hits.append(Hit(doc_id=doc_id, score=float(sp.score), payload=payload))
    return hits
