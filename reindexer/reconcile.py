"""The store is the truth, the state is its record: reconcile the two before acting.

Which version of a logical collection is live is what the store's alias says.
The state store records it (statuses, ``live_since``, ``previous_id``, the audit
log), but a process can die between the step that changes the store and the
write that records it. Every command that reads or changes liveness therefore
calls one function here first:

- ``reconcile(ws, lc, by)`` for a command that holds the collection's lease and
  may change things (apply, cutover, rollback, sync, verify, gc, migrate). It
  may write the store once: to re-create the alias that an interrupted
  ``migrate`` dropped the name for, because while it is missing applications
  find nothing.
- ``reconcile_readonly(ws, lc, by)`` for a command that only reads (status,
  history, plan, eval). It never writes the store. It records repairs in the
  state when it can take the lease at once (a lease left by a killed process is
  taken over); while a running command holds it, it only reports, and the
  returned ``view`` shows the versions as the store has them.

Every recorded repair is one transaction with its audit events: the event of the
interrupted step itself (``cutover``, ``rollback``, ``migrate``, marked
``completed_by``) and one ``reconcile`` event listing what was repaired.

To tell an interrupted cut-over from a rollback (they differ in ``previous_id``),
every alias change first records its *intent* in the state (a ``pending:`` row:
action, from, to, the audit detail); the write that records the result removes it
in the same transaction. An intent whose alias never moved was interrupted
before the swap and is cleared; an alias that moved with no intent to explain it
(moved by hand) is adopted as a cut-over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reindexer.errors import LeaseHeldError
from reindexer.lookup import row_id
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.state.models import aware, iso, utcnow

log = logging.getLogger(__name__)

VERBS = {"cutover": "cut-over", "rollback": "rollback", "migrate": "migrate"}


def pending_key(store_url: str, collection: str) -> str:
    return f"pending:{store_url}#{collection}"


def new_intent(
    action: str,
    verb: str,
    target: IndexVersion,
    source: IndexVersion | None,
    set_previous: bool,
    audit: dict[str, Any],
    plan_fingerprint: str | None = None,
) -> dict[str, Any]:
    """What an alias change is about to do, recorded before it touches the store."""
    from reindexer.state.leases import this_holder

    return {
        "action": action,
        "verb": verb,
        "to": target.id,
        "from": source.id if source else None,
        "set_previous": set_previous,
        "audit": audit,
        "plan_fingerprint": plan_fingerprint,
        "at": iso(utcnow()),
        "by": this_holder(),
    }


def liveness_changes(
    versions: list[IndexVersion],
    target: IndexVersion,
    source: IndexVersion | None,
    action: str,
    set_previous: bool,
    count: int | None,
    now: datetime,
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The state writes that record ``target`` as the one live version: (fields by version id, ledgers to drop).

    Every other version recorded live is retired (the alias points at one). A
    cut-over remembers the version it replaced in ``previous_id``, for rollback;
    a rollback does not; a migrate drops its source, whose collection is gone.
    """
    changes: dict[int, dict[str, Any]] = {}
    drops: list[int] = []
    for v in versions:
        if v.status == "live" and v.id != target.id:
            changes[row_id(v)] = {"status": "retired", "retired_at": now}
    if action == "migrate" and source is not None and source.id != target.id:
        changes[row_id(source)] = {"status": "dropped", "retired_at": now}
        drops.append(row_id(source))
    fields: dict[str, Any] = {"status": "live", "live_since": now, "retired_at": None}
    if count is not None:
        fields["point_count"] = count
    if set_previous and source is not None and source.id != target.id:
        fields["previous_id"] = source.id
    changes[row_id(target)] = fields
    return changes, drops


