"""Milvus behind the ``VectorStore`` interface: Milvus Lite (embedded) and server.

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
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from reindexer.adapters.base import (
    DOC_ID_KEY,
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    META_VECTOR,
    MODEL_KEY,
    Capabilities,
    CollectionInfo,
    CollectionSpec,
    EmbeddedOrServerBackend,
    Hit,
    Point,
    VectorStore,
    ambiguous_vector,
    check_metadata,
    check_vector_name,
    grpc_transient_codes,
    map_common_error,
    redact_url,
    split_metadata,
    validate_spec,
)
from reindexer.adapters.schema import CollectionSchema, FieldSchema
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    TransientBackendError,
    UsageError,
)
from reindexer.retry import call_with_retries

T = TypeVar("T")
log = logging.getLogger(__name__)

PK_FIELD = "id"
VECTOR_FIELD = "vector"
PK_MAX_LENGTH = 512
ESCAPED_PREFIX = "reindex_escaped:"
DEFAULT_HNSW_M = 16
DEFAULT_HNSW_EF_CONSTRUCT = 100
#: ids per ``pk in [...]`` expression and rows per upsert request
CHUNK = 1000
#: The most rows ``advance_generated_ids`` writes again to move Milvus Lite's auto-id counter.
_MAX_REWRITTEN_ROWS = 100_000

# Milvus servers accept only these names for collections and aliases (Milvus
# Lite is laxer); the adapter holds both to the server's rule.
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
MILVUS_NAME_RULE = (
    "ASCII letters, digits and underscores, starting with a letter or underscore, "
    "at most 255 characters, on Milvus Lite too"
)

_METRIC_TO_MILVUS = {"cosine": "COSINE", "dot": "IP", "euclid": "L2"}
_METRIC_FROM_MILVUS = {"COSINE": "cosine", "IP": "dot", "L2": "euclid"}

_SCALAR_KINDS = {
    "VARCHAR": "keyword",
    "INT8": "integer",
    "INT16": "integer",
    "INT32": "integer",
    "INT64": "integer",
    "FLOAT": "float",
    "DOUBLE": "float",
    "BOOL": "bool",
}

# Milvus Lite runs in-process, one server per .db path; count our stores per path
# so the last one to close releases the path (and its lock) for other processes.
_LITE_USERS: dict[str, int] = {}
_LITE_GUARD = threading.Lock()


def _quiet_client_logs() -> None:
    # pymilvus logs a full traceback at ERROR for every failed call, expected ones
    # included (a probe for a missing collection); the adapter maps and raises
    # every error itself. REINDEX_BACKEND_DEBUG=1 keeps the client's own logs.
    if os.environ.get("REINDEX_BACKEND_DEBUG"):
        return
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class _Schema:
    collection: str  # the physical collection behind the name it was read for
    pk: str
    pk_is_str: bool
    pk_max_length: int
    vector: str
    dim: int
    fields: tuple[str, ...]  # other schema fields: payload (other vector fields included)
    other_vectors: tuple[str, ...]  # the vector fields among ``fields``: never asked of a search
    dynamic: bool
    metric: str  # Milvus metric type: COSINE, IP, L2
    index_type: str
    index_params: dict[str, Any]
    num_shards: int
    # The sparse vector the tool's BM25 function fills from LEXICAL_TEXT_FIELD, where the collection
    # has one (a version planned with --lexical bm25); function outputs are never in ``fields``.
    lexical: str | None = None


#: The text field the tool's BM25 function reads (a version planned with --lexical bm25): the
#: version's text, written by the tool beside the payload; nullable, so an application that writes a
#: row without it still can (its lexical vector is then empty until the tool writes the row again).
LEXICAL_TEXT_FIELD = "reindex_bm25_text"
LEXICAL_FUNCTION = "reindex_bm25_function"
#: Milvus's VARCHAR limit, in bytes; a longer text is cut (at a character boundary) for BM25 only.
LEXICAL_TEXT_MAX = 65_535


def lit(value: Any) -> str:
    """A Milvus expression literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"cannot compare with {value!r}")
        return repr(value)
    if isinstance(value, str):
        # JSON escapes (\" \\ \n \uXXXX) are the C escapes Milvus' grammar accepts.
        return json.dumps(value, ensure_ascii=False)
    raise UsageError(f"where: values must be strings, numbers or booleans, not {type(value).__name__}")


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


