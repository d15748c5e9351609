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
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from reindexer.adapters.schema import CollectionSchema
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    StoreLockedError,
    TransientBackendError,
    UsageError,
)
from reindexer.retry import call_with_retries

T = TypeVar("T")
log = logging.getLogger(__name__)

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
#: Which of a collection's dense vectors the tool embeds into, where it has several (or a named one).
META_VECTOR = "reindex.vector"
INTERNAL_META_KEYS = frozenset({META_PAYLOAD_INDEXES, META_INDEX_PARAMS, META_VECTOR})
INDEX_PARAM_KEYS = frozenset({"hnsw_m", "hnsw_ef_construct", "quantization", "shards", "lexical"})


@dataclass(frozen=True)
class Capabilities:
    """What a store can do; the shared code and the tool take their paths from these.

    ``atomic_alias_swap``: ``set_alias`` repoints in one step (readers never see
    neither target); without it ``open_store`` warns that cut-overs are not atomic.
    ``collection_metadata``: the store keeps string pairs per collection; the tool
    needs it (the model of each version lives there), so ``open_store`` refuses a
    store without it. ``payload_indexes``: payload indexes are built; where False
    they are only recorded in the metadata and ``describe`` still reports them.
    ``embedded``: one process per data folder; opening a held folder raises
    ``StoreLockedError`` (``VectorStore._held_elsewhere``).
    ``write_concurrency``: how many upsert batches the executor keeps in flight at
    once; more than one only where the store does the work outside this process's
    interpreter (a server, Milvus Lite's own process), so parallel requests overlap.
    ``lexical_vectors``: a version can hold a BM25 sparse vector the store weights by IDF
    (``index_params["lexical"]``), searched by ``search_lexical`` and fused by ``search_hybrid``.
    ``lexical_by_store``: the store computes that BM25 vector itself from a text (Milvus's BM25
    function): writes carry ``{"text": ...}`` for it, and so do queries.
    """

    atomic_alias_swap: bool
    collection_metadata: bool
    payload_indexes: bool
    # Embedded stores allow one process per data folder.
    embedded: bool
    write_concurrency: int = 1
    lexical_vectors: bool = False
    lexical_by_store: bool = False


@dataclass(frozen=True)
class StoreLocation:
    scheme: str
    backend: str  # the backend's registered name: "qdrant", "milvus", ...
    embedded: bool
    target: str  # a folder, a .db file, or an http(s) URL without credentials
    url: str  # normalised store URL, safe to log and to store


@dataclass
class Point:
    doc_id: str
    vector: list[float] | None
    payload: dict[str, Any] = field(default_factory=dict)
    # The point's vectors besides the one the tool embeds (Qdrant: other named dense vectors,
    # sparse vectors as {"indices": [...], "values": [...]}), read with ``with_vectors`` and
    # written back unchanged: they belong to the application.
    other_vectors: dict[str, Any] = field(default_factory=dict)


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
    # The live version's schema (``VectorStore.read_schema``): the new collection gets its
    # fields, keys, other vectors and indexes, with ``dim`` and ``metric`` for the embedded
    # vector. None: the tool's own schema.
    schema: CollectionSchema | None = None

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
    #: The dense vector ``dim`` and ``metric`` describe, the one the tool embeds into ("" : the only, unnamed one).
    vector: str = ""


