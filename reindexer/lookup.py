"""Finding a managed collection and one of its versions by the names users type.

Shared by the command layer, sync and the A/B evaluation; a module of its own so
that none of them imports another for these two look-ups.
"""

from __future__ import annotations

from reindexer.errors import NotFoundError
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.workspace import Workspace


def managed_collection(ws: Workspace, collection: str) -> LogicalCollection:
    """The logical collection ``collection`` of this store, or NotFoundError naming `reindex status`."""
    lc = ws.state.get_collection(ws.store_url, collection)
    if lc is None:
        raise NotFoundError(
            f"unknown collection {collection!r} in {ws.store_url}",
            hint="`reindex status` lists the collections reindexer manages",
        )
    return lc


def find_version(ws: Workspace, lc: LogicalCollection, ref: str) -> IndexVersion:
    """A version by number ("3", "v3") or physical name ("docs__v3")."""
    wanted = ref.lower().lstrip("v") if ref.lower().lstrip("v").isdigit() else None
    for v in ws.state.versions(lc.id):
        if (wanted is not None and v.version == int(wanted)) or v.physical_name == ref:
            return v
    raise NotFoundError(f"{lc.name} has no version {ref!r}", hint=f"`reindex history {lc.name}` lists its versions")
