"""Shadow traffic: mirror a sample of live queries to the newest built shadow, off the live path.

The live answer is computed and returned first; a sampled query is then put on a
bounded queue (dropped and counted when the queue is full, never waited on). One
worker thread takes it, waits until no live search is running (shadow work yields
the CPU to live work), encodes it with the shadow's own model, searches the
shadow, and records how far the two top-k lists agree (overlap@k, rank-biased
overlap) and both latencies. Records reach the state store in batches, so that
`reindex eval COLLECTION --from-traffic` and the gate can read them.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from reindexer.encoders import EncoderSpec
from reindexer.evaluation.overlap import overlap_at_k, rbo_ext
from reindexer.rerank import rerank_hits
from reindexer.state import TrafficRecord
from reindexer.version_search import search_version

log = logging.getLogger(__name__)

FLUSH_EVERY = 50
FLUSH_SECONDS = 2.0
#: Shadow choice (state store lookup) is cached this long.
SHADOW_LOOKUP_S = 5.0
#: Longest a mirrored query waits for the live path to go idle before it runs anyway.
YIELD_TIMEOUT_S = 1.0
SHADOW_STATUSES = ("built", "verified", "evaluated")


@dataclass
class _Mirrored:
    queries: list[str]
    k: int
    where: dict[str, Any] | None
    live: EncoderSpec
    live_ids: list[list[str]]
    live_ms: float
    mode: str = "dense"
    rerank: bool = False


class ShadowMirror:
    def __init__(
        self,
        searcher: Any,
        sample: float,
        state: Any,
        record_text: bool = False,
        queue_size: int = 1000,
        seed: int | None = None,
    ):
        self.searcher = searcher
        self.sample = sample
        self.state = state
        self.record_text = record_text
        self._queue: queue.Queue[_Mirrored | None] = queue.Queue(maxsize=queue_size)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.counts = {"offered": 0, "queued": 0, "dropped": 0, "mirrored": 0, "no_shadow": 0, "failed": 0}
        self._counts_lock = threading.Lock()
        self._shadow: tuple[float, str | None] = (-1e18, None)
        self._buffer: list[TrafficRecord] = []
        self._last_flush = time.monotonic()
        self._worker = threading.Thread(target=self._run, name=f"reindex-shadow-{searcher.collection}", daemon=True)
        self._worker.start()

    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[key] += n

    # -- the live side: O(1), never blocks -------------------------------------
    def offer(
        self,
        queries: list[str],
        k: int,
        where: dict[str, Any] | None,
        live: EncoderSpec,
        hits: list[list[Any]],
        live_ms: float,
        mode: str = "dense",
        rerank: bool = False,
    ) -> None:
        with self._rng_lock:
            chosen = self._rng.random() < self.sample
        self._count("offered")
        if not chosen:
            return
        item = _Mirrored(
            queries, k, where, live, [[h.doc_id for h in answer] for answer in hits], live_ms, mode, rerank
        )
        try:
            self._queue.put_nowait(item)
            self._count("queued")
        except queue.Full:
            self._count("dropped")

    # -- the shadow side -------------------------------------------------------
    def _shadow_spec(self, live: EncoderSpec) -> EncoderSpec | None:
        """The newest version the state store calls built (verified, evaluated) other than live."""
        now = time.monotonic()
        at, physical = self._shadow
        if now - at > SHADOW_LOOKUP_S:
            physical = None
            lc = self.state.get_collection(self.searcher.store_url, self.searcher.collection)
            if lc is not None:
                ready = [v for v in self.state.versions(lc.id) if v.status in SHADOW_STATUSES]
                ready = [v for v in ready if v.physical_name != live.physical]
                physical = ready[-1].physical_name if ready else None
            self._shadow = (now, physical)
        if physical is None or physical == live.physical:
            return None
        return self.searcher._spec(physical)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                self._flush(force=True)
                continue
            if item is None:
                break
            if isinstance(item, _FlushMarker):
                self._flush(force=True)
                item.done.set()
                continue
            try:
                self._mirror(item)
            except Exception:  # noqa: BLE001 - shadow work must never take the service down
                self._count("failed")
                log.debug("mirroring a query failed", exc_info=True)
            self._flush()
        self._flush(force=True)

    def _mirror(self, item: _Mirrored) -> None:
        shadow = self._shadow_spec(item.live)
        if shadow is None:
            self._count("no_shadow")
            return
        encoder = self.searcher.encoder_for(shadow, wait=False)
        if encoder is None:  # its model is loading in the background; mirror the queries after it
            self._count("no_shadow")
            return
        # The shadow answers as live did: the same mode (a shadow without a lexical index cannot, and
        # comparing its dense answer with a live hybrid one would measure the pipelines, not the models).
        lexical = self.searcher.lexical_for(shadow)
        if item.mode != "dense" and lexical is None:
            self._count("no_shadow")
            return
        self.searcher.wait_idle(YIELD_TIMEOUT_S)
        started = time.perf_counter()
        reranker = self.searcher.reranker if item.rerank else None
        found = search_version(
            self.searcher.store,
            shadow.physical,
            encoder,
            item.queries,
            max(item.k, reranker.top) if reranker is not None else item.k,
            item.where,
            mode=item.mode,
            lexical=lexical,
        )
        if reranker is not None:  # the same second stage as live's, over the shadow's own texts
            found = [
                rerank_hits(reranker, q, hits, shadow.text_field)[: item.k]
                for q, hits in zip(item.queries, found, strict=True)
            ]
        answers = [[h.doc_id for h in hits] for hits in found]
        shadow_ms = (time.perf_counter() - started) * 1000
        n = len(item.queries)
        for text, live_ids, shadow_ids in zip(item.queries, item.live_ids, answers, strict=True):
            self._buffer.append(
                TrafficRecord(
                    store_url=self.searcher.store_url,
                    collection=self.searcher.collection,
                    live=item.live.physical,
                    shadow=shadow.physical,
                    live_model=item.live.label,
                    shadow_model=shadow.label,
                    k=item.k,
                    query_hash=hashlib.sha256(text.encode()).hexdigest(),
                    query_text=text if self.record_text else None,
                    live_ids=live_ids,
                    shadow_ids=shadow_ids,
                    overlap=overlap_at_k(live_ids, shadow_ids, item.k),
                    rbo=rbo_ext(live_ids, shadow_ids),
                    live_ms=item.live_ms / n,
                    shadow_ms=shadow_ms / n,
                )
            )
        self._count("mirrored", n)

    def _flush(self, force: bool = False) -> None:
        if not self._buffer:
            return
        if not force and len(self._buffer) < FLUSH_EVERY and time.monotonic() - self._last_flush < FLUSH_SECONDS:
            return
        batch, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        try:
            self.state.record_traffic(batch)
        except Exception:  # noqa: BLE001 - losing a batch of mirror records beats failing the service
            self._count("failed", len(batch))
            log.warning("recording %d shadow-traffic records failed", len(batch), exc_info=True)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued query is mirrored and recorded (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        done = threading.Event()
        self._queue.put(_FlushMarker(done), timeout=max(deadline - time.monotonic(), 0.1))  # type: ignore[arg-type]
        done.wait(max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        """Mirror what is queued (for a few seconds at most), record it, and stop."""
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            log.warning("shadow mirror closed with %d queries still queued", self._queue.qsize())
        self._worker.join(timeout=10)


class _FlushMarker:
    def __init__(self, done: threading.Event):
        self.done = done
