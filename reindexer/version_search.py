"""The one search path of the tool: one version's encoder against that same physical collection.

The Searcher, `reindex eval` and shadow traffic all call it, so an application sees
exactly the rankings the evaluation measured. Its own module so that the Searcher
and the shadow mirror it owns do not import each other for it.
"""

from __future__ import annotations

from typing import Any

from reindexer.adapters.base import Hit, VectorStore
from reindexer.embedding import Embedder
from reindexer.errors import UsageError
from reindexer.evaluation.pipelines import Fusion
from reindexer.lexical import ApplicationSparse, LexicalEncoder

MODES = ("dense", "lexical", "hybrid")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    return mode


def search_version(
    store: VectorStore,
    physical: str,
    encoder: Embedder,
    queries: list[str],
    k: int,
    where: dict[str, Any] | None = None,
    *,
    mode: str = "dense",
    lexical: LexicalEncoder | ApplicationSparse | None = None,
    fusion: Fusion | None = None,
) -> list[list[Hit]]:
    """Search the collection ``physical`` with one version's encoders: its model (``dense``), its stored
    BM25 vectors (``lexical``, queries made by ``lexical``, the version's recorded settings) or both,
    fused in the store by reciprocal rank (``hybrid``, ``fusion``'s k over its top ``prefetch``)."""
    check_mode(mode)
    if mode == "dense":
        vectors = encoder.embed_queries(queries)
        return [store.search(physical, v.tolist(), k, where) for v in vectors]
    if lexical is None:
        raise UsageError(
            f"{physical} keeps no lexical index, so it cannot answer in {mode} mode",
            hint="plan the collection with --lexical bm25, or search in dense mode",
        )
    sparse, name = lexical.queries(queries), lexical.stored.vector
    if mode == "lexical":
        return [store.search_lexical(physical, name, q, k, where) for q in sparse]
    fusion = fusion or Fusion()
    vectors = encoder.embed_queries(queries)
    return [
        store.search_hybrid(physical, v.tolist(), name, q, k, where, rrf_k=fusion.k, prefetch=max(k, fusion.prefetch))
        for v, q in zip(vectors, sparse, strict=True)
    ]
