"""The verbs that move the alias between existing versions: cutover, rollback, and gc, which drops retired ones.

Each takes the collection's lease, reconciles the state with the store's alias first (so a re-run
after a crash completes the earlier move instead of making another), catches the target up with
what applications wrote, and swaps the alias (reindexer.swap). Building a version is apply's
(reindexer.commands.applying).
"""

from __future__ import annotations

from typing import Any

from reindexer import policy
from reindexer.build.catchup import CatchUpStats, catch_up_from_live
from reindexer.commands._shared import ConfirmFn, always_confirm, notify_webhook
from reindexer.errors import ConflictError, NotFoundError, UsageError
from reindexer.killpoints import kill_point
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.planner import live_version
from reindexer.reconcile import reconcile
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.state.models import saved_id
from reindexer.swap import swap_alias
from reindexer.workspace import Workspace

CUTOVER_READY = ("built", "verified", "evaluated", "retired")


# -- cut-over and rollback ----------------------------------------------------
def cutover(
    ws: Workspace, collection: str, to: str | None = None, confirm: ConfirmFn = always_confirm
) -> dict[str, Any]:
    """Point the alias at a built (or retired) version: ``to``, else the newest built shadow.

    Re-run after a crash between the alias swap and the state write, it completes
    that cut-over (reconcile) and reports it instead of picking another target.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "cutover")
        repairs = rec.messages()
        current = live_version(ws, lc, collection)
        done = rec.completed("cutover")
        if done is not None and current is not None and (to is None or find_version(ws, lc, to).id == current.id):
            return _unchanged(collection, current, repairs, completed=True, previous=done.detail.get("previous"))
        target = _cutover_target(ws, lc, to, current)
        if current is not None and target.id == current.id:
            return _unchanged(collection, target, repairs)
        if not confirm(f"Point {collection} at v{target.version} ({target.physical_name})?"):
            return _unchanged(collection, current, repairs)
        # What the application wrote into the live version since the target was last synced.
        caught_up = catch_up_from_live(ws, lc, target, current, lease)
        swap_alias(ws, lc, target, current, verb="cutover")
        notify_webhook(
            ws, "cutover", collection, to=target.physical_name, previous=current.physical_name if current else None
        )
        return {
            "collection": collection,
            "live": target.physical_name,
            "changed": True,
            "previous": current.physical_name if current else None,
            "caught_up": {"embedded": caught_up.embedded, "deleted": caught_up.deleted},
            "catch_up": caught_up.how,
            "repairs": repairs,
        }


def _unchanged(
    collection: str, live: IndexVersion | None, repairs: list[dict[str, Any]], **detail: Any
) -> dict[str, Any]:
    """A verb's answer when the alias stays where it is (``detail``: what a completed repair reports)."""
    return {
        "collection": collection,
        "live": live.physical_name if live else None,
        "changed": False,
        **detail,
        "repairs": repairs,
    }


def _cutover_target(ws: Workspace, lc: LogicalCollection, to: str | None, current: IndexVersion | None) -> IndexVersion:
    """``to``, else the newest built shadow; refused unless it is built (or retired, to go back to)."""
    if to is not None:
        target = find_version(ws, lc, to)
    else:
        ready = [v for v in ws.state.versions(saved_id(lc)) if v.status in ("built", "verified", "evaluated")]
        if not ready:
            raise _no_shadow(ws, lc, current)
        target = ready[-1]
    if target.status not in CUTOVER_READY and (current is None or target.id != current.id):
        raise ConflictError(
            f"v{target.version} of {lc.name} is not built (status: {target.status})",
            hint="finish it with `reindex apply --resume` or pick another version",
        )
    return target


def _no_shadow(ws: Workspace, lc: LogicalCollection, current: IndexVersion | None) -> NotFoundError:
    """Nothing built to cut over to; name the retired version to go forward (or back) to, if one is kept."""
    name = lc.name
    kept = [
        v
        for v in ws.state.versions(saved_id(lc))
        if v.status == "retired" and ws.store.collection_exists(v.physical_name)
    ]
    forward = [v for v in kept if current is None or v.version > current.version]
    if forward:
        v = forward[-1]
        how = "was rolled back" if current is not None and v.previous_id == current.id else "is retired"
        return NotFoundError(
            f"{name} has no built shadow version to cut over to: the newer v{v.version} {how}",
            hint=f"`reindex cutover {name} --to v{v.version}` goes forward to it again",
        )
    if kept:
        return NotFoundError(
            f"{name} has no built shadow version to cut over to",
            hint=f"`reindex cutover {name} --to v{kept[-1].version}` returns to a retired version; "
            "or build one with `reindex plan` and `reindex apply`",
        )
    return NotFoundError(
        f"{name} has no built shadow version to cut over to", hint="build one with `reindex plan` and `reindex apply`"
    )


