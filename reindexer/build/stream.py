"""The streaming pipeline that carries a sync or a build out: read -> batch -> embed -> write.

- **read**, on its own thread: iterate the source (parsing), hash each document, skip
  repeated ids, and diff a chunk at a time against the ledger; unchanged documents never
  leave this thread. The ids seen go to an IdSet (reindexer.idset), on disk beyond 200,000.
- **batch**: documents to embed fill a window of many batches, sorted there by token length
  so that each encode call pads little (sentence-transformers sorts only within one call).
- **embed**, on the calling thread (where a GPU context lives): one encode call per batch. Documents
  the plan's estimate embedded in this process are taken from it, not encoded again, and a
  version's first vectors are kept for its verification (reindexer.vector_memo).
- **write**, on ``store.capabilities.write_concurrency`` threads: each window goes back to
  source order and is written in batches, several in flight; a batch's ledger rows are
  recorded after its upsert returns, one recorder at a time, so the ledger stays the
  checkpoint and a crash anywhere resumes by skipping what is recorded.

Bounded queues between the stages keep memory flat whatever the size of the corpus; the
documents deleted from the source are found by paging the ledger against the ids seen.

This is the local executor (``--executor local``, the default); reindexer.raydata is the Ray one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.embedding import Embedder
from reindexer.idset import IdSet
from reindexer.lexical import LexicalEncoder, StoredLexical
from reindexer.sources.base import Document
from reindexer.state import IndexVersion, ModelVersion, Run
from reindexer.state.models import saved_id
from reindexer.vector_memo import Taken, memos_of, note_reused, rate_key
from reindexer.workspace import Workspace


def store_points(
    docs: list[Document], vectors: np.ndarray, model_short: str, lexical: LexicalEncoder | None = None
) -> list[Point]:
    """The points a build writes: each document's payload, tagged with the model that embedded it, and
    where the version keeps a lexical index, the text's BM25 sparse vector made from the same text."""
    points = [
        Point(doc_id=d.doc_id, vector=v.tolist(), payload={**d.payload, MODEL_KEY: model_short})
        for d, v in zip(docs, vectors, strict=True)
    ]
    if lexical is not None:
        name = lexical.stored.vector
        for point, sparse in zip(points, lexical.documents([d.text for d in docs]), strict=True):
            point.other_vectors = {**point.other_vectors, name: sparse}
    return points


def memo_owner(ws: Workspace, version: IndexVersion) -> tuple[str, str]:
    """Whose vectors a model's ``built`` memo holds (reindexer.vector_memo): one version of one store."""
    return (ws.store_url, version.physical_name)


def lexical_encoder(version: IndexVersion) -> LexicalEncoder | None:
    """The version's BM25 encoder, or None where it keeps no lexical index."""
    stored = StoredLexical.from_params(version.index_params)
    return LexicalEncoder(stored) if stored is not None else None


#: documents per ledger lookup (one query) and per item on the reader's queue
READ_CHUNK = 1000
#: chunks the reader may run ahead of the embedder
READ_AHEAD = 4
#: encode batches per length-sorted window
WINDOW_BATCHES = 16


@dataclass
class _Chunk:
    """What the reader hands on for one chunk of the source."""

    todo: list[tuple[Document, str]]  # (document, content hash) to embed
    seen: int
    unchanged: int


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


@dataclass
class PipelineResult:
    seen: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    embed_seconds: float = 0.0


