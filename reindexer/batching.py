"""Dynamic micro-batching of query encodes: concurrent searches of one model version share one encode.

A model encodes one call at a time (its encode lock), and one query per call leaves most of the
hardware idle: on two cores the query service was capped at about 23 requests a second whatever
the concurrency. ``QueryBatcher`` wraps a version's embedder: each ``embed_queries`` call joins a
queue, and one worker encodes everything queued at the moment it is free (up to ``max_batch``
texts) in one call, so under concurrency each encode serves many requests, and with one client
nothing waits (no fixed delay: a request that finds the worker idle is encoded at once).
``max_wait`` (seconds, default 0) lets the worker wait that long for more once a batch has
started, trading latency for bigger batches.

Answers are those of one-query encodes up to float rounding: the model sees each text with its
own attention mask, and a batch pads the others (sentence-transformers sorts a batch by length).
The worker is a daemon thread started on demand, one per wrapped embedder, that exits after
``idle_exit`` seconds without work, so an embedder the Searcher drops from its cache leaves nothing
running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: texts per encode when the embedder does not say its batch size
DEFAULT_MAX_BATCH = 64


class _Request:
    __slots__ = ("texts", "done", "result", "error")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class QueryBatcher:
    """An embedder whose concurrent ``embed_queries`` calls are encoded together (see the module)."""

    def __init__(self, embedder: Any, max_batch: int | None = None, max_wait: float = 0.0, idle_exit: float = 5.0):
        self.embedder = embedder
        self.max_batch = max(1, int(max_batch or getattr(embedder, "batch_size", 0) or DEFAULT_MAX_BATCH))
        self.max_wait = max(0.0, float(max_wait))
        self.idle_exit = idle_exit
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._worker: threading.Thread | None = None
        #: how many encodes ran and how many requests they served (for the benchmark and tests)
        self.encodes = 0
        self.served = 0

    def __getattr__(self, name: str) -> Any:
        # Everything but query encodes is the wrapped embedder's (its settings, document encodes, dim).
        return getattr(self.embedder, name)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        request = _Request(list(texts))
        if not request.texts:
            return self.embedder.embed_queries([])
        with self._cond:
            self._queue.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="reindex-query-batcher", daemon=True)
                self._worker.start()
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _take(self) -> list[_Request] | None:
        """The next batch: whole requests up to ``max_batch`` texts (a bigger one alone); None to exit."""
        with self._cond:
            if not self._queue and not self._cond.wait_for(lambda: bool(self._queue), timeout=self.idle_exit):
                self._worker = None  # nobody queued meanwhile (the check and this are under one lock)
                return None
            if self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                self._cond.wait_for(lambda: _size(self._queue) >= self.max_batch, timeout=deadline - time.monotonic())
            batch: list[_Request] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request.texts)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                vectors = self.embedder.embed_queries([t for r in batch for t in r.texts])
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                for r in batch:
                    r.error = exc
                    r.done.set()
                continue
            self.encodes += 1
            self.served += len(batch)
            start = 0
            for r in batch:
                r.result = vectors[start : start + len(r.texts)]
                start += len(r.texts)
                r.done.set()


def _size(queue: list[_Request]) -> int:
    return sum(len(r.texts) for r in queue)