def rollback(
    ws: Workspace, collection: str, confirm: ConfirmFn = always_confirm, catch_up: bool = True
) -> dict[str, Any]:
    """Point the collection back at the version live before the current one.

    Documents changed since the cut-over are first re-embedded into that version
    by its own model (read from the current live payloads), so nothing is lost.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "rollback")
        current = live_version(ws, lc, collection)
        done = rec.completed("rollback")
        if done is not None and current is not None:  # the crash came after the swap: do not roll back twice
            moved = {k: done.detail.get(k, 0) for k in ("re_embedded", "deleted")}
            return _unchanged(
                collection, current, rec.messages(), completed=True, **{"from": done.detail.get("previous")}, **moved
            )
        current, previous = _live_and_previous(ws, collection, current)
        if not confirm(f"Roll {collection} back from v{current.version} to v{previous.version}?"):
            return _unchanged(collection, current, rec.messages())
        stats = CatchUpStats(how="skipped (--no-catch-up)")
        if catch_up:
            stats = catch_up_from_live(ws, lc, previous, current, lease, text_field=lc.text_field)
        moved = {"re_embedded": stats.embedded, "deleted": stats.deleted}
        swap_alias(
            ws, lc, previous, current, set_previous=False, action="rollback",
            audit={"to": previous.physical_name, "previous": current.physical_name, **moved},
        )  # fmt: skip
        notify_webhook(ws, "rollback", collection, to=previous.physical_name, previous=current.physical_name)
        return {
            "collection": collection,
            "live": previous.physical_name,
            "changed": True,
            "from": current.physical_name,
            **moved,
            "catch_up": stats.how,
            "repairs": rec.messages(),
        }


def _live_and_previous(
    ws: Workspace, collection: str, current: IndexVersion | None
) -> tuple[IndexVersion, IndexVersion]:
    """The live version and the one live before it, refused unless the store still holds that one."""
    if current is None or current.previous_id is None:
        raise NotFoundError(f"{collection} has no previous version to roll back to")
    previous = ws.state.get_version(current.previous_id)
    if previous.status == "dropped" or not ws.store.collection_exists(previous.physical_name):
        raise NotFoundError(
            f"the previous version v{previous.version} of {collection} was dropped",
            hint="pick a kept version with `reindex cutover --to`",
        )
    return current, previous


# -- retention ----------------------------------------------------------------
def gc(ws: Workspace, collection: str, keep: int | None = None, confirm: ConfirmFn = always_confirm) -> dict[str, Any]:
    """Drop retired versions beyond the ``keep`` most recently retired ones (default: as configured)."""
    keep = policy.keep(ws.config, collection, keep)
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    lc = _collection(ws, collection)
    with ws.lease(collection):
        repairs = reconcile(ws, lc, "gc").messages()
        retired = [v for v in ws.state.versions(saved_id(lc)) if v.status == "retired"]
        retired.sort(key=lambda v: v.retired_at or v.updated_at, reverse=True)
        doomed = retired[keep:]
        aliased = set(ws.store.list_aliases().values())
        doomed = [v for v in doomed if v.physical_name not in aliased]
        if not doomed or not confirm(
            f"Drop {', '.join(v.physical_name for v in doomed)} of {collection}? This cannot be undone."
        ):
            return {
                "collection": collection,
                "dropped": [],
                "kept": [v.physical_name for v in retired[:keep]],
                "repairs": repairs,
            }
        for v in doomed:
            if ws.store.collection_exists(v.physical_name):
                ws.store.drop_collection(v.physical_name)
            kill_point("gc-after-drop")  # the next command sees the collection gone and records the drop
            ws.state.transition({saved_id(v): {"status": "dropped"}}, drop_ledgers=[saved_id(v)])
        dropped = [v.physical_name for v in doomed]
        ws.state.audit("gc", collection, dropped=dropped, keep=keep)
        return {
            "collection": collection,
            "dropped": dropped,
            "kept": [v.physical_name for v in retired[:keep]],
            "repairs": repairs,
        }
