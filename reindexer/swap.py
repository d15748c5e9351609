"""The alias swap: point a logical name at another index version in one atomic step, and record it.

A swap changes the store (the alias) and the state (who is live, retired, previous) in two
systems that share no transaction. So the intent is written first, the alias moved, then every
status change and the audit event committed at once, clearing the intent. A crash in between
leaves the intent behind, and the next command's reconciliation (reindexer.reconcile, below this
module) completes the swap where the alias moved, or clears the intent where it did not.

Deciding which version to swap to, and catching it up first, is the verbs' job
(reindexer.commands, reindexer.build.catchup), not this module's.
"""

from __future__ import annotations

from typing import Any

from reindexer.errors import ConflictError, NotFoundError
from reindexer.killpoints import kill_point
from reindexer.reconcile import liveness_changes, new_intent, pending_key
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.state.models import saved_id, utcnow
from reindexer.workspace import Workspace


def swap_alias(
    ws: Workspace,
    lc: LogicalCollection,
    target: IndexVersion,
    current: IndexVersion | None,
    set_previous: bool = True,
    action: str = "cutover",
    verb: str | None = None,
    audit: dict[str, Any] | None = None,
    plan_fingerprint: str | None = None,
) -> IndexVersion:
    """Point the logical name at ``target`` in one atomic step and record who is live.

    The intent is recorded first and the result (statuses, ``previous_id``, the
    ``action`` audit event) in one transaction after the swap, which also clears
    the intent; a crash in between is completed by the next command's
    reconciliation (reindexer.reconcile).
    """
    store = ws.store
    name = lc.name
    if store.collection_exists(name):
        raise ConflictError(
            f"{name!r} is a physical collection, so no alias can take its name",
            hint=f"`reindex migrate {name}` moves it behind an alias first (a copy, no re-embedding)",
        )
    if not store.collection_exists(target.physical_name):
        raise NotFoundError(f"index version v{target.version} ({target.physical_name}) is not in the store")
    detail = (
        audit
        if audit is not None
        else {"to": target.physical_name, "previous": current.physical_name if current else None}
    )
    # The application's next insert without ids must not get the key of a point the target holds.
    store.advance_generated_ids(target.physical_name)
    key = pending_key(ws.store_url, name)
    ws.state.set_pending(
        key, new_intent(action, verb or action, target, current, set_previous, detail, plan_fingerprint)
    )
    kill_point("before-alias-swap")
    store.set_alias(name, target.physical_name)
    kill_point("after-alias-swap")
    changes, drops = liveness_changes(
        ws.state.versions(saved_id(lc)),
        target,
        current,
        action,
        set_previous,
        store.count(target.physical_name),
        utcnow(),
    )
    rows = ws.state.transition(changes, [(action, name, "ok", plan_fingerprint, detail)], drops, clear_pending=key)
    return rows[saved_id(target)]
