"""The query half of a model deployment: search a logical collection with its live version's own model.

A cut-over moves the alias; the query encoder must move with it. The Searcher
resolves the logical name to its physical collection, rebuilds that version's
encoder from the collection's own metadata (reindexer.encoders), encodes, and
searches that same physical collection. An answer therefore always comes wholly
from one version, even when the alias is swapped between encoding and searching.

It follows cut-overs and rollbacks without a restart: the alias is read again
at most every ``refresh`` seconds, and at once when the resolved collection is
gone. Encoders are cached per model version (bounded): the previous live
version's stays warm, so a rollback is instant, and the newest shadow's is
loaded ahead of its cut-over in a background thread. When the alias reaches a
version whose model is not loaded yet, the Searcher keeps answering from the
version it has (still whole and consistent) while that model loads.

This module is the query path (resolve, encode, search, follow cut-overs) and the encoder cache; how a
Searcher is made (options from reindex.toml, opening the store and the state) is reindexer.searcher_setup.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reindexer.batching import QueryBatcher
from reindexer.embedding import Embedder
from reindexer.encoders import EncoderSpec, load_encoder
from reindexer.errors import BackendError, NotFoundError, ReindexError, UsageError
from reindexer.lexical import ApplicationSparse, LexicalEncoder, StoredLexical
from reindexer.rerank import DEFAULT_TOP, Reranker, rerank_hits
from reindexer.searcher_setup import open_searched_store, open_state, query_config, query_options
from reindexer.version_search import check_mode, search_version

log = logging.getLogger(__name__)

#: How long a search waits for a name that vanished (a migration's drop-then-alias gap) to resolve again.
RESOLVE_PATIENCE_S = 2.0
#: How long after a failed model load (files missing, fingerprint mismatch) before trying again.
LOAD_RETRY_S = 30.0
#: How often the store is scanned for a newer shadow version whose model to load ahead.
SHADOW_SCAN_INTERVAL_S = 30.0


@dataclass(frozen=True)
class SearchHit:
    doc_id: str
    score: float
    """As the backend reports it: a similarity for cosine and dot (higher is better), a distance for euclid."""
    payload: dict[str, Any]
    """As stored, the model tag (``reindex_model``) included."""
    version: str
    """The physical collection that answered, e.g. ``docs__v2``."""
    model: str
    """That version's model label, ``name@<12 hex>``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.doc_id,
            "score": self.score,
            "payload": self.payload,
            "version": self.version,
            "model": self.model,
        }