class Pipeline:
    """One pass of a source into one index version; ``run`` returns what it did."""

    def __init__(
        self,
        ws: Workspace,
        version: IndexVersion,
        model: ModelVersion,
        encoder: Callable[[], Embedder],
        run: Run | None = None,
        lease: object | None = None,
        advance: Callable[[int], None] = lambda n: None,
    ):
        self.ws, self.version, self.model = ws, version, model
        self.encoder = encoder
        self.run_row, self.lease, self.advance = run, lease, advance
        self.write_batch = ws.batch_size
        self.writers = max(1, getattr(ws.store.capabilities, "write_concurrency", 1))
        self.result = PipelineResult()
        self._record_lock = threading.Lock()
        self._in_flight: deque[Future] = deque()
        self._ledger_hits = 0
        self.lexical = lexical_encoder(version)
        self._memo_owner = memo_owner(ws, version)

    # -- the pass -----------------------------------------------------------
    def run(self, source: Iterable[Document], delete_missing: bool = True, seen: IdSet | None = None) -> PipelineResult:
        """One pass; the ids it met go to ``seen``, which the caller keeps and closes, else to a set of its own."""
        ledger_before = self.ws.state.ledger_count(saved_id(self.version))
        owned = seen is None
        if seen is None:
            seen = IdSet()
        try:
            with ThreadPoolExecutor(self.writers, thread_name_prefix="reindex-writer") as pool:
                window: list[tuple[Document, str]] = []
                for chunk in self._read(source, seen):
                    self.result.seen += chunk.seen
                    self.result.unchanged += chunk.unchanged
                    self.advance(chunk.unchanged)
                    window.extend(chunk.todo)
                    size = self._window_size()
                    while len(window) >= size:
                        self._embed_and_write(window[:size], pool)
                        window = window[size:]
                if window:
                    self._embed_and_write(window, pool)
                while self._in_flight:
                    self._in_flight.popleft().result()
            # Every ledger id met again means none was deleted: the common case skips the scan.
            if delete_missing and self._ledger_hits < ledger_before:
                self._delete_missing(seen)
            if self.result.embedded or self.result.deleted:
                self.ws.store.finish_writes(self.version.physical_name)
        finally:
            if owned:
                seen.close()
        return self.result

    # -- read ---------------------------------------------------------------
    def _read(self, source: Iterable[Document], seen: IdSet) -> Iterator[_Chunk]:
        """The reader thread's chunks, as they come; its error is raised here."""
        out: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        stop = threading.Event()
        reader = threading.Thread(
            target=self._reader, args=(source, seen, out, stop), name="reindex-reader", daemon=True
        )
        reader.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            stop.set()
            reader.join()

    def _reader(self, source: Iterable[Document], seen: IdSet, out: queue.Queue, stop: threading.Event) -> None:
        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        # A source that records its ids (and refuses repeats) fills ``seen`` itself: one id set
        # per pass instead of the source's and this one.
        iter_into = getattr(source, "iter_into", None)
        docs, check = (iter_into(seen), None) if iter_into is not None else (source, seen)
        try:
            buffer: list[Document] = []
            for doc in docs:
                buffer.append(doc)
                if len(buffer) >= READ_CHUNK:
                    if not put(self._diff(buffer, check)):
                        return
                    buffer = []
            if buffer and not put(self._diff(buffer, check)):
                return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            put(_Failed(exc))

    def _diff(self, docs: list[Document], seen: IdSet | None) -> _Chunk:
        """The chunk's documents to embed; ``seen`` is None where the source already recorded their ids."""
        if seen is None:
            fresh = docs
        else:
            first: dict[str, Document] = {}
            for d in docs:
                first.setdefault(d.doc_id, d)  # within a chunk, the first of a repeated id counts
            repeats = seen.add_new(list(first))
            fresh = [d for i, d in first.items() if i not in repeats]
        known = self.ws.state.ledger_hashes(saved_id(self.version), [d.doc_id for d in fresh])
        self._ledger_hits += len(known)
        todo = []
        for d in fresh:
            h = d.content_hash
            if known.get(d.doc_id) != h:
                todo.append((d, h))
        return _Chunk(todo=todo, seen=len(fresh), unchanged=len(fresh) - len(todo))

    # -- batch and embed ----------------------------------------------------
    def _window_size(self) -> int:
        return self._encode_batch() * WINDOW_BATCHES

    def _encode_batch(self) -> int:
        # The embedder's batch once it is loaded; before (no load for a no-op), the configured encode
        # batch, else the write batch.
        return getattr(self, "_batch", None) or self.ws.embed_batch_size or self.write_batch

    def _embed_and_write(self, window: list[tuple[Document, str]], pool: ThreadPoolExecutor) -> None:
        embedder = self.encoder()
        self._batch = batch = embedder.batch_size
        texts = [d.text for d, _ in window]
        memos = memos_of(embedder)
        # The plan's timed sample, embedded in this process moments ago, is taken rather than encoded
        # again; this version's first vectors are kept for its verification (reindexer.vector_memo).
        taken = memos.sample.take(texts) if memos is not None else Taken()
        reused = taken.rows
        if reused:  # the rate this build records is that of encoding them here (reindexer.estimate.record_run)
            note_reused(rate_key(self.model.fingerprint, embedder.device, self.ws.store_url), taken.seconds)
        if memos is not None and memos.built.owner != self._memo_owner:
            memos.built.clear(self._memo_owner)
        todo = [i for i in range(len(window)) if i not in reused]
        # The tokenizer's length, not characters (sentence-transformers' own key): on the demo abstracts
        # in batches of 64, a window sorted by characters still pads 15% of its slots, by tokens 2%
        # (docs/benchmarks.md); tokenizing costs a fraction of a percent of the encode.
        lengths = embedder.token_lengths([texts[i] for i in todo]) if todo else []
        order = [todo[j] for j in sorted(range(len(todo)), key=lengths.__getitem__)]
        vectors: np.ndarray | None = None
        if reused:
            vectors = np.empty((len(window), next(iter(reused.values())).shape[0]), dtype=np.float32)
            for i, row in reused.items():
                vectors[i] = row
            if memos is not None:
                memos.built.keep([texts[i] for i in reused], vectors[list(reused)])
            self.result.embedded += len(reused)
            self.advance(len(reused))
        for start in range(0, len(order), batch):
            part = order[start : start + batch]
            part_texts = [texts[i] for i in part]
            began = time.perf_counter()
            got = embedder.embed_documents(part_texts)
            self.result.embed_seconds += time.perf_counter() - began
            if vectors is None:
                vectors = np.empty((len(window), got.shape[1]), dtype=np.float32)
            vectors[part] = got
            if memos is not None:
                memos.built.keep(part_texts, got)
            self.result.embedded += len(part)
            self.advance(len(part))
        assert vectors is not None
        for start in range(0, len(window), self.write_batch):
            self._submit(pool, window[start : start + self.write_batch], vectors[start : start + self.write_batch])

    # -- write --------------------------------------------------------------
    def _submit(self, pool: ThreadPoolExecutor, docs: list[tuple[Document, str]], vectors: np.ndarray) -> None:
        # Room for a whole window beside the writers' own: the embedder waits only when writes fall behind.
        while len(self._in_flight) >= WINDOW_BATCHES + self.writers:
            self._in_flight.popleft().result()
        self._in_flight.append(pool.submit(self._write, docs, vectors))

    def _write(self, docs: list[tuple[Document, str]], vectors: np.ndarray) -> None:
        short = self.model.short
        points = store_points([d for d, _ in docs], vectors, short, self.lexical)
        if self.lease is not None:
            # Renewed before the store write, not after: a holder whose lease was taken over (it could
            # not reach the state database past the TTL) stops here, before touching the store.
            self.ws.renew(self.lease)
        self.ws.store.upsert(self.version.physical_name, points)
        with self._record_lock:
            self.ws.state.record_batch(
                saved_id(self.version),
                self.model.fingerprint,
                [(d.doc_id, h) for d, h in docs],
                run_id=self.run_row.id if self.run_row else None,
                checkpoint={"last_doc_id": docs[-1][0].doc_id},
                embedded=len(docs),
            )

    # -- delete -------------------------------------------------------------
    def _delete_missing(self, seen: IdSet) -> None:
        gone: list[str] = []
        for page in self.ws.state.ledger_id_pages(saved_id(self.version)):
            gone.extend(seen.missing(page))
            while len(gone) >= self.write_batch:
                self._delete(gone[: self.write_batch])
                gone = gone[self.write_batch :]
        if gone:
            self._delete(gone)

    def _delete(self, ids: list[str]) -> None:
        self.ws.store.delete(self.version.physical_name, ids)
        self.ws.state.record_batch(
            saved_id(self.version),
            self.model.fingerprint,
            [],
            deleted=ids,
            run_id=self.run_row.id if self.run_row else None,
        )
        self.result.deleted += len(ids)
