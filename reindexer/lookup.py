"""Finding a managed collection and one of its versions by the names users type.

Shared by the verb modules (reindexer.commands), the A/B evaluation and reconcile;
a module of its own so that none of them imports another for these look-ups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reindexer.errors import NotFoundError
from reindexer.state import IndexVersion, LogicalCollection

if TYPE_CHECKING:  # the workspace opens stores; a look-up only reads through one
    from reindexer.workspace import Workspace


def row_id(row: LogicalCollection | IndexVersion) -> int:
    """The primary key of a row read from the state store: set on every saved row (None only before the insert)."""
    if row.id is None:
        label = getattr(row, "name", None) or getattr(row, "physical_name", None)
        raise ValueError(f"{type(row).__name__} {label!r} was never saved")
    return row.id


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
    for v in ws.state.versions(row_id(lc)):
        if (wanted is not None and v.version == int(wanted)) or v.physical_name == ref:
            return v
    raise NotFoundError(f"{lc.name} has no version {ref!r}", hint=f"`reindex history {lc.name}` lists its versions")