class VectorStore(abc.ABC):
    """A vector database seen through the operations reindexer needs.

    Besides the abstract methods, the class holds the plumbing every adapter
    shares: secret redaction (``_secrets``), the retrying call wrapper
    (``_call``, which maps client exceptions through the adapter's ``_map``),
    the name checks around create, drop and set_alias, and closing a client
    that the adapter owns (``_client``, ``_owns_client``).
    """

    #: Backend name as used in store URLs and state ("qdrant", "milvus").
    backend: str = ""
    capabilities: Capabilities
    #: Where the store is, for messages: a store URL or an http(s) URL, never with credentials.
    location: str = ""
    #: The client the adapter talks through; None once closed.
    _client: Any = None
    #: False for a client handed in by an application: close() leaves it open.
    _owns_client: bool = True
    #: Strings removed from every error message (API keys, tokens).
    _secrets: list[str] = []  # replaced per instance, never mutated
    #: True where a row is written whole (Milvus): a point's other vector fields then travel in its
    #: payload with every write, and ``set_other_vectors`` is never needed.
    other_vectors_in_payload: ClassVar[bool] = False

    # -- plumbing shared by every adapter ------------------------------------
    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _map(self, exc: BaseException, what: str) -> ReindexError:
        """The client's exception as an error of reindexer's tree (adapters refine this)."""
        return map_common_error(exc, f"{what} on {self.location}", self._redact)

    def _call(self, fn: Callable[..., T], what: str, **options: Any) -> T:
        """Run one client call with the error mapping and bounded retries.

        ``TransientBackendError`` is retried (reindexer.retry); everything else
        fails at once. ``options`` go to ``_recover``, where an adapter can handle
        its own cases (Milvus: load a released collection).
        """
        if self._client is None:
            raise BackendError(f"{what}: the store {self.location} is closed")

        def attempt() -> T:
            try:
                return fn()
            except ReindexError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped at the boundary
                return self._recover(exc, fn, what, **options)

        return call_with_retries(attempt, f"{what} on {self.location}")

    def _recover(self, exc: Exception, fn: Callable[..., T], what: str, **options: Any) -> T:
        """A failed call: return what a recovered call returns, or raise the mapped error."""
        if options:
            raise TypeError(f"unexpected options for {type(self).__name__}._call: {', '.join(options)}")
        raise self._map(exc, what) from exc

    def _held_elsewhere(self, store: str, server: str, server_url: str) -> StoreLockedError:
        """The error for an embedded store another process holds (``capabilities.embedded`` only)."""
        if not self.capabilities.embedded:
            raise BackendError(f"{store} reports a lock, but {self.backend} stores of this kind are not embedded")
        return StoreLockedError(
            f"the {store} is held by another process: a running "
            "`reindex serve`, an application, or another reindex command",
            hint="embedded stores allow one process per data folder: stop the other process, "
            f"or run a {server} server and use {server_url}, which serve, applications "
            "and the admin commands can share",
        )

    def _check_new_collection(self, name: str, is_alias: bool) -> None:
        if name in self.list_collections():
            raise ConflictError(f"collection {name!r} already exists on {self.location}")
        if is_alias:
            raise ConflictError(f"{name!r} is an alias on {self.location}; a collection cannot take its name")

    def _check_droppable(self, name: str, is_alias: Callable[[], bool]) -> None:
        if name not in self.list_collections():
            hint = "it is an alias; use drop_alias" if is_alias() else None
            raise NotFoundError(f"no collection {name!r} on {self.location}", hint=hint)
        pointing = sorted(a for a, c in self.list_aliases().items() if c == name)
        if pointing:
            # Some backends (Milvus 2.3, Milvus Lite) would drop the aliases with the collection.
            raise ConflictError(
                f"collection {name!r} is still the target of alias(es) {', '.join(pointing)}",
                hint="repoint or drop the alias first",
            )

    def _check_alias_target(self, alias: str, collection: str) -> None:
        collections = self.list_collections()
        if alias in collections:
            raise ConflictError(
                f"{alias!r} is a collection on {self.location}; an alias cannot take its name",
                hint="migrate the collection to a versioned name first (an explicit, separate step)",
            )
        if collection not in collections:
            raise NotFoundError(f"no collection {collection!r} on {self.location}")

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not fail
                log.debug("closing the %s client failed", self.backend, exc_info=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # -- collections -------------------------------------------------------
    @abc.abstractmethod
    def list_collections(self) -> list[str]:
        """Physical collections, aliases excluded."""

    def collection_exists(self, name: str) -> bool:
        """True for a physical collection; False for an alias or nothing."""
        return name in self.list_collections()

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
    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        """Every point, page by page, in no guaranteed order."""

    @abc.abstractmethod
    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
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

    def lexical_refusal(self) -> str | None:
        """Why this store cannot keep a lexical index in a new version, or None when it can."""
        if self.capabilities.lexical_vectors:
            return None
        return f"{self.location} keeps no lexical index ({self.backend} in this release)"

    def search_lexical(
        self, name: str, vector_name: str, sparse: dict[str, Any], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        """Top-k by the dot product of ``sparse`` with the stored sparse vector ``vector_name``, weighted
        by the store's IDF (``capabilities.lexical_vectors``); documents sharing no term are left out."""
        raise UsageError(f"{self.backend} stores no lexical vectors here", hint="search with mode='dense'")

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
        """The dense and lexical top ``prefetch`` fused in the store by reciprocal rank (1 / (rrf_k + rank))."""
        raise UsageError(f"{self.backend} stores no lexical vectors here", hint="search with mode='dense'")

    def read_schema(self, name: str) -> CollectionSchema | None:
        """The schema of a collection or alias, to create new versions and copies like it.

        None where the adapter cannot read one: those get the tool's own schema.
        """
        return None

    def vector_names(self, name: str) -> list[str]:
        """The dense vectors of ``name`` the tool could embed into, by name ("" for an unnamed one)."""
        return [""]

    def use_vector(self, name: str, vector: str | None) -> None:
        """Embed into, read and search ``vector`` of collection ``name`` from now on (None: forget the choice).

        For a collection with several dense vectors whose metadata does not yet say
        which one the tool manages (``META_VECTOR``): adopt chooses before its first
        read and records the choice in the metadata, which every later command and
        every version made like it reads. ``UsageError`` for a name the collection lacks.
        """
        chosen = self._chosen_vectors()
        if vector is None:
            chosen.pop(name, None)
        else:
            check_vector_name(name, vector, self.vector_names(name))
            chosen[name] = vector
        self._vector_choice_changed(name)

    def _chosen_vectors(self) -> dict[str, str]:
        """The choices ``use_vector`` made, by collection or alias name."""
        return vars(self).setdefault("_chosen", {})

    def _vector_choice_changed(self, name: str) -> None:  # noqa: B027 - optional hook
        """Hook: drop what an adapter cached about ``name``'s vectors."""

    def set_other_vectors(self, name: str, points: Sequence[Point]) -> None:
        """Write ``other_vectors`` of existing points, leaving their embedded vector and payload alone.

        Only stores whose collections can hold more than one vector per point implement it.
        """
        if any(p.other_vectors for p in points):
            raise BackendError(f"{self.backend} collections hold one vector per point")

    def check_copyable(self, name: str) -> None:
        """Raise ``UsageError`` when new versions of ``name`` cannot be written with its points' keys.

        Called before the first write of migrate and apply, so a store that would
        refuse the copy half-way refuses it up front instead.
        """
        return None

    def finish_writes(self, name: str) -> None:
        """The writes of a pass into ``name`` are done: settle them where the store gains from it.

        Called once after a pass that wrote or deleted points (a build, a sync, a catch-up,
        a copy), never per batch. Reads are correct without it; it is about what they cost.
        The default does nothing.
        """
        return None

    def advance_generated_ids(self, name: str) -> int:
        """Make the ids the store generates for new points of ``name`` start above every id it holds.

        Called before an alias moves to a version the tool wrote with the keys of another
        collection (a copy, a shadow, a rollback target), so that an application's next
        insert without ids cannot be given the key of a point it already has. The number of
        ids skipped; 0 where the store's generated ids never collide (the default).
        """
        return 0

    def holds_point_tags(self, name: str) -> bool:
        """True when every point of ``name`` can carry the ``MODEL_KEY`` tag in its payload.

        Where False (a Milvus collection with neither a dynamic field nor a
        ``reindex_model`` field) the model is recorded once, in the collection's
        metadata, and adapters leave ``MODEL_KEY`` out of the points they write.
        """
        return True

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """Pages of the points of ``name`` whose payload lacks ``key`` or holds another value there (no vectors).

        What the catch-up before an alias swap reads (reindexer.catchup): the points an
        application wrote carry no ``MODEL_KEY`` tag, or another model's. The order of points
        is the store's; every such point comes once, and no other. This default filters a
        full scroll here, so it works on any store and costs a full read; adapters that can
        filter in the store override it, and cost about what matches.
        """
        for page in self.scroll(name, batch_size=batch_size):
            kept = [p for p in page if p.payload.get(key) != value]
            if kept:
                yield kept

    def set_payload_key(self, name: str, points: Sequence[Point], key: str, value: Any | None) -> None:
        """Set ``key`` to ``value`` (None: remove it) in the payload of existing points, nothing else changed.

        ``points`` are as read with ``with_vectors=True``. This default rewrites
        them whole; adapters whose points hold more than one vector override it
        so that the others survive.
        """
        for p in points:
            if value is None:
                p.payload.pop(key, None)
            else:
                p.payload[key] = value
        self.upsert(name, points)

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
        self._close_client()

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
            raise UsageError(f"payload index {field_name!r}: type must be one of {PAYLOAD_INDEX_TYPES}, not {kind!r}")
    unknown = set(spec.index_params) - INDEX_PARAM_KEYS
    if unknown:
        raise UsageError(
            f"unknown index settings: {', '.join(sorted(unknown))}",
            hint=f"use {', '.join(sorted(INDEX_PARAM_KEYS))}",
        )
    lexical = spec.index_params.get("lexical")
    if lexical is not None and not (
        isinstance(lexical, dict) and lexical.get("kind") == "bm25" and isinstance(lexical.get("vector"), str)
    ):
        raise UsageError(f"lexical must describe a BM25 index (kind bm25 and its sparse vector), not {lexical!r}")
    quant = spec.index_params.get("quantization", "none")
    if quant not in ("none", "scalar"):
        raise UsageError(f"quantization must be 'none' or 'scalar', not {quant!r}")
    for key in ("hnsw_m", "hnsw_ef_construct", "shards"):
        if key in spec.index_params:
            value = spec.index_params[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"{key} must be a positive integer, not {value!r}")


def check_vector_name(collection: str, vector: str, names: Sequence[str]) -> None:
    """``UsageError`` naming the dense vectors of ``collection`` when ``vector`` is not one of them."""
    if vector not in names:
        raise UsageError(
            f"collection {collection!r} has no dense vector {vector!r}; its dense vectors: {_vector_list(names)}",
            hint="pass --vector-name with one of them (or set vector_name in [collections.NAME] of reindex.toml)",
        )


def ambiguous_vector(collection: str, names: Sequence[str]) -> UsageError:
    """The error for a collection with several dense vectors and no recorded choice among them."""
    return UsageError(
        f"collection {collection!r} has {len(names)} dense vectors ({_vector_list(names)}) and reindexer "
        "was not told which one to embed into",
        hint="name it when adopting: `reindex adopt COLLECTION --vector-name NAME` "
        "(or vector_name in [collections.NAME] of reindex.toml)",
    )


def _vector_list(names: Sequence[str]) -> str:
    return ", ".join(repr(n) if n else "the unnamed vector" for n in sorted(names)) or "none"


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


# -- error mapping shared by every adapter ---------------------------------------
def grpc_transient_codes(*extra: str) -> frozenset[Any]:
    """gRPC status codes worth retrying (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, and ``extra``)."""
    import grpc

    names = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", *extra)
    return frozenset(getattr(grpc.StatusCode, n) for n in names)


def map_common_error(exc: BaseException, where: str, redact: Callable[[str], str]) -> ReindexError:
    """What is left once an adapter has mapped its client's own exceptions."""
    text = redact(str(exc))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
    return BackendError(f"{where}: {type(exc).__name__}: {text}")


# -- URLs and secrets -------------------------------------------------------------
def redact_url(url: str) -> str:
    """The URL with any user-info removed, safe for logs and messages."""
    try:
        scheme, rest = url.split(":", 1)
    except ValueError:
        return url
    if "@" in rest and rest.startswith("//"):
        rest = "//***@" + rest.split("@", 1)[1]
    return f"{scheme}:{rest}"


def secret_from_env(name: str) -> str | None:
    """``NAME`` from the environment, or the contents of the file named by ``NAME_FILE``."""
    import os

    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read {name}_FILE: {exc.strerror}") from None
    return None


# -- backends: what the registry finds through the ``reindexer.backends`` entry points --
SAFE_NAME_RULE = (
    "ASCII letters, digits, '_', '-' and '.'; starting with a letter, digit or '_'; no '..'; at most 255 characters"
)
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def safe_name_problem(name: str) -> str | None:
    """What keeps ``name`` from being a safe collection name (``SAFE_NAME_RULE``), or None.

    Path separators, '..', whitespace, control and non-ASCII characters are out: an
    embedded store turns a name into a folder, and a name that reads differently in
    two encodings or shells is an outage waiting to happen.
    """
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > 255:
        return f"it is {len(name)} characters long"
    bad = sorted({c for c in name if c not in _SAFE_NAME_CHARS})
    if bad:
        kinds = []
        if any(c in "/\\" for c in bad):
            kinds.append("a path separator")
        if any(c.isspace() for c in bad):
            kinds.append("whitespace")
        if any(not c.isprintable() for c in bad):
            kinds.append("a control character")
        if any(not c.isascii() for c in bad):
            kinds.append("a non-ASCII character")
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"it contains {' and '.join(kinds) or 'a character outside the rule'} ({shown})"
    if ".." in name:
        return "it contains '..'"
    if name[0] in "-.":
        return f"it starts with {name[0]!r}"
    return None


class Backend(abc.ABC):
    """A kind of vector store: its URL schemes, how to read its location, how to open it.

    Registered as an entry point in the ``reindexer.backends`` group, named by
    ``name``, pointing at the class (``qdrant = "reindexer.adapters.qdrant:QdrantBackend"``).
    The registry instantiates it with no arguments. Keep the module it lives in
    cheap to import: every store URL is parsed through it.
    """

    #: The backend's name: the entry point's name, ``VectorStore.backend``, the state's record.
    name: ClassVar[str]
    #: Every URL scheme this backend answers for, lowercase ("qdrant", "qdrant+https", ...).
    schemes: ClassVar[tuple[str, ...]]
    #: URL forms shown when a URL cannot be read at all ("qdrant+local:PATH", "qdrant://HOST:PORT").
    examples: ClassVar[tuple[str, ...]] = ()
    #: The environment variable the credentials come from (``NAME_FILE`` reads a file), if any.
    secret_env: ClassVar[str | None] = None
    #: The distance metrics its collections can use.
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: The rule ``validate_collection_name`` holds names to, in words (messages and docs/adapters.md).
    name_rule: ClassVar[str] = SAFE_NAME_RULE
    #: The longest document id, in UTF-8 bytes, the collections the adapter creates can key on; None: no limit.
    max_doc_id_bytes: ClassVar[int | None] = None

    # -- what plan checks before anything is written ---------------------------------
    def validate_collection_name(self, name: str, what: str = "collection") -> None:
        """Raise ``UsageError`` for a collection or alias name this backend cannot hold.

        The default is ``SAFE_NAME_RULE``, safe on every store that keeps a folder per
        collection; a backend with stricter rules overrides it.
        """
        problem = safe_name_problem(name)
        if problem is not None:
            raise UsageError(
                f"{name!r} is not a valid {self.name} {what} name: {problem}",
                hint=f"{self.name} {what} names: {self.name_rule}",
            )

    def validate_doc_ids(self, doc_ids: Iterable[str]) -> None:
        """Raise ``UsageError`` naming the document ids the adapter could not key a point on."""
        empty, too_long = 0, 0
        examples: list[str] = []  # counts and the first few: no list as long as the source
        for doc_id in doc_ids:
            if not isinstance(doc_id, str) or not doc_id:
                empty += 1
            elif self.max_doc_id_bytes is not None and len(doc_id.encode("utf-8")) > self.max_doc_id_bytes:
                too_long += 1
                if len(examples) < 3:
                    examples.append(doc_id)
        problems = []
        if empty:
            problems.append(f"{empty} document id(s) are empty")
        if too_long:
            quoted = ", ".join(repr(d[:40] + "...") for d in examples)
            problems.append(
                f"{too_long} document id(s) are longer than {self.max_doc_id_bytes} bytes, "
                f"the {self.name} primary key limit (e.g. {quoted})"
            )
        if problems:
            raise UsageError(
                "; ".join(problems),
                hint="give every document a non-empty id within the limit (--id-field names the field)",
            )

    def validate_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise UsageError(f"unknown metric {metric!r} for {self.name}", hint=f"use one of {', '.join(self.metrics)}")

    def validate_dim(self, dim: int) -> None:  # noqa: B027 - optional hook: most backends have no limit
        """Raise ``UsageError`` for a vector dimension this backend's collections cannot hold or index.

        Plan checks it before anything is written (pgvector indexes at most 2,000 dimensions); the
        default accepts any.
        """

    @abc.abstractmethod
    def parse(self, scheme: str, rest: str, base_dir: Path | None) -> StoreLocation:
        """The location named by ``scheme:rest`` (``scheme`` is lowercase and one of ``schemes``).

        Raise ``UsageError`` for a malformed location. Credentials must not be
        accepted in the URL (``parse_server_address`` refuses them).
        """

    @abc.abstractmethod
    def open(self, location: StoreLocation) -> VectorStore:
        """An open store for a location this backend parsed; credentials from ``secret_env``."""

    def exists(self, location: StoreLocation) -> bool:
        """False when the location certainly holds no store yet (an embedded folder or file not made).

        Read-only commands ask before opening, because opening an embedded store creates it. The
        default, for a server, is True: whether it is there is learnt by connecting.
        """
        return True

    def wraps(self, client: Any) -> bool:
        """True when ``client`` is this backend's own client object (see ``wrap``)."""
        return False

    def wrap(self, client: Any) -> VectorStore:
        """A store over a client an application opened; the store never closes it."""
        raise UsageError(f"the {self.name} backend cannot wrap a {type(client).__name__}")


def parse_embedded_path(scheme: str, rest: str, base_dir: Path | None) -> Path:
    """``scheme:PATH`` or ``scheme://PATH``: an absolute path, relative ones resolved against ``base_dir``."""
    path = rest[2:] if rest.startswith("//") else rest
    if not path:
        raise UsageError(f"{scheme}: needs a path, as in {scheme}:./data")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return p


def parse_server_address(url: str, rest: str, default_port: int, secret_env: str | None = None) -> str:
    """``//HOST[:PORT]`` as ``HOST:PORT``; credentials in the URL are refused.

    The registry refuses them first with a hint naming every backend's variable
    (``registry.parse_store_url``); this refusal is for callers that parse directly.
    """
    parts = urlsplit(f"http:{rest}")
    if parts.username or parts.password:
        hint = f"set {secret_env} (or {secret_env}_FILE) instead" if secret_env else None
        raise UsageError("store URLs must not contain credentials", hint=hint)
    if not parts.hostname:
        raise UsageError(f"store URL {redact_url(url)} has no host")
    return f"{parts.hostname}:{parts.port or default_port}"


class EmbeddedOrServerBackend(Backend):
    """A backend with an embedded mode and a server reached over HTTP(S).

    Schemes: ``embedded_scheme:PATH`` (embedded), ``NAME://HOST[:PORT]`` and
    ``NAME+https://HOST[:PORT]`` (TLS). Subclasses set the class attributes and
    implement ``open_embedded`` and ``open_server``; ``check_embedded_path`` may
    refuse a path.
    """

    embedded_scheme: ClassVar[str]
    default_port: ClassVar[int]

    def parse(self, scheme: str, rest: str, base_dir: Path | None) -> StoreLocation:
        if scheme == self.embedded_scheme:
            p = parse_embedded_path(scheme, rest, base_dir)
            self.check_embedded_path(p)
            return StoreLocation(scheme, self.name, True, str(p), f"{scheme}:{p}")
        host_port = parse_server_address(f"{scheme}:{rest}", rest, self.default_port, self.secret_env)
        http = "https" if scheme.endswith("https") else "http"
        return StoreLocation(scheme, self.name, False, f"{http}://{host_port}", f"{scheme}://{host_port}")

    def check_embedded_path(self, path: Path) -> None:
        """Raise ``UsageError`` for a path the embedded mode cannot use."""

    def exists(self, location: StoreLocation) -> bool:
        return not location.embedded or Path(location.target).exists()

    def open(self, location: StoreLocation) -> VectorStore:
        if location.embedded:
            return self.open_embedded(location.target)
        return self.open_server(location.target, secret_from_env(self.secret_env) if self.secret_env else None)

    @abc.abstractmethod
    def open_embedded(self, path: str) -> VectorStore:
        """The embedded store at ``path`` (absolute)."""

    @abc.abstractmethod
    def open_server(self, url: str, secret: str | None) -> VectorStore:
        """The server at ``url`` (``http(s)://HOST:PORT``), with the credentials from ``secret_env``."""