class MilvusStore(VectorStore):
    backend = "milvus"
    other_vectors_in_payload = True

    def __init__(
        self,
        uri: str = "",
        token: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        client: Any = None,
    ):
        from pymilvus import MilvusClient  # noqa: F401 - fail early if missing

        _quiet_client_logs()
        lite_path = _lite_path_of(client) if client is not None else None
        if client is not None:
            uri = lite_path or getattr(getattr(client, "_config", None), "uri", "") or uri
        self._lite = uri.endswith(".db")
        # A client handed in belongs to the application that opened it: close() leaves it open.
        self._owns_client = client is None
        self._uri = uri
        self._token = token or ""
        self._secrets = [token] if token else []
        self._timeout = float(timeout or os.environ.get("REINDEX_STORE_TIMEOUT", "60"))
        self._connect_timeout = float(connect_timeout or os.environ.get("REINDEX_CONNECT_TIMEOUT", "5"))
        self._schemas: dict[str, _Schema] = {}
        # collection -> the vector field adopt chose, until the collection's properties record it
        self._chosen: dict[str, str] = {}
        self._client: Any = None
        self._lite_path: str | None = None
        self.capabilities = Capabilities(
            atomic_alias_swap=True,
            collection_metadata=True,
            payload_indexes=False,
            embedded=self._lite,
            # One writer on Milvus Lite: with two inserts in flight, a SIGKILL of the process group
            # lost every acknowledged insert of the run (already in the ledger) in 4 of 5 tries of
            # tests/test_crash.py's sync test, where one writer lost none. A server takes four.
            write_concurrency=1 if self._lite else 4,
            # Milvus's BM25 function (Lite 3.x, servers from 2.5); lexical_refusal() asks a server.
            lexical_vectors=True,
            lexical_by_store=True,
        )
        if client is not None:
            self._client = client
            self.location = f"milvus+lite:{lite_path}" if lite_path else redact_url(uri)
        elif self._lite:
            path = os.path.abspath(os.path.expanduser(uri))
            self.location = f"milvus+lite:{path}"
            self._uri = path
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(f"cannot create the folder for {self.location}: {exc.strerror}") from None
            self._client = self._connect_lite(path)
        else:
            self.location = redact_url(uri)
            self._client = call_with_retries(self._connect_server, f"connect to {self.location}")

    # -- connecting ----------------------------------------------------------
    def _new_client(self) -> Any:
        from pymilvus import MilvusClient

        return MilvusClient(
            uri=self._uri,
            token=self._token,
            timeout=self._connect_timeout,
            # Our own channel, closed by close(); shared ones live until exit.
            dedicated=True,
        )

    def _connect_server(self) -> Any:
        try:
            return self._new_client()
        except Exception as exc:  # noqa: BLE001 - mapped at the boundary
            raise self._map(exc, "connect") from None

    def _connect_lite(self, path: str) -> Any:
        with _LITE_GUARD:
            first_here = _LITE_USERS.get(path, 0) == 0
            # Read before opening: the server we start writes WAL files of its own.
            unsettled = _collections_with_leftover_wal(path) if first_here else []
            try:
                client = self._new_client()
            except Exception as exc:  # noqa: BLE001
                if _lite_lock_held(path):
                    raise self._held_elsewhere(f"Milvus Lite store {path}", "Milvus", "milvus://HOST:PORT") from None
                raise BackendError(f"cannot open the Milvus Lite store {path}: {self._redact(str(exc))}") from None
            _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1
            self._lite_path = path
            self._settle_lite(client, unsettled)
            return client

    def _settle_lite(self, client: Any, names: list[str]) -> None:
        # A process killed inside Milvus Lite's flush can leave the flushed rows both in a data
        # file and in the write-ahead log the flush was about to delete. The next process to open
        # the store replays that log into memory and counts and returns every such row twice
        # (docs/benchmarks.md, "Crash fuzzing"); a flush right after opening merges them, so
        # every later read sees each row once. A clean exit leaves no log behind, so this costs
        # nothing then; after any other unclean exit the flush only persists what was logged.
        for name in names:
            try:
                client.flush(name, timeout=self._timeout)
            except Exception:  # noqa: BLE001 - a collection dropped since, or not one of ours
                log.debug("settling Milvus Lite collection %s failed", name, exc_info=True)
            else:
                log.info("Milvus Lite: %s was left mid-write by an earlier process; flushed its log", name)

    # -- plumbing ------------------------------------------------------------
    def _map(self, exc: BaseException, what: str) -> ReindexError:
        import grpc
        from pymilvus.exceptions import MilvusException

        where = f"{what} on {self.location}"
        if isinstance(exc, MilvusException):
            code = exc.code
            message = self._redact(str(getattr(exc, "message", "") or exc))
            lowered = message.lower()
            if isinstance(code, grpc.StatusCode):
                if code in _transient_grpc():
                    return TransientBackendError(f"{where}: {code.name}: {message}")
                return BackendError(f"{where}: {code.name}: {message}")
            if _is_not_loaded(exc):
                return TransientBackendError(f"{where}: {message}")
            if (
                code in (100, 1600)
                or "not found" in lowered
                or "does not exist" in lowered
                or ("can't find" in lowered)
            ):
                return NotFoundError(f"{where}: {message}")
            if (
                code == 1601
                or "already exist" in lowered
                or "conflict" in lowered
                or ("duplicate collection" in lowered)
            ):
                return ConflictError(f"{where}: {message}")
            if code in (2, 8) or any(s in lowered for s in _TRANSIENT_WORDS):
                return TransientBackendError(f"{where}: {message}")
            return BackendError(f"{where}: {message}")
        if isinstance(exc, grpc.RpcError):
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = self._redact(str(exc.details() if callable(getattr(exc, "details", None)) else exc))
            if code is not None and code in _transient_grpc():
                return TransientBackendError(f"{where}: {code.name}: {details}")
            return BackendError(f"{where}: {getattr(code, 'name', 'gRPC error')}: {details}")
        return map_common_error(exc, where, self._redact)

    def _recover(  # type: ignore[override]  # keyword options instead of **options
        self,
        exc: Exception,
        fn: Callable[..., T],
        what: str,
        *,
        load: str | None = None,
        missing_is_transient: bool = False,
        unexpected_is_transient: bool = False,
    ) -> T:
        """``_call``'s options on this backend.

        ``load``: the collection to load and retry once on "collection not
        loaded" (after a server restart). ``missing_is_transient``: right after
        create_collection a fresh server may briefly not find the collection.
        ``unexpected_is_transient``: a restarted server fails the load of a new
        collection with UnexpectedError (65535, "unrecoverable error"; "node not
        found" in the detail that pymilvus drops) while the old query node's session
        lingers (``common.session.ttl``); retried within the retry bounds.
        """
        if load is not None and _is_not_loaded(exc):
            log.info("%s: collection %r not loaded; loading it", self.location, load)
            try:
                self._client.load_collection(load, timeout=self._timeout)
                return fn()
            except Exception as exc2:  # noqa: BLE001
                raise self._map(exc2, what) from exc2
        err = self._map(exc, what)
        missing = missing_is_transient and isinstance(err, NotFoundError)
        if missing or (unexpected_is_transient and _is_unexpected(exc)):
            raise TransientBackendError(err.message) from exc
        raise err from exc

    def _schema(self, name: str, refresh: bool = False) -> _Schema:
        if not refresh and name in self._schemas:
            return self._schemas[name]
        return self._describe_raw(name)[0]

    def _describe_raw(self, name: str) -> tuple[_Schema, dict[str, Any]]:
        """Fetch a collection's description, refresh the cached schema, return both."""
        if not valid_name(name):
            raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
        desc = self._call(lambda: self._client.describe_collection(name, timeout=self._timeout), f"describe {name!r}")
        schema = self._parse_schema(name, desc)
        self._schemas[name] = schema
        return schema, desc

    def _parse_schema(self, name: str, desc: dict[str, Any]) -> _Schema:
        from pymilvus import DataType

        physical = desc.get("collection_name") or name
        pk = pk_is_str = None
        pk_max = PK_MAX_LENGTH
        dims = _float_vectors(desc)
        vector = self._managed_vector(name, physical, desc, list(dims))
        fields: list[str] = []
        other_vectors: list[str] = []
        outputs = _function_outputs(desc)
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
        return _Schema(
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
            lexical=_own_lexical(desc),
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
        return list(_float_vectors(desc))

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
        metric = props.get("reindex.metric")  # written with every version (reindexer.executor)
        if metric not in _METRIC_TO_MILVUS:
            return False
        index_params = json.loads(props.get(META_INDEX_PARAMS) or "{}")
        spec = CollectionSpec(physical, dim=int(_float_vectors(desc)[vector]), metric=metric, index_params=index_params)
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

    def _output_fields(self, s: _Schema, with_vectors: bool, searching: bool = False) -> list[str]:
        out = [s.pk, *(f for f in s.fields if not (searching and f in s.other_vectors))]
        if s.dynamic:
            out.append("$meta")
        if with_vectors:
            out.append(s.vector)
        return out

    def _pk_value(self, s: _Schema, doc_id: str) -> str | int | None:
        """The primary key for a document id; None when no row can have it."""
        if s.pk_is_str:
            return doc_id
        try:
            return int(doc_id)
        except (TypeError, ValueError):
            return None

    def _to_row(self, s: _Schema, p: Point) -> dict[str, Any]:
        if not isinstance(p.doc_id, str) or not p.doc_id:
            raise UsageError(f"document ids must be non-empty strings, not {p.doc_id!r}")
        if p.vector is None:
            raise UsageError(f"point {p.doc_id!r} has no vector")
        row: dict[str, Any] = {}
        if s.lexical is not None:
            lexical = p.other_vectors.get(s.lexical)
            text = lexical.get("text") if isinstance(lexical, dict) else None
            row[LEXICAL_TEXT_FIELD] = _cut_utf8(text, LEXICAL_TEXT_MAX) if isinstance(text, str) else None
        for key, value in p.payload.items():
            if key == DOC_ID_KEY or (key == LEXICAL_TEXT_FIELD and s.lexical is not None):
                continue
            if key == MODEL_KEY and not self._holds_tags(s):
                continue  # the model is recorded once, in the collection's properties
            if key in (s.pk, s.vector) or key.startswith(ESCAPED_PREFIX) or key == "$meta":
                if not s.dynamic:
                    raise UsageError(f"payload key {key!r} collides with a field of {s.collection!r}")
                row[ESCAPED_PREFIX + key] = value
            elif key in s.fields or s.dynamic:
                row[key] = value
            else:
                raise UsageError(f"collection {s.collection!r} has no field {key!r} and no dynamic fields")
        pk = self._pk_value(s, p.doc_id)
        if pk is None:
            raise UsageError(f"collection {s.collection!r} has an integer primary key; {p.doc_id!r} is not one")
        if s.pk_is_str and len(p.doc_id.encode("utf-8")) > s.pk_max_length:
            raise UsageError(
                f"document id {p.doc_id[:40]!r}... is longer than {s.pk_max_length} bytes, "
                f"the primary key limit of {s.collection!r}"
            )
        row[s.pk] = pk
        row[s.vector] = [float(x) for x in p.vector]
        return row

    def _holds_tags(self, s: _Schema) -> bool:
        return s.dynamic or MODEL_KEY in s.fields

    def holds_point_tags(self, name: str) -> bool:
        return self._holds_tags(self._schema(name))

    def _point(self, s: _Schema, row: dict[str, Any], with_vectors: bool) -> Point:
        """A stored row as a point; the BM25 text of a lexical version among its other vectors."""
        text = row.get(LEXICAL_TEXT_FIELD) if s.lexical is not None else None
        doc_id, vec, payload = self._to_payload(s, row)
        point = Point(doc_id=doc_id, vector=vec if with_vectors else None, payload=payload)
        if with_vectors and isinstance(text, str):
            point.other_vectors = {s.lexical: {"text": text}}  # type: ignore[dict-item]
        return point

    def _to_payload(self, s: _Schema, row: dict[str, Any]) -> tuple[str, list[float] | None, dict[str, Any]]:
        row = dict(row)
        if s.lexical is not None:
            row.pop(LEXICAL_TEXT_FIELD, None)
        pk = row.pop(s.pk, None)
        if pk is None:
            pk = row.pop("id", None)
        vector = row.pop(s.vector, None)
        payload: dict[str, Any] = {}
        meta = row.pop("$meta", None)
        if isinstance(meta, dict):
            row = {**meta, **row}
        for key, value in row.items():
            if key.startswith(ESCAPED_PREFIX):
                key = key[len(ESCAPED_PREFIX) :]
            payload[key] = value
        payload.pop(DOC_ID_KEY, None)
        vec = [float(x) for x in vector] if vector is not None else None
        return str(pk), vec, payload

    def _pk_expr(self, s: _Schema, doc_ids: Sequence[str]) -> str | None:
        values = [v for v in (self._pk_value(s, d) for d in doc_ids) if v is not None]
        if not values:
            return None
        return f"{s.pk} in [{', '.join(lit(v) for v in values)}]"

    def _where_expr(self, s: _Schema, where: dict[str, Any] | None) -> str:
        if not where:
            return ""
        parts = []
        for key, value in where.items():
            head, *rest = key.split(".")
            if head in s.fields:
                ref = head
            elif not s.dynamic:
                raise UsageError(f"where: collection {s.collection!r} has no field {head!r}")
            elif head in (s.pk, s.vector) or head.startswith(ESCAPED_PREFIX) or head == "$meta":
                ref = f"$meta[{lit(ESCAPED_PREFIX + head)}]"
            else:
                ref = f"$meta[{lit(head)}]"
            ref += "".join(f"[{lit(part)}]" for part in rest)
            parts.append(f"{ref} == {lit(value)}")
        return " and ".join(parts)

    # -- collections ---------------------------------------------------------
    def list_collections(self) -> list[str]:
        names = self._call(lambda: self._client.list_collections(timeout=self._timeout), "list collections")
        return sorted(names)

    def create_collection(self, spec: CollectionSpec) -> None:
        from pymilvus import DataType, MilvusClient

        validate_spec(spec)
        lexical = spec.index_params.get("lexical")
        if lexical:
            refusal = self.lexical_refusal()
            if refusal is not None:
                raise UsageError(refusal, hint="plan without --lexical")
            if lexical.get("engine") != "store":
                raise UsageError(
                    f"{self.location}: Milvus computes BM25 itself; a lexical index of term weights made "
                    "elsewhere cannot be kept here",
                    hint="plan the version again (--lexical bm25) so it records Milvus's own BM25",
                )
        check_name(spec.name, "collection")
        self._check_new_collection(spec.name, self._alias_target(spec.name) is not None)
        like = spec.schema if spec.schema is not None and spec.schema.backend == self.backend else None
        if like is not None:
            self._check_vector_fields(spec.name, like)
        extra: dict[str, Any] = {}
        properties: dict[str, str] = {}
        if like is None:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
            schema.add_field(PK_FIELD, DataType.VARCHAR, is_primary=True, max_length=PK_MAX_LENGTH)
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=spec.dim)
        else:
            schema = _pymilvus_schema(like, spec.dim)
            properties.update(like.options.get("properties") or {})
            if like.primary is not None and like.primary.auto_id and not self._lite:
                properties["allow_insert_auto_id"] = "true"  # the copies keep their keys (servers from 2.6)
            if like.shards:
                extra["num_shards"] = like.shards
            if like.partition_key and like.options.get("num_partitions"):
                extra["num_partitions"] = like.options["num_partitions"]
            properties[META_VECTOR] = like.vector
        if lexical:
            _add_lexical(schema, lexical)
        properties.update(spec.metadata)
        properties[META_PAYLOAD_INDEXES] = json.dumps(spec.payload_indexes, sort_keys=True)
        properties[META_INDEX_PARAMS] = json.dumps(spec.index_params, sort_keys=True)
        if "shards" in spec.index_params:
            extra["num_shards"] = spec.index_params["shards"]
        self._forget()
        self._call(
            lambda: self._client.create_collection(
                spec.name,
                schema=schema,
                consistency_level="Strong",
                properties=properties,
                timeout=self._timeout,
                **extra,
            ),
            f"create collection {spec.name!r}",
        )
        try:
            self._create_vector_index(spec, like)
            if like is not None:
                self._create_scalar_indexes(spec.name, like)
            if lexical:
                self._create_lexical_index(spec.name, lexical)
            self._call(
                lambda: self._client.load_collection(spec.name, timeout=self._timeout),
                f"load {spec.name!r}",
                missing_is_transient=True,
                unexpected_is_transient=True,
            )
        except BaseException:
            try:
                self._client.drop_collection(spec.name, timeout=self._timeout)
            except Exception:  # noqa: BLE001 - best effort; the first error matters
                log.warning("could not drop half-created collection %r", spec.name)
            raise

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
                metric_type=_METRIC_TO_MILVUS[spec.metric],
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

    def lexical_refusal(self) -> str | None:
        if self._lite:
            return None
        version = self._server_version()
        if version == (0, 0) or version >= (2, 5):  # a server that does not say decides for itself
            return None
        return (
            f"{self.location} runs Milvus {'.'.join(map(str, version))}, which has no BM25 function "
            "(Milvus 2.5 added it)"
        )

    def search_lexical(
        self, name: str, vector_name: str, sparse: dict[str, Any], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        if k <= 0:
            return []
        s = self._schema(name)
        text = _query_text(sparse, name)
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.search(
                name,
                data=[text],
                filter=self._where_expr(s, where),
                limit=k,
                output_fields=fields,
                search_params={"metric_type": "BM25"},
                anns_field=vector_name,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"search {name!r} by BM25",
            load=s.collection,
        )
        # BM25 scores are positive; Milvus Lite (3.2) returns them negated, servers as they are.
        return self._hits(s, res, lambda distance: abs(distance))

    def search_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        vector_name: str,
        sparse: dict[str, Any],
        k: int,
        where: dict[str, Any] | None = None,
        *,
        rrf_k: int = 60,
        prefetch: int = 100,
    ) -> list[Hit]:
        from pymilvus import AnnSearchRequest, RRFRanker

        if k <= 0:
            return []
        s = self._schema(name)
        expr = self._where_expr(s, where)
        dense: dict[str, Any] = {"metric_type": s.metric}
        if s.index_type.startswith("HNSW"):
            dense["params"] = {"ef": max(prefetch, 64)}
        requests = [
            AnnSearchRequest([[float(x) for x in vector]], s.vector, dense, prefetch, expr=expr or None),
            AnnSearchRequest(
                [_query_text(sparse, name)], vector_name, {"metric_type": "BM25"}, prefetch, expr=expr or None
            ),
        ]
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.hybrid_search(
                name, requests, RRFRanker(rrf_k), limit=k, output_fields=fields, timeout=self._timeout
            ),
            f"hybrid search {name!r}",
            load=s.collection,
        )
        return self._hits(s, res, float)

    def _hits(self, s: _Schema, res: Any, score: Callable[[float], float]) -> list[Hit]:
        hits = []
        for h in res[0] if res else []:
            entity = dict(h.get("entity") or {})
            entity.setdefault(s.pk, h.get("id"))
            doc_id, _, payload = self._to_payload(s, entity)
            hits.append(Hit(doc_id=doc_id, score=score(float(h.get("distance", 0.0))), payload=payload))
        return hits

    def set_other_vectors(self, name: str, points: Sequence[Point]) -> None:
        """Rows are written whole: the points are read again with their vectors and written with the
        new BM25 text (the only other vector the tool writes; an application's travel in the payload)."""
        s = self._schema(name)
        wanted = {p.doc_id: p.other_vectors for p in points if p.other_vectors}
        if not wanted:
            return
        if s.lexical is None or any(set(v) - {s.lexical} for v in wanted.values()):
            raise BackendError(f"{s.collection!r} keeps no vectors besides its own but the tool's BM25 text")
        stored = self.retrieve(name, list(wanted), with_vectors=True)
        for p in stored:
            p.other_vectors = {**p.other_vectors, **wanted[p.doc_id]}
        self.upsert(name, stored)

    def _server_version(self) -> tuple[int, ...]:
        """The server's (major, minor); (0, 0) when it does not say."""
        version = str(
            self._call(lambda: self._client.get_server_version(timeout=self._timeout), "read the server version")
        )
        return tuple(int(x) for x in re.findall(r"\d+", version)[:2]) or (0, 0)

    def _explicit_auto_ids(self) -> bool | None:
        """Whether this store takes given keys into an auto-id collection: Lite does; servers from 2.6
        when the collection allows it (``allow_insert_auto_id``); older servers refuse them."""
        if self._lite:
            return True
        return self._server_version() >= (2, 6)

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

    def advance_generated_ids(self, name: str) -> int:
        """Milvus Lite: move the auto-id counter past the largest key by writing stored rows again, unchanged.

        Lite's auto-ids count the rows ever inserted into the collection (explicit keys
        included) and never look at the keys themselves, and its insert replaces a row with
        the same key. A version holding keys that another collection allocated (a copy of a
        collection that lost rows, a shadow caught up with later writes, a rollback target)
        would hand an application's next ``add_texts`` the key of a stored point, silently
        overwriting it. One insert without a key finds the counter; every row it could have
        landed on is read first and written back. Servers allocate from a global, rising
        timestamp and need nothing.
        """
        if not self._lite:
            return 0
        s = self._schema(name, refresh=True)
        if s.pk_is_str:
            return 0
        pk = next((f for f in self.read_schema(name).fields if f.primary), None)
        if pk is None or not pk.auto_id:
            return 0
        count = self.count(name)
        keys = self._keys_above(s, count)  # the counter is past ``count``: only these can be handed out
        if not keys:
            return 0
        if len(keys) > _MAX_REWRITTEN_ROWS:
            log.warning(
                "%s: %r holds %d keys above its row count; its auto-ids are not advanced, and an insert "
                "without ids may replace one of them",
                self.location,
                name,
                len(keys),
            )
            return 0
        fields = self._output_fields(s, with_vectors=True)
        rows = [r for chunk in _chunks(keys, CHUNK) for r in self._rows(s, name, chunk, fields)]
        probe = self._insert_rows(name, [{k: v for k, v in rows[-1].items() if k != s.pk}])[0]
        by_key = {int(r[s.pk]): r for r in rows}
        if probe in by_key:
            self._insert_rows(name, [by_key[probe]])  # the row the probe replaced, as it was
        else:
            self._call(
                lambda: self._client.delete(name, filter=f"{s.pk} in [{probe}]", timeout=self._timeout),
                f"delete the probe row of {name!r}",
                load=s.collection,
            )
        todo = max(keys) - probe
        written = 0
        while written < todo:
            batch = rows[: min(todo - written, len(rows), CHUNK)]
            self._insert_rows(name, batch)
            written += len(batch)
        log.info("%s: auto-ids of %r now start above %d", self.location, name, max(keys))
        return todo

    def _keys_above(self, s: _Schema, floor: int) -> list[int]:
        keys: list[int] = []
        last = floor
        while len(keys) <= _MAX_REWRITTEN_ROWS:
            rows = self._call(
                lambda e=f"{s.pk} > {last}": self._client.query(
                    s.collection, filter=e, output_fields=[s.pk], limit=16384, iterator="True", timeout=self._timeout
                ),
                f"read the keys of {s.collection!r}",
                load=s.collection,
            )
            if not rows:
                break
            page = sorted(int(r[s.pk]) for r in rows)
            keys += page
            last = page[-1]
            if len(rows) < 16384:
                break
        return keys

    def _rows(self, s: _Schema, name: str, keys: list[int], fields: list[str]) -> list[dict[str, Any]]:
        rows = self._call(
            lambda: self._client.query(
                name,
                filter=f"{s.pk} in [{', '.join(str(k) for k in keys)}]",
                output_fields=fields,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"read rows of {name!r}",
            load=s.collection,
        )
        out = []
        for row in rows:
            row = dict(row)
            meta = row.pop("$meta", None)
            out.append({**meta, **row} if isinstance(meta, dict) else row)
        return out

    def _insert_rows(self, name: str, rows: list[dict[str, Any]]) -> list[int]:
        res = self._call(
            lambda: self._client.insert(name, rows, timeout=self._timeout), f"write {len(rows)} rows into {name!r}"
        )
        return [int(i) for i in res["ids"]]

    def check_copyable(self, name: str) -> None:
        s = self._schema(name, refresh=True)
        pk = next((f for f in self.read_schema(name).fields if f.primary), None)
        if pk is not None and pk.auto_id and not self._explicit_auto_ids():
            raise UsageError(
                f"{s.collection!r} has an auto-id primary key {s.pk!r}, and this Milvus server "
                "refuses given keys in an auto-id collection: a new version could not keep its points' keys",
                hint="Milvus Lite and servers from 2.6 accept them; on this server, copy the collection into one "
                "with auto_id=False (the application then passes ids) and adopt that",
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
            params = {k: _plain(v) for k, v in (f.get("params") or {}).items()}
            for key in ("element_type", "max_capacity"):
                if f.get(key) is not None:
                    params[key] = _plain(f[key])
            fields.append(
                FieldSchema(
                    name=f["name"],
                    kind=_plain(f.get("type")),
                    params=params,
                    primary=bool(f.get("is_primary")),
                    auto_id=bool(f.get("auto_id")) if f.get("is_primary") else False,
                    nullable=bool(f.get("nullable")),
                    partition_key=bool(f.get("is_partition_key")),
                    default=_plain(f.get("default_value")) if f.get("default_value") is not None else None,
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
                "params": {k: _plain(v) for k, v in info.items() if k not in _INDEX_INFO_KEYS},
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
            "index_params": index_params if index_params is not None else _derived_index_params(s),
            "properties": {k: v for k, v in own.items() if not k.startswith("reindex.")},
        }
        if desc.get("description"):
            options["description"] = str(desc["description"])
        functions = [_plain_function(fn) for fn in desc.get("functions") or [] if fn.get("name") != LEXICAL_FUNCTION]
        if functions:
            options["functions"] = functions
        if any(f.partition_key for f in fields):
            options["num_partitions"] = int(desc.get("num_partitions") or 0) or None
        return CollectionSchema(
            backend=self.backend,
            fields=tuple(fields),
            vector=s.vector,
            metric=_METRIC_FROM_MILVUS.get(s.metric, s.metric.lower()),
            dynamic=s.dynamic,
            indexes=indexes,
            shards=s.num_shards,
            options=options,
        )

    def drop_collection(self, name: str) -> None:
        # Milvus 2.3 and Lite would drop the aliases with the collection: refused first.
        self._check_droppable(name, lambda: self._alias_target(name) is not None)
        self._forget()
        self._call(lambda: self._client.drop_collection(name, timeout=self._timeout), f"drop collection {name!r}")

    def describe(self, name: str) -> CollectionInfo:
        s, desc = self._describe_raw(name)
        metadata, indexes, index_params = split_metadata(desc.get("properties") or {})
        if indexes is None:
            indexes = self._scalar_indexes(s, desc)
        if index_params is None:
            index_params = _derived_index_params(s)
        return CollectionInfo(
            name=name,
            dim=s.dim,
            metric=_METRIC_FROM_MILVUS.get(s.metric, s.metric.lower()),
            metadata=metadata,
            payload_indexes=indexes,
            index_params=index_params,
            vector=s.vector,
        )

    def _scalar_indexes(self, s: _Schema, desc: dict[str, Any]) -> dict[str, str]:
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
                out[field_name] = _SCALAR_KINDS.get(types[field_name], types[field_name].lower())
        return out

    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        check_metadata(metadata)
        if not metadata:
            self._schema(name, refresh=True)
            return
        physical = self._schema(name, refresh=True).collection
        self._call(
            lambda: self._client.alter_collection_properties(physical, metadata, timeout=self._timeout),
            f"set metadata of {physical!r}",
        )
        self._forget()  # a recorded META_VECTOR changes which field every name means

    # -- points --------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        s = self._schema(name)
        # One row per document id, the last one winning, as in Qdrant: a
        # server upsert with a repeated key in one request would keep both.
        rows = list({p.doc_id: self._to_row(s, p) for p in points}.values())
        # Milvus Lite's upsert is a partial update: it merges the new row onto the
        # old one, so payload keys dropped by the caller would survive. Its insert
        # replaces a row with the same key whole, which is what upsert means here.
        write = self._client.insert if self._lite else self._client.upsert
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            self._call(
                lambda c=chunk: write(name, c, timeout=self._timeout),
                f"upsert {len(chunk)} points into {name!r}",
            )

    def finish_writes(self, name: str) -> None:
        # Milvus Lite keeps rows in an in-memory table (up to 128 MB) until a flush, and every
        # query, count or index description copies that whole table out row by row: a build's
        # verification scroll then costs the square of its size (16,000 rows: 9.6 s unflushed,
        # 1.2 s flushed, with the flush 0.9 s; docs/benchmarks.md). A server seals segments
        # on its own, and rate-limits flushes, so it is left to do that.
        if self._lite:
            self._call(lambda: self._client.flush(name, timeout=self._timeout), f"flush {name!r}")

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        s = self._schema(name)
        unique = list(dict.fromkeys(doc_ids))
        for start in range(0, len(unique), CHUNK):
            expr = self._pk_expr(s, unique[start : start + CHUNK])
            if expr is None:
                continue
            # The result is not used: Milvus Lite echoes the requested ids,
            # the server counts rows; neither says which ids existed.
            self._call(
                lambda e=expr: self._client.delete(name, filter=e, timeout=self._timeout),
                f"delete from {name!r}",
                load=s.collection,
            )

    def count(self, name: str) -> int:
        s = self._schema(name)
        res = self._call(
            lambda: self._client.query(
                name,
                filter="",
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"count {name!r}",
            load=s.collection,
        )
        return int(res[0]["count(*)"]) if res else 0

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        """Pages in primary-key order: each request asks for keys above the last one.

        Requests carry Milvus' ``iterator`` flag, which makes the server (and
        Milvus Lite) return the smallest keys first; they are read at the
        collection's default consistency level (Strong for collections the tool
        made). Requests fetch at least 1,024 rows, so a small ``batch_size``
        does not multiply the round trips. pymilvus' query_iterator is not used:
        it pastes string keys into its expression unescaped, so a document id
        with a quote or a newline breaks it.
        """
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        s = self._schema(name)
        fields = self._output_fields(s, with_vectors)
        fetch = min(max(batch_size, 1024), 16384)
        last: str | int | None = None
        buffer: list[Point] = []
        while True:
            if last is None:
                # Every key; -2**63 itself does not parse as a literal.
                expr = f'{s.pk} != ""' if s.pk_is_str else f"({s.pk} >= {1 - 2**63} or {s.pk} < {1 - 2**63})"
            else:
                expr = f"{s.pk} > {lit(last)}"
            rows = self._call(
                lambda e=expr: self._client.query(
                    name,
                    filter=e,
                    output_fields=fields,
                    limit=fetch,
                    iterator="True",
                    timeout=self._timeout,
                ),
                f"scroll {name!r}",
                load=s.collection,
            )
            if not rows:
                break
            last = max(r[s.pk] for r in rows)
            for row in rows:
                buffer.append(self._point(s, row, with_vectors))
            while len(buffer) >= batch_size:
                yield buffer[:batch_size]
                buffer = buffer[batch_size:]
            if len(rows) < fetch:
                break
        if buffer:
            yield buffer

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """The store filters the dynamic field, paged by primary key as ``scroll`` is.

        A collection that declares ``key`` as a field of its own, or has no dynamic field,
        takes the default (a full scroll filtered here).
        """
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        s = self._schema(name)
        if not s.dynamic or key in s.fields:
            yield from super().scroll_untagged(name, key, value, batch_size)
            return
        untagged = self._untagged_expr(key, value)
        fields = self._output_fields(s, False)
        fetch = min(max(batch_size, 1024), 16384)
        last: str | int | None = None
        while True:
            if last is None:
                keys = f'{s.pk} != ""' if s.pk_is_str else f"({s.pk} >= {1 - 2**63} or {s.pk} < {1 - 2**63})"
            else:
                keys = f"{s.pk} > {lit(last)}"
            rows = self._call(
                lambda e=f"({keys}) and ({untagged})": self._client.query(
                    name, filter=e, output_fields=fields, limit=fetch, iterator="True", timeout=self._timeout
                ),
                f"scroll {name!r} for points without {key}={value}",
                load=s.collection,
            )
            if rows:
                last = max(r[s.pk] for r in rows)
                points = [self._point(s, row, False) for row in rows]
                for start in range(0, len(points), batch_size):
                    yield points[start : start + batch_size]
            if len(rows) < fetch:
                return

    def _untagged_expr(self, key: str, value: str) -> str:
        """``key`` missing or not ``value``: Milvus Lite finds no row by ``!=`` whose key is missing (null
        semantics), the 2.3 server does; spelled out with ``exists``, fully bracketed (2.3 parses no other
        way), both agree."""
        ref = f"$meta[{lit(key)}]"
        return f"(not (exists {ref})) or ({ref} != {lit(value)})"

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        s = self._schema(name)
        fields = self._output_fields(s, with_vectors)
        unique = list(dict.fromkeys(doc_ids))
        out: list[Point] = []
        for start in range(0, len(unique), CHUNK):
            expr = self._pk_expr(s, unique[start : start + CHUNK])
            if expr is None:
                continue
            rows = self._call(
                lambda e=expr: self._client.query(
                    name,
                    filter=e,
                    output_fields=fields,
                    consistency_level="Strong",
                    timeout=self._timeout,
                ),
                f"retrieve from {name!r}",
                load=s.collection,
            )
            for row in rows:
                out.append(self._point(s, row, with_vectors))
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
        s = self._schema(name)
        expr = self._where_expr(s, where)
        params: dict[str, Any] = {"metric_type": s.metric}
        if s.index_type.startswith("HNSW"):
            params["params"] = {"ef": max(k, 64)}
        elif s.index_type.startswith("IVF"):
            params["params"] = {"nprobe": 32}
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.search(
                name,
                data=[[float(x) for x in vector]],
                filter=expr,
                limit=k,
                output_fields=fields,
                search_params=params,
                anns_field=s.vector,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"search {name!r}",
            load=s.collection,
        )
        return self._hits(s, res, (lambda d: math.sqrt(max(d, 0.0))) if s.metric == "L2" else float)

    # -- aliases -------------------------------------------------------------
    def _alias_target(self, alias: str) -> str | None:
        if not valid_name(alias):
            return None
        try:
            info = self._call(
                lambda: self._client.describe_alias(alias, timeout=self._timeout), f"describe alias {alias!r}"
            )
        except NotFoundError:
            return None
        return (info or {}).get("collection_name")

    def get_alias(self, alias: str) -> str | None:
        # One describe instead of list_aliases' describe per alias: the query side asks this often.
        return self._alias_target(alias)

    def list_aliases(self) -> dict[str, str]:
        res = self._call(lambda: self._client.list_aliases(timeout=self._timeout), "list aliases")
        out = {}
        for alias in res.get("aliases", []) if isinstance(res, dict) else res:
            target = self._alias_target(alias)
            if target is not None:
                out[alias] = target
        return out

    def set_alias(self, alias: str, collection: str) -> None:
        check_name(alias, "alias")
        self._check_alias_target(alias, collection)
        current = self._alias_target(alias)
        if current == collection:
            return
        self._forget()
        if current is None:
            self._call(
                lambda: self._client.create_alias(collection, alias, timeout=self._timeout),
                f"create alias {alias!r} -> {collection!r}",
            )
        else:
            # alter_alias repoints in one step: readers see the old or the new target.
            self._call(
                lambda: self._client.alter_alias(collection, alias, timeout=self._timeout),
                f"repoint alias {alias!r} -> {collection!r}",
            )

    def drop_alias(self, alias: str) -> None:
        if self._alias_target(alias) is None:
            return
        self._forget()
        self._call(lambda: self._client.drop_alias(alias, timeout=self._timeout), f"drop alias {alias!r}")

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        self._close_client()
        path, self._lite_path = self._lite_path, None
        if path is not None:
            with _LITE_GUARD:
                left = _LITE_USERS.get(path, 1) - 1
                if left > 0:
                    _LITE_USERS[path] = left
                    return
                _LITE_USERS.pop(path, None)
                try:
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(path)
                except Exception:  # noqa: BLE001
                    log.debug("releasing Milvus Lite for %s failed", path, exc_info=True)


# -- helpers ---------------------------------------------------------------
def _is_unexpected(exc: BaseException) -> bool:
    """The server's catch-all error code (UnexpectedError, 65535)."""
    return getattr(exc, "code", None) == 65535


_TRANSIENT_WORDS = (
    "fail connecting",
    "server unavailable",
    "service unavailable",
    "not ready",
    "not healthy",
    "unhealthy",
    "rate limit",
    "deadline exceeded",
    "retry timeout",
    "connection refused",
    "stopping",
)


@cache
def _transient_grpc() -> frozenset[Any]:
    # Imported on first use: the registry loads this module to parse any store URL.
    return grpc_transient_codes("ABORTED")


def valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: str, what: str) -> None:
    if not valid_name(name):
        raise UsageError(f"{name!r} is not a valid Milvus {what} name", hint=f"Milvus names: {MILVUS_NAME_RULE}")


def _is_not_loaded(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    text = str(getattr(exc, "message", "") or exc).lower()
    return code == 101 or "not loaded" in text or "state 'released'" in text or "call load()" in text


def _lite_path_of(client: Any) -> str | None:
    """The .db file behind an application's Milvus Lite client, or None for a server.

    pymilvus rewrites a .db URI to the loopback port of an in-process Lite server;
    milvus-lite's server manager is the only place that maps the port back.
    """
    address = getattr(getattr(client, "_config", None), "address", "") or ""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return None
    for path, entry in dict(getattr(server_manager_instance, "_servers", {})).items():
        if address.endswith(f":{entry[-1]}"):
            return path
    return None


def _function_outputs(desc: dict[str, Any]) -> set[str]:
    """The fields a collection's functions (BM25) fill: the store writes them, never a client."""
    return {str(o) for fn in desc.get("functions") or [] for o in fn.get("output_field_names") or []}


def _own_lexical(desc: dict[str, Any]) -> str | None:
    """The sparse vector of the tool's BM25 function (over LEXICAL_TEXT_FIELD), if the collection has it."""
    for fn in desc.get("functions") or []:
        if list(fn.get("input_field_names") or []) == [LEXICAL_TEXT_FIELD] and fn.get("output_field_names"):
            return str(fn["output_field_names"][0])
    return None


def _add_lexical(schema: Any, lexical: dict[str, Any]) -> None:
    """The tool's BM25: a nullable text field with the recorded analyzer, its sparse vector, the function."""
    from pymilvus import DataType, Function, FunctionType

    schema.add_field(
        LEXICAL_TEXT_FIELD,
        DataType.VARCHAR,
        max_length=LEXICAL_TEXT_MAX,
        enable_analyzer=True,
        analyzer_params=dict(lexical.get("analyzer") or {"tokenizer": "standard"}),
        nullable=True,
    )
    schema.add_field(lexical["vector"], DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name=LEXICAL_FUNCTION,
            function_type=FunctionType.BM25,
            input_field_names=[LEXICAL_TEXT_FIELD],
            output_field_names=[lexical["vector"]],
        )
    )


def _query_text(query: dict[str, Any], name: str) -> str:
    text = query.get("text") if isinstance(query, dict) else None
    if not isinstance(text, str):
        raise UsageError(f"{name!r}: Milvus computes BM25 from a query's text; got {type(query).__name__} without one")
    return text


def _cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def _collections_with_leftover_wal(path: str) -> list[str]:
    """Collections of a closed Milvus Lite store that still hold write-ahead log files.

    Milvus Lite 3.x keeps ``collections/NAME/wal/wal_data_N.arrow`` while it runs and removes
    them on a clean shutdown; one left behind means the last process did not exit cleanly.
    """
    root = Path(path) / "collections"
    try:
        return sorted(wal.parent.name for wal in root.glob("*/wal") if any(wal.glob("*.arrow")))
    except OSError:
        return []


def _lite_lock_held(path: str) -> bool:
    """True when another process holds Milvus Lite's LOCK file in ``path``."""
    lock_file = os.path.join(path, "LOCK")
    if not os.path.exists(lock_file):
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return False
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _float_vectors(desc: dict[str, Any]) -> dict[str, int]:
    """Name -> dimension of each FLOAT_VECTOR field: the fields the tool can embed into."""
    from pymilvus import DataType

    return {
        f["name"]: int((f.get("params") or {}).get("dim", 0))
        for f in desc.get("fields", [])
        if f.get("type") == DataType.FLOAT_VECTOR
    }


def _derived_index_params(s: _Schema) -> dict[str, Any]:
    """Index settings read from the index, for collections made outside the tool."""
    out: dict[str, Any] = {}
    params = s.index_params
    if s.index_type.startswith("HNSW"):
        if "M" in params:
            out["hnsw_m"] = int(params["M"])
        if "efConstruction" in params:
            out["hnsw_ef_construct"] = int(params["efConstruction"])
    out["quantization"] = "scalar" if "SQ" in s.index_type else "none"
    out["shards"] = s.num_shards
    return out


# What describe_index reports beside the index's own parameters.
_INDEX_INFO_KEYS = frozenset(
    {
        "index_type",
        "metric_type",
        "field_name",
        "index_name",
        "total_rows",
        "indexed_rows",
        "pending_index_rows",
        "state",
    }
)


def _plain(value: Any) -> Any:
    """A client value as JSON-able data: DataType members by their lowercased name."""
    if isinstance(value, enum.Enum):
        return str(value.name).lower()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _pymilvus_schema(like: CollectionSchema, dim: int) -> Any:
    """The pymilvus schema of ``like``, with ``dim`` for the vector the tool embeds into."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    pk = like.primary
    schema = MilvusClient.create_schema(
        auto_id=bool(pk and pk.auto_id),
        enable_dynamic_field=like.dynamic,
        description=like.options.get("description", ""),
    )
    for f in like.fields:
        kwargs: dict[str, Any] = {}
        for key, value in f.params.items():
            if key == "element_type":
                kwargs[key] = DataType[str(value).upper()]
            elif key in ("max_length", "dim", "max_capacity"):
                kwargs[key] = int(value)
            else:
                kwargs[key] = value
        if f.name == like.vector:
            kwargs["dim"] = dim
        if f.primary:
            kwargs["is_primary"] = True
            kwargs["auto_id"] = f.auto_id
        if f.nullable:
            kwargs["nullable"] = True
        if f.partition_key:
            kwargs["is_partition_key"] = True
        if f.default is not None:
            kwargs["default_value"] = f.default
        for flag in ("enable_analyzer", "enable_match"):  # described as the strings 'true' / 'false'
            if flag in kwargs:
                kwargs[flag] = str(kwargs[flag]).lower() == "true"
        if isinstance(kwargs.get("analyzer_params"), str):
            kwargs["analyzer_params"] = json.loads(kwargs["analyzer_params"])
        schema.add_field(f.name, DataType[f.kind.upper()], **kwargs)
    for fn in like.options.get("functions") or []:
        schema.add_function(
            Function(
                name=fn["name"],
                function_type=FunctionType[str(fn["type"]).upper()],
                input_field_names=list(fn["input"]),
                output_field_names=list(fn["output"]),
                params=dict(fn.get("params") or {}),
            )
        )
    return schema


def _plain_function(fn: dict[str, Any]) -> dict[str, Any]:
    """An application's function (langchain-milvus's BM25, say) as JSON-able data, to make it again."""
    return {
        "name": str(fn.get("name")),
        "type": _plain(fn.get("type")),
        "input": [str(x) for x in fn.get("input_field_names") or []],
        "output": [str(x) for x in fn.get("output_field_names") or []],
        "params": _plain(dict(fn.get("params") or {})),
    }
