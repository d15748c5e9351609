"""The last catch-up before an alias moves: what applications wrote into the live version reaches the target.

Applications keep writing through the alias while a shadow is built, evaluated
and waits for its cut-over (a LangChain ``add_texts`` with no ids gets Milvus
auto-ids or generated UUIDs). A build's catch-up passes and ``sync`` bring
those points into the shadow, but an alias moved later (``reindex cutover``
of a shadow built earlier, an apply whose gate took minutes) would leave out
what arrived since, and the application would lose it. So right before every
cut-over the target is synced once more from the live version's payload, with
the target's own model: every point, under its own id, exactly once (the
ledger skips what the target already holds; deleted points are deleted).

Only targets built from the live payload are caught up this way; a version
built from files or SQL follows its source through ``sync``.
"""

from __future__ import annotations

from reindexer.executor import SyncStats, sync_into, version_text_field
from reindexer.schema import carry_other_vectors
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.sync import default_source
from reindexer.workspace import Workspace


def catch_up_from_live(
    ws: Workspace,
    lc: LogicalCollection,
    target: IndexVersion,
    live: IndexVersion | None,
    lease: object | None = None,
    text_field: str | None = None,
) -> SyncStats:
    """Sync ``target`` from ``live``'s payload as it is now, embedding with ``target``'s model.

    ``text_field`` defaults to the text field ``target`` was built with. Nothing is done
    when there is no other live version, or when ``target`` was built from another source.
    """
    if live is None or live.id == target.id:
        return SyncStats()
    if text_field is None:
        if default_source(ws, lc, target).kind != "payload":
            return SyncStats()
        text_field = version_text_field(ws, lc, target)
    model = ws.state.model_of(target)
    source = open_source(
        SourceSpec(kind="payload", text_field=text_field),
        store=ws.store,
        collection=live.physical_name,
        batch_size=ws.batch_size,
    )
    try:
        stats = sync_into(ws, target, model, source, lease=lease, label="catching up")
    finally:
        source.close()
    # A re-embedded point got only the vector the tool makes, and an application may have changed a
    # point's other vectors alone: they come from live, every one (a no-op where there are none).
    carry_other_vectors(ws.store, live.physical_name, target.physical_name, ws.batch_size)
    return stats