@dataclass(frozen=True)
class VersionInfo:
    """What a logical name resolves to."""

    collection: str
    physical: str
    model: str
    fingerprint: str
    dim: int
    metric: str
    text_field: str
    version: int | None = None

    @classmethod
    def of(cls, collection: str, spec: EncoderSpec) -> VersionInfo:
        return cls(
            collection,
            spec.physical,
            spec.label,
            spec.fingerprint,
            spec.dim,
            spec.metric,
            spec.text_field,
            spec.version,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Resolved:
    spec: EncoderSpec
    at: float = field(default_factory=time.monotonic)


class Searcher:
    """Version-consistent search over one logical collection; thread-safe.

    ``store`` is None (found as the CLI finds it: REINDEX_STORE, reindex.toml), a
    store URL, a reindexer VectorStore, or an application's own open QdrantClient
    or MilvusClient (embedded stores allow one process per folder, so the Searcher
    must be able to share the application's). ``workspace`` shares a Workspace's
    store and state. ``state`` is needed only for shadow traffic, which records
    into it. ``models_root`` (or REINDEX_MODELS) maps the model paths recorded in
    the store onto this host's mount.
    """

    def __init__(
        self,
        collection: str,
        store: Any = None,
        state: Any = None,
        *,
        workspace: Any = None,
        refresh: float | None = None,
        models_root: str | Path | None = None,
        device: str | None = None,
        cache_size: int = 3,
        shadow_sample: float | None = None,
        record_query_text: bool | None = None,
        shadow_queue: int = 1000,
        preload_shadow: bool = True,
        cwd: Path | None = None,
        rerank: str | Path | None = None,
        rerank_top: int = DEFAULT_TOP,
        sparse_vector: str | None = None,
        sparse_encoder: Any = None,
        batch_queries: bool = True,
    ):
        if not isinstance(collection, str) or not collection:
            raise UsageError("Searcher needs a collection name")
        #: an application's own sparse vector and its encoder: lexical and hybrid modes where a version
        #: keeps no BM25 index of the tool's (``sparse_encoder``: texts -> sparse vectors)
        self.app_sparse = (
            ApplicationSparse(str(sparse_vector), sparse_encoder) if sparse_vector or sparse_encoder else None
        )
        #: the cross-encoder that rescores each answer's top ``rerank_top`` (None: no second stage)
        self.reranker = Reranker(rerank, top=rerank_top, device=device) if rerank else None
        self._config = query_config(store, workspace, cwd)
        options = query_options(
            self._config,
            refresh=refresh,
            shadow_sample=shadow_sample,
            record_query_text=record_query_text,
            models_root=models_root,
            device=device,
            cache_size=cache_size,
        )
        self.collection = collection
        self.refresh = options.refresh
        self.models_root = options.models_root
        self.device = options.device
        self.cache_size = cache_size
        self.preload_shadow = preload_shadow
        #: concurrent searches of one version share one query encode (reindexer.batching)
        self.batch_queries = bool(batch_queries)
        self._closers: list[Any] = []
        self.store, self.store_url = open_searched_store(store, workspace, self._config, self._closers)
        self._state_arg, self._workspace = state, workspace
        self._state: Any = None
        self._lock = threading.RLock()
        self._specs: dict[str, EncoderSpec] = {}
        self._lexical: dict[str, LexicalEncoder | ApplicationSparse | None] = {}  # by physical name
        self._encoders: OrderedDict[str, Embedder] = OrderedDict()
        self._loading: dict[str, Future] = {}
        self._failed_loads: dict[str, float] = {}
        self._resolved: _Resolved | None = None
        self._previous: str | None = None
        self._last_scan = -math.inf
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"reindex-searcher-{collection}")
        self._in_flight = 0
        self._idle = threading.Condition()
        self._closed = False
        self.mirror = None
        if options.shadow_sample > 0:
            from reindexer.shadow import ShadowMirror

            self.mirror = ShadowMirror(
                self, options.shadow_sample, self._require_state(), options.record_query_text, queue_size=shadow_queue
            )

    # -- state -----------------------------------------------------------------
    def _require_state(self) -> Any:
        """The state store, opened on first need; never created by a Searcher that only reads."""
        if self._state is None:
            self._state = open_state(self._state_arg, self._workspace, self._config, self._closers)
        return self._state

    def _optional_state(self) -> Any:
        if self._state is not None or self._workspace is not None or self._state_arg is not None:
            return self._require_state()
        return None

    # -- resolution ------------------------------------------------------------
    def current(self) -> VersionInfo:
        """The version that answers now (re-resolved if ``refresh`` has passed)."""
        return VersionInfo.of(self.collection, self._pinned()[0])

    def _spec(self, physical: str) -> EncoderSpec:
        with self._lock:
            spec = self._specs.get(physical)
        if spec is None:
            info = self.store.describe(physical)
            spec = EncoderSpec.from_metadata(physical, info.metadata, info.dim, info.metric, self._optional_state())
            with self._lock:
                self._specs[physical] = spec
        return spec

    def _lookup(self) -> str | None:
        physical = self.store.get_alias(self.collection)
        if physical is None and self.store.collection_exists(self.collection):
            physical = self.collection
        return physical

    def _resolve(self) -> EncoderSpec:
        """The physical collection the name points at now, and its encoder spec."""
        physical = self._lookup()
        if physical is None and self._resolved is not None:
            # A migration drops the collection and then creates the alias: wait out that gap.
            deadline = time.monotonic() + RESOLVE_PATIENCE_S
            while physical is None and time.monotonic() < deadline:
                time.sleep(0.02)
                physical = self._lookup()
        if physical is None:
            raise NotFoundError(f"unknown collection {self.collection!r} in {self.store_url}")
        return self._spec(physical)

    def _pinned(self, force: bool = False) -> tuple[EncoderSpec, Embedder]:
        """(spec, encoder) of the version to answer from: resolved, its encoder loaded."""
        now = time.monotonic()
        with self._lock:
            resolved = self._resolved
        if force or resolved is None or now - resolved.at >= self.refresh:
            spec = self._resolve()
            self._maybe_scan_shadows(now, spec.physical)
            with self._lock:
                encoder = self._encoders.get(spec.fingerprint)
                old = self._resolved
            if encoder is None and old is not None and old.spec.physical != spec.physical and not force:
                # Keep answering from the version in hand (whole and consistent) while the new model loads.
                self._load_in_background(spec)
                with self._lock:
                    self._resolved = _Resolved(old.spec, now)
                    return old.spec, self._encoders[old.spec.fingerprint]
            if encoder is None:
                encoder = self._encoder(spec)
            with self._lock:
                if old is not None and old.spec.physical != spec.physical:
                    self._previous = old.spec.fingerprint
                    log.info("%s now answers from %s (%s)", self.collection, spec.physical, spec.label)
                self._resolved = _Resolved(spec, now)
                return spec, encoder
        with self._lock:
            spec = resolved.spec
            return spec, self._encoders[spec.fingerprint]

    # -- encoders --------------------------------------------------------------
    def _encoder(self, spec: EncoderSpec) -> Embedder:
        """The encoder for ``spec``, loaded now if need be (a background load in progress is joined)."""
        with self._lock:
            encoder = self._encoders.get(spec.fingerprint)
            pending = self._loading.get(spec.fingerprint)
        if encoder is not None:
            self._touch(spec.fingerprint)
            return encoder
        if pending is not None:
            pending.result()
            with self._lock:
                encoder = self._encoders.get(spec.fingerprint)
            if encoder is not None:
                return encoder
        return self._remember(spec.fingerprint, load_encoder(spec, self.models_root, self.device))

    def _touch(self, fingerprint: str) -> None:
        with self._lock:
            if fingerprint in self._encoders:
                self._encoders.move_to_end(fingerprint)

    def _remember(self, fingerprint: str, encoder: Embedder) -> Embedder:
        """Keep ``encoder`` (the first one kept, where two threads loaded it at once); the one kept."""
        with self._lock:
            kept = self._encoders.get(fingerprint)
            if kept is not None:
                self._encoders.move_to_end(fingerprint)
                return kept
            if self.batch_queries:
                encoder = QueryBatcher(encoder)  # type: ignore[assignment]  # an Embedder to every caller
            self._encoders[fingerprint] = encoder
            self._encoders.move_to_end(fingerprint)
            keep = {fingerprint, self._previous, self._resolved.spec.fingerprint if self._resolved else None}
            for fp in list(self._encoders):
                if len(self._encoders) <= self.cache_size:
                    break
                if fp not in keep:
                    del self._encoders[fp]
            return encoder

    def _load_in_background(self, spec: EncoderSpec) -> None:
        with self._lock:
            if spec.fingerprint in self._encoders or spec.fingerprint in self._loading or self._closed:
                return
            if time.monotonic() - self._failed_loads.get(spec.fingerprint, -math.inf) < LOAD_RETRY_S:
                return

            def load() -> None:
                try:
                    self._remember(spec.fingerprint, load_encoder(spec, self.models_root, self.device))
                    with self._lock:
                        if self._resolved is not None:
                            self._resolved.at = -math.inf  # switch at the next call, not a refresh later
                except Exception as exc:  # noqa: BLE001 - retried after LOAD_RETRY_S
                    with self._lock:
                        self._failed_loads[spec.fingerprint] = time.monotonic()
                    log.warning(
                        "cannot load the model of %s (%s); answering from the version in hand, retrying in %.0f s",
                        spec.physical,
                        exc,
                        LOAD_RETRY_S,
                    )
                finally:
                    with self._lock:
                        self._loading.pop(spec.fingerprint, None)

            self._loading[spec.fingerprint] = self._background.submit(load)

    def _maybe_scan_shadows(self, now: float, live: str) -> None:
        with self._lock:
            if not self.preload_shadow or now - self._last_scan < SHADOW_SCAN_INTERVAL_S or self._closed:
                return
            self._last_scan = now
        self._background.submit(self._scan_shadows, live)

    def _scan_shadows(self, live: str) -> None:
        """Load the model of the newest other version of this collection, ahead of its cut-over."""
        try:
            newest = self.newest_other_version(live)
            if newest is not None:
                self._load_in_background(newest)
        except Exception:  # noqa: BLE001 - preloading is an optimisation; the search path stays correct
            log.debug("scanning for shadow versions of %s failed", self.collection, exc_info=True)

    def newest_other_version(self, live: str | None) -> EncoderSpec | None:
        """The highest-numbered version of this collection in the store, other than ``live``."""
        prefix = f"{self.collection}__v"
        best: EncoderSpec | None = None
        for name in self.store.list_collections():
            if not name.startswith(prefix) or name == live:
                continue
            try:
                spec = self._spec(name)
            except ReindexError:
                continue
            if spec.logical == self.collection and (best is None or (spec.version or 0) > (best.version or 0)):
                best = spec
        return best

    def encoder_for(self, spec: EncoderSpec, wait: bool = True) -> Embedder | None:
        """The cached encoder of ``spec``; loaded now when ``wait``, else started in the background."""
        with self._lock:
            encoder = self._encoders.get(spec.fingerprint)
        if encoder is not None or not wait:
            if encoder is None:
                self._load_in_background(spec)
            return encoder
        return self._encoder(spec)

    def loaded_models(self) -> list[str]:
        """Fingerprints of the encoders held now, least recently used first."""
        with self._lock:
            return list(self._encoders)

    # -- searching -------------------------------------------------------------
    def search(
        self,
        query: str | Sequence[str],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Top-k hits for a query (a list of hits) or for a list of queries (a list of such lists).

        ``mode``: ``dense`` (the version's model), ``lexical`` (its stored BM25 vectors) or ``hybrid``
        (both, fused by RRF in the store); by default hybrid where the answering version keeps a
        lexical index, else dense. Every answer comes from one version, whichever the mode.
        ``rerank``: whether the Searcher's cross-encoder (``rerank=`` when made) rescores the top
        ``rerank_top``; by default it does whenever there is one.
        """
        return self.search_with_version(query, k, filter, mode, rerank)[1]

    def search_with_version(
        self,
        query: str | Sequence[str],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> tuple[VersionInfo, list[SearchHit] | list[list[SearchHit]]]:
        """(the version that answered, its hits): says who answered even when nothing matched."""
        single = isinstance(query, str)
        queries: list[str] = [query] if isinstance(query, str) else list(query)
        _check_request(queries, k, filter)
        if mode is not None:
            check_mode(mode)
        if rerank and self.reranker is None:
            raise UsageError("this Searcher has no reranker", hint="make it with Searcher(..., rerank=PATH)")
        reranker = self.reranker if rerank is not False else None
        with self._live():
            started = time.perf_counter()
            depth = max(k, reranker.top) if reranker is not None else k
            spec, answers, mode = self._search_pinned(queries, depth, filter, mode)
            if reranker is not None:
                answers = [
                    rerank_hits(reranker, q, a, spec.text_field)[:k] for q, a in zip(queries, answers, strict=True)
                ]
            elapsed_ms = (time.perf_counter() - started) * 1000
        hits = [
            [SearchHit(h.doc_id, h.score, h.payload, spec.physical, spec.label) for h in answer] for answer in answers
        ]
        if self.mirror is not None:
            self.mirror.offer(queries, k, filter, spec, hits, elapsed_ms, mode, reranker is not None)
        return VersionInfo.of(self.collection, spec), (hits[0] if single else hits)

    def version_info(self, physical: str) -> VersionInfo:
        """What a version of this collection is (text field, metric, model): fixed for its lifetime."""
        return VersionInfo.of(self.collection, self._spec(physical))

    def lexical_for(self, spec: EncoderSpec) -> LexicalEncoder | ApplicationSparse | None:
        """The sparse query encoder of a version: its own BM25 index's (its recorded settings), else the
        application's own sparse encoder where one was given, else None."""
        with self._lock:
            if spec.physical not in self._lexical:
                stored = StoredLexical.from_params(self._params(spec.physical))
                self._lexical[spec.physical] = LexicalEncoder(stored) if stored is not None else self.app_sparse
            return self._lexical[spec.physical]

    def _params(self, physical: str) -> dict[str, Any]:
        return self.store.describe(physical).index_params

    def _search_pinned(self, queries: list[str], k: int, where: dict[str, Any] | None, mode: str | None = None):
        for attempt in range(2):
            spec, encoder = self._pinned(force=attempt > 0)
            try:
                lexical = self.lexical_for(spec)
                chosen = mode or ("hybrid" if lexical is not None else "dense")
                answers = search_version(
                    self.store, spec.physical, encoder, queries, k, where, mode=chosen, lexical=lexical
                )
                return spec, answers, chosen
            except (NotFoundError, BackendError) as exc:
                # The resolved collection was dropped or re-made under us: resolve again, once, at once.
                if attempt or not (isinstance(exc, NotFoundError) or "dimension" in str(exc).lower()):
                    raise
                with self._lock:
                    self._specs.pop(spec.physical, None)
                    self._lexical.pop(spec.physical, None)
        raise AssertionError("unreachable")

    @contextmanager
    def _live(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no live search is running (shadow work yields to live work)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop background work; close only what this Searcher opened itself."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.mirror is not None:
            self.mirror.close()
        self._background.shutdown(wait=True, cancel_futures=True)
        for thing in reversed(self._closers):
            thing.close()
        self._closers.clear()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Searcher({self.collection!r}, store={self.store_url!r})"


def _check_request(queries: list[str], k: Any, where: Any) -> None:
    if not queries:
        raise UsageError("no query given")
    for q in queries:
        if not isinstance(q, str) or not q.strip():
            raise UsageError("a query must be a non-empty string")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UsageError(f"k must be a positive integer, not {k!r}")
    if where is not None and not isinstance(where, dict):
        raise UsageError("filter must be a mapping of payload field to value")