@dataclass
class Repair:
    """One disagreement between the store and the state, and what was done about it."""

    kind: str  # completed | interrupted | adopted-alias | no-alias | dropped | alias-restored | unresolved
    message: str
    version: int | None = None
    action: str | None = None  # the interrupted step (cutover, rollback, migrate) this repair is about
    recorded: bool = True  # False: reported only (the lease is held, it needs a store write, or it cannot be repaired)
    detail: dict[str, Any] = field(default_factory=dict)  # the interrupted step's own record (to, previous, ...)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Reconciliation:
    collection: str
    repairs: list[Repair] = field(default_factory=list)
    changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    drop_ledgers: list[int] = field(default_factory=list)
    audits: list[tuple[str, str | None, str, str | None, dict[str, Any]]] = field(default_factory=list)
    clear_pending: bool = False
    restore_alias: str | None = None  # the physical collection the missing alias must point at (a store write)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # webhook events the crash swallowed

    @property
    def needed(self) -> bool:
        return any(r.recorded for r in self.repairs) or self.clear_pending

    def completed(self, *actions: str) -> Repair | None:
        """The repair that completed an interrupted step of one of ``actions``, if any."""
        return next(
            (
                r
                for r in self.repairs
                if r.kind in ("completed", "alias-restored") and r.recorded and r.action in actions
            ),
            None,
        )

    def view(self, versions: list[IndexVersion]) -> list[IndexVersion]:
        """``versions`` as they are once the changes are applied (for a repair that was not recorded)."""
        out = []
        for v in versions:
            if v.id in self.changes:
                v = IndexVersion.model_validate({**v.model_dump(), **self.changes[v.id]})
            out.append(v)
        return out

    def messages(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.repairs]


def examine(ws, lc: LogicalCollection, store_writes: bool = True) -> Reconciliation:
    """Compare the store's aliases and collections with the state; say what repairs them. Writes nothing."""
    store, state, name = ws.store, ws.state, lc.name
    rec = Reconciliation(name)
    intent = state.get_pending(pending_key(ws.store_url, name))
    versions = state.versions(lc.id)
    by_id = {v.id: v for v in versions}
    by_physical = {v.physical_name: v for v in versions}
    collections = set(store.list_collections())
    target = store.list_aliases().get(name) or (name if name in collections else None)
    now = utcnow()
    live_rows = sorted((v for v in versions if v.status == "live"), key=lambda v: aware(v.live_since or v.updated_at))

    # A migrate that dropped the original and died before the alias: the name resolves to nothing.
    if intent and intent["action"] == "migrate" and target is None:
        to = by_id.get(intent["to"])
        if to is not None and to.physical_name in collections:
            if not store_writes:
                rec.repairs.append(_migrate_gap_unresolved(name, to))
                return _gc_repairs(rec, versions, collections, now)
            rec.restore_alias = target = to.physical_name
            rec.repairs.append(_migrate_gap_closed(name, to, intent, now))

    found = by_physical.get(target) if target is not None else None
    if target is not None and found is None:
        rec.repairs.append(
            Repair(
                "unresolved",
                f"{name} points at {target!r}, which the state store does not know: nothing repaired",
                recorded=False,
            )
        )
    elif found is not None:
        _match_alias(ws, rec, lc, intent, found, live_rows, by_id, versions, now)
    else:  # the name resolves to nothing, and no migrate explains it
        _match_no_alias(rec, lc, intent, live_rows, by_id, now)
    return _gc_repairs(rec, versions, collections, now)


def _migrate_gap_closed(name: str, to: IndexVersion, intent: dict[str, Any], now: datetime) -> Repair:
    """The alias an interrupted migrate did not make, made now; the audit gets how long the name was missing."""
    gap = (now - aware(datetime.fromisoformat(intent["at"].rstrip("Z")))).total_seconds() * 1000
    intent["audit"]["gap_ms"] = round(gap, 1)
    return Repair(
        "alias-restored",
        f"an interrupted migrate had dropped {name} and not yet made the alias: "
        f"{name} now points at {to.physical_name} (the name was missing for about {gap / 1000:.1f} s)",
        to.version,
        "migrate",
        detail=intent["audit"],
    )


