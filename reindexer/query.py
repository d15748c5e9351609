"""The query side: encode with the model of the version a name resolves to, then search.

Vectors of two models live in different spaces, so a query must be encoded by
the model that made the index it searches. The collection's own metadata names
that model, which is what makes an alias swap switch the query model too.
"""

from __future__ import annotations

from typing import Any

from reindexer.adapters.base import Hit
from reindexer.embedding import Embedder
from reindexer.errors import NotFoundError
from reindexer.model_registry import embedder_for
from reindexer.workspace import Workspace


def encoder_for(ws: Workspace, name: str) -> tuple[str, Embedder]:
    """(physical collection, query encoder) for an alias or physical collection ``name``."""
    physical = ws.store.resolve(name)
    if physical is None:
        raise NotFoundError(f"unknown collection {name!r} in {ws.store_url}")
    fingerprint = ws.store.describe(physical).metadata.get("reindex.fingerprint")
    if not fingerprint:
        raise NotFoundError(
            f"{physical} carries no model tag", hint=f"tag it with `reindex adopt {name} --model PATH`"
        )
    model = ws.state.get_model(fingerprint)
    if model is None:
        raise NotFoundError(f"{physical} was made by model {fingerprint[:12]}, which this state store does not know")
    return physical, embedder_for(model, device=ws.config.device, batch_size=ws.batch_size)


def search(
    ws: Workspace, name: str, queries: list[str], k: int = 10, where: dict[str, Any] | None = None
) -> list[list[Hit]]:
    """Top-k hits for each query against ``name``, encoded by that index's own model."""
    physical, encoder = encoder_for(ws, name)
    vectors = encoder.embed_queries(queries)
    return [ws.store.search(physical, v.tolist(), k, where) for v in vectors]
