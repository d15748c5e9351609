"""The one search path of the tool: one version's encoder against that same physical collection.

The Searcher, `reindex eval` and shadow traffic all call it, so an application sees
exactly the rankings the evaluation measured. Its own module so that the Searcher
and the shadow mirror it owns do not import each other for it.
"""

from __future__ import annotations

from typing import Any

from reindexer.adapters.base import Hit, VectorStore
from reindexer.embedding import Embedder


def search_version(
    store: VectorStore,
    physical: str,
    encoder: Embedder,
    queries: list[str],
    k: int,
    where: dict[str, Any] | None = None,
) -> list[list[Hit]]:
    """Encode ``queries`` with one version's encoder and search the collection ``physical``."""
    vectors = encoder.embed_queries(queries)
    return [store.search(physical, v.tolist(), k, where) for v in vectors]