def _migrate_gap_unresolved(name: str, to: IndexVersion) -> Repair:
    return Repair(
        "unresolved",
        f"{name} resolves to nothing: a migrate was interrupted between dropping {name} "
        f"and making the alias to {to.physical_name}; `reindex migrate {name}` (or any command that "
        "changes it) makes the alias",
        to.version,
        "migrate",
        recorded=False,
    )


def _match_alias(ws, rec: Reconciliation, lc, intent, found, live_rows, by_id, versions, now) -> None:
    """The name points at a known version: finish the intended swap, or record who the alias says is live."""
    others = [v for v in live_rows if v.id != found.id]
    intended = intent is not None and intent.get("to") == found.id
    source = by_id.get(intent["from"]) if intended and intent.get("from") is not None else None
    unfinished = (
        found.status != "live"
        or bool(others)
        or (intended and intent["action"] == "migrate" and source is not None and source.status != "dropped")
    )
    if intended and unfinished:
        _complete(ws, rec, lc, intent, found, source, versions, now)
    elif unfinished:
        _adopt_alias(ws, rec, lc, found, others, versions, now)
    if intent is not None and not intended:
        _interrupted(rec, lc, intent, by_id)
    rec.clear_pending = intent is not None


def _match_no_alias(rec: Reconciliation, lc, intent, live_rows, by_id, now) -> None:
    """The name resolves to nothing: every version recorded live is recorded retired."""
    name = lc.name
    if intent is not None:
        _interrupted(rec, lc, intent, by_id)
        rec.clear_pending = True
    for v in live_rows:
        rec.changes[v.id] = {"status": "retired", "retired_at": now}
        rec.repairs.append(
            Repair(
                "no-alias",
                f"{name} resolves to nothing in the store but v{v.version} was recorded live: now "
                f"recorded retired; `reindex cutover {name} --to v{v.version}` points {name} at it again",
                v.version,
            )
        )


def _complete(ws, rec: Reconciliation, lc, intent, found, source, versions, now) -> None:
    action, verb = intent["action"], intent.get("verb", intent["action"])
    count = ws.store.count(found.physical_name)
    changes, drops = liveness_changes(versions, found, source, action, intent.get("set_previous", True), count, now)
    rec.changes.update(changes)
    rec.drop_ledgers.extend(drops)
    was = ", ".join(f"v{v.version}" for v in versions if v.status == "live" and v.id != found.id) or "none"
    rec.repairs.append(
        Repair(
            "completed",
            f"completed an interrupted {VERBS.get(action, action)} ({verb}): {lc.name} already pointed at "
            f"{found.physical_name} while the state recorded {was} live; v{found.version} is now recorded live"
            + (
                f", with v{source.version} as the version to roll back to"
                if intent.get("set_previous", True) and source is not None and action != "migrate"
                else ""
            ),
            found.version,
            action,
            detail=dict(intent.get("audit", {})),
        )
    )
    rec.audits.append(
        (
            action,
            lc.name,
            "ok",
            intent.get("plan_fingerprint"),
            {**intent.get("audit", {}), "completed_by": "reconcile", "started_at": intent.get("at")},
        )
    )
    if action in ("cutover", "rollback"):
        rec.events.append((action, {k: v for k, v in intent.get("audit", {}).items() if k in ("to", "previous")}))


def _adopt_alias(ws, rec: Reconciliation, lc, found, others, versions, now) -> None:
    """The alias moved with no recorded intent (by hand, or by a tool that lost its state): it is the truth."""
    previous = others[-1] if others else None
    count = ws.store.count(found.physical_name)
    changes, _ = liveness_changes(versions, found, previous, "cutover", previous is not None, count, now)
    rec.changes.update(changes)
    rec.repairs.append(
        Repair(
            "adopted-alias",
            f"{lc.name} points at {found.physical_name} (v{found.version}, recorded {found.status}) "
            f"and no interrupted step explains it: v{found.version} is now recorded live"
            + (f", {', '.join(f'v{v.version}' for v in others)} retired" if others else ""),
            found.version,
        )
    )


