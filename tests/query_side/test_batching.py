"""Dynamic micro-batching (issue 26, point 5): concurrent query encodes of one version share one encode,
and every request gets the answer a one-query encode gives it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reindexer import Searcher
from reindexer.batching import QueryBatcher
from reindexer.embedding import Embedder
from tests.plugins.versions import live_is

N = 24


@pytest.fixture(scope="module")
def minilm_embedder(minilm_path):
    return Embedder(minilm_path, device="cpu")


class HeldFirst:
    """A real embedder whose first encode waits until ``waiting`` more requests are queued behind it,
    so the test decides what a batch holds instead of the machine's scheduling."""

    def __init__(self, embedder, waiting: int):
        self.embedder, self.waiting, self.calls = embedder, waiting, []
        self.batcher: QueryBatcher | None = None
        self.entered = threading.Event()

    def embed_queries(self, texts):
        if not self.calls:
            self.entered.set()
            deadline = time.monotonic() + 60
            while len(self.batcher._queue) < self.waiting and time.monotonic() < deadline:
                time.sleep(0.005)
        self.calls.append(list(texts))
        if "boom" in texts:
            raise ValueError("the model cannot encode 'boom'")
        return self.embedder.embed_queries(texts)


def _concurrently(fn, items, held: HeldFirst | None = None):
    """``fn`` over ``items`` from one thread each, all at once; with ``held``, the first item alone
    first (its encode then waits for the others to queue)."""
    barrier = threading.Barrier(len(items) - (1 if held else 0))

    def call(item):
        barrier.wait()
        return fn(item)

    with ThreadPoolExecutor(len(items)) as pool:
        first = None
        if held is not None:
            first = pool.submit(fn, items[0])
            assert held.entered.wait(60)
            items = items[1:]
        rest = list(pool.map(call, items))
        return ([first.result()] if first is not None else []) + rest


def test_concurrent_queries_share_encodes_and_get_their_own_vectors(minilm_embedder, demo_corpus):
    queries = list(demo_corpus.queries.values())[:N]
    alone = np.stack([minilm_embedder.embed_queries([q])[0] for q in queries])
    held = HeldFirst(minilm_embedder, waiting=N - 1)
    held.batcher = batcher = QueryBatcher(held, max_batch=64)
    got = np.stack([v[0] for v in _concurrently(lambda q: batcher.embed_queries([q]), queries, held)])
    # the first encode held one query; every other one was queued behind it and went in one batch
    assert [len(c) for c in held.calls] == [1, N - 1]
    assert (batcher.encodes, batcher.served) == (2, N)
    assert np.allclose(got, alone, atol=2e-6)  # each its own row, equal to its one-query encode
    # a request of several texts keeps them together and in order
    assert np.allclose(batcher.embed_queries(queries[:3]), alone[:3], atol=2e-6)


def test_max_batch_splits_what_is_queued(minilm_embedder, demo_corpus):
    queries = list(demo_corpus.queries.values())[:N]
    held = HeldFirst(minilm_embedder, waiting=N - 1)
    held.batcher = batcher = QueryBatcher(held, max_batch=8)
    _concurrently(lambda q: batcher.embed_queries([q]), queries, held)
    assert [len(c) for c in held.calls] == [1, 8, 8, 7]


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_runs(minilm_embedder):
    texts = ["first", "boom", "third", "fourth"]
    held = HeldFirst(minilm_embedder, waiting=3)
    held.batcher = batcher = QueryBatcher(held)

    def call(text):
        try:
            return batcher.embed_queries([text]).shape
        except ValueError as exc:
            return str(exc)

    results = _concurrently(call, texts, held)
    assert results[0] == (1, 384)  # the first went alone
    assert results[1:] == ["the model cannot encode 'boom'"] * 3  # boom's batch, every caller of it
    assert batcher.embed_queries(["after"]).shape == (1, 384)


def test_the_worker_leaves_when_idle_and_comes_back(minilm_embedder):
    batcher = QueryBatcher(minilm_embedder, idle_exit=0.05)
    batcher.embed_queries(["a query"])
    deadline = time.monotonic() + 10
    while batcher._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._worker is None
    assert batcher.embed_queries(["another"]).shape == (1, 384)
    assert batcher.settings is minilm_embedder.settings  # the embedder's own attributes pass through


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_searcher_answers_under_concurrency_equal_its_answers_one_at_a_time(two_versions, demo_corpus):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    queries = list(demo_corpus.queries.values())[:32]
    with Searcher("docs", workspace=ws, batch_queries=False) as plain:
        alone = [plain.search(q, k=5) for q in queries]
    with Searcher("docs", workspace=ws) as batched:
        together = _concurrently(lambda q: batched.search(q, k=5), queries)
        encoders = list(batched._encoders.values())
        assert all(isinstance(e, QueryBatcher) for e in encoders)
        assert sum(e.served for e in encoders) == len(queries) > sum(e.encodes for e in encoders)
    for one, many in zip(alone, together, strict=True):
        assert [h.doc_id for h in many] == [h.doc_id for h in one]
        assert [h.score for h in many] == pytest.approx([h.score for h in one], abs=1e-5)
        assert {h.version for h in many} == {"docs__v1"}
