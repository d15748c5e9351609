"""One-shot queries for library callers and tests: the Searcher, pinned to the alias at call time.

Long-lived applications should hold a ``reindexer.Searcher`` instead, which
follows cut-overs and keeps models warm.
"""

from __future__ import annotations

from typing import Any, cast

from reindexer.searcher import Searcher, SearchHit
from reindexer.workspace import Workspace


def search(
    ws: Workspace, name: str, queries: list[str], k: int = 10, where: dict[str, Any] | None = None
) -> list[list[SearchHit]]:
    """Top-k hits for each query against ``name``, encoded by that index's own model."""
    with Searcher(name, workspace=ws, refresh=0, preload_shadow=False) as searcher:
        # a list of queries gets a list of hit lists
        return cast("list[list[SearchHit]]", searcher.search(list(queries), k=k, filter=where))