def _interrupted(rec: Reconciliation, lc, intent, by_id) -> None:
    to = by_id.get(intent.get("to"))
    verb = intent.get("verb", intent["action"])
    what = f"v{to.version}" if to is not None else "a version"
    rec.repairs.append(
        Repair(
            "interrupted",
            f"an interrupted {verb} to {what} stopped before the alias moved: nothing had changed",
            to.version if to is not None else None,
            intent["action"],
        )
    )
    rec.audits.append(
        (
            intent["action"],
            lc.name,
            "interrupted",
            intent.get("plan_fingerprint"),
            {**intent.get("audit", {}), "started_at": intent.get("at")},
        )
    )


def _gc_repairs(rec: Reconciliation, versions, collections: set[str], now) -> Reconciliation:
    """A retired version whose collection is gone (gc killed after the drop, or dropped by hand) is dropped."""
    for v in versions:
        if v.status == "retired" and v.id not in rec.changes and v.physical_name not in collections:
            rec.changes[v.id] = {"status": "dropped"}
            rec.drop_ledgers.append(v.id)
            rec.repairs.append(
                Repair(
                    "dropped",
                    f"v{v.version}'s collection {v.physical_name} is no longer in the store (a gc "
                    "interrupted after the drop, or dropped by hand): recorded dropped, its ledger removed",
                    v.version,
                )
            )
    return rec


def commit(ws, lc: LogicalCollection, rec: Reconciliation, by: str) -> Reconciliation:
    """Record ``rec``: the alias (if it must be re-made), then every state change and audit event in one transaction."""
    if rec.restore_alias is not None:
        ws.store.set_alias(lc.name, rec.restore_alias)
    recorded = [r for r in rec.repairs if r.recorded]
    audits = list(rec.audits)
    if recorded:
        audits.append(("reconcile", lc.name, "ok", None, {"by": by, "repairs": [r.message for r in recorded]}))
    ws.state.transition(
        rec.changes,
        audits,
        rec.drop_ledgers,
        clear_pending=pending_key(ws.store_url, lc.name) if rec.clear_pending else None,
    )
    for r in recorded:
        log.warning("%s: repaired: %s", lc.name, r.message)
    if rec.events:
        from reindexer.notify import notify, webhook_url

        for event, detail in rec.events:
            notify(webhook_url(ws.config, lc.name), event, lc.name, recovered=True, **detail)
    return rec


def reconcile(ws, lc: LogicalCollection | None, by: str) -> Reconciliation:
    """For a command holding ``lc``'s lease: repair the state from the store, and record it."""
    if lc is None:
        return Reconciliation("")
    rec = examine(ws, lc, store_writes=True)
    for r in rec.repairs:
        if not r.recorded:
            log.warning("%s: %s", lc.name, r.message)
    return commit(ws, lc, rec, by) if rec.needed else rec


def reconcile_readonly(ws, lc: LogicalCollection | None, by: str) -> Reconciliation:
    """For a command that only reads: never writes the store; records repairs when the lease is free."""
    if lc is None:
        return Reconciliation("")
    rec = examine(ws, lc, store_writes=False)
    if not rec.needed:
        return rec
    from reindexer.workspace import LEASE_TTL

    try:
        lease = ws.state.acquire_lease(ws.lease_name(lc.name), LEASE_TTL)
    except LeaseHeldError as exc:
        for r in rec.repairs:
            if r.recorded:
                r.recorded = False
                r.message += f" (shown, not recorded: {exc.message})"
        return rec
    try:
        rec = examine(ws, lc, store_writes=False)  # again, now that nobody else can change it
        return commit(ws, lc, rec, by) if rec.needed else rec
    finally:
        ws.state.release_lease(lease)
