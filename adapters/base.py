"""The store interface: what every vector store implements. An adapter author reads this first.

``VectorStore`` is the one interface the tool talks to a vector database through:
its abstract methods are the minimum an adapter implements, its other public
methods are defaults an adapter overrides where its store can do better or more
(docs/adapters.md, "The minimum an adapter implements"), and ``Capabilities``
declares what the store can do. Beside it, the data that crosses the interface
(``Point``, ``Hit``, ``CollectionSpec``, ``CollectionInfo``) and the payload and
metadata keys the tool reserves. The contract suite (tests/contract) is the proof
that an adapter keeps it.

Everything speaks *document ids* (strings). How a backend keys its points
(Qdrant: unsigned ints or UUIDs; Milvus: a VARCHAR primary key) stays inside
the adapter. Every method maps its client's exceptions into
``reindexer.errors`` at the boundary: ``TransientBackendError`` for failures
worth retrying (the adapter retries them itself, bounded, then raises
``BackendUnavailableError``), ``BackendError`` for the rest, ``NotFoundError``
for a missing collection or alias, ``StoreLockedError`` for an embedded store
held by another process.

Not here: how a store is named and found (``reindexer.adapters.backend``, the
``Backend`` an entry point names; ``reindexer.adapters.registry``), store URLs and
secrets (``reindexer.adapters.addressing``), name rules (``reindexer.adapters.names``),
the helpers adapters share (``reindexer.adapters.metadata``,
``reindexer.adapters.error_mapping``) and a collection's schema
(``reindexer.adapters.collection_schema``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from reindexer.adapters.collection_schema import CollectionSchema
from reindexer.adapters.error_mapping import map_common_error
from reindexer.adapters.names import check_vector_name
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    StoreLockedError,
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
#: The ANN index a store built after the load (``finish_writes``), as it recorded it (``CollectionInfo.ann_index``).
META_ANN_INDEX = "reindex.ann_index"
INTERNAL_META_KEYS = frozenset({META_PAYLOAD_INDEXES, META_INDEX_PARAMS, META_VECTOR, META_ANN_INDEX})
INDEX_PARAM_KEYS = frozenset(
    {"hnsw_m", "hnsw_ef_construct", "quantization", "shards", "lexical", "ann_index", "ivf_lists", "ivf_probes"}
)
#: ``index_params["ann_index"]``: the kinds of ANN index a plan can ask for; every store builds HNSW, and
#: ``Backend.ann_indexes`` says which others a backend builds (pgvector: IVFFlat too)
ANN_INDEX_KINDS = ("hnsw", "ivfflat")


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
    # quantization ("none", "scalar"), shards; ann_index ("hnsw", "ivfflat") with ivf_lists and ivf_probes.
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
    #: The ANN index the store built after the load, as ``finish_writes`` recorded it (``kind``, its settings,
    #: ``rows``, ``seconds``, ``built_at``); empty where the store indexes as it writes, or built none yet.
    ann_index: dict[str, Any] = field(default_factory=dict)


class VectorStore(abc.ABC):
    """A vector database seen through the operations reindexer needs.

    The abstract methods are the minimum; the defaults after them work on any
    store and are overridden for a capability or for speed. At the end of the
    class, the plumbing every adapter shares: secret redaction (``_secrets``), the retrying call wrapper
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

    def check_copyable(self, name: str, dim: int | None = None) -> None:
        """Raise ``UsageError`` when new versions of ``name`` cannot be written with its points' keys,
        or (``dim`` given) cannot hold vectors of that dimension beside the live version's.

        Called before the first write of migrate and apply, so a store that would
        refuse the copy half-way refuses it up front instead.
        """
        return None

    def ann_index_plan(self, dim: int, metric: str, index_params: dict[str, Any], rows: int) -> dict[str, Any] | None:
        """The ANN index ``finish_writes`` will build after a load of ``rows`` points, where the store builds
        one after the load rather than as points arrive (pgvector): ``kind`` and its settings resolved,
        ``memory`` (bytes its build wants), ``memory_limit`` (bytes it gets), ``over_memory`` ("slows" or
        "fails": what a build past the limit does) and ``parallel_workers``. The plan's estimate states the
        build on its own line (reindexer.estimate_index). None, the default: the store indexes as it writes,
        and the write rate covers it. Reads only.
        """
        return None

    def time_index_build(self, dim: int, metric: str, settings: dict[str, Any], rows: int) -> float | None:
        """Seconds a build of ``settings``'s index (an ``ann_index_plan``'s) takes here over ``rows`` generated
        vectors, measured where nothing is left behind; None where the store cannot measure one."""
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

        What the catch-up before an alias swap reads (reindexer.build.catchup): the points an
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

    def replace_by_alias(self, name: str, collection: str) -> bool:
        """Drop the collection ``name`` and make ``name`` an alias of ``collection`` in one atomic step, where
        the store can (migrate's last step): True when done, readers having seen the old collection or the
        alias, never neither. False, having changed nothing, where the store cannot: the caller then drops
        and sets the alias in two steps, with a moment between them when the name is missing.
        """
        return False

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
