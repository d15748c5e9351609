"""The last catch-up before an alias moves: what applications wrote into the live version reaches the target.

Applications keep writing through the alias while a shadow is built, evaluated
and waits for its cut-over (a LangChain ``add_texts`` with no ids gets Milvus
auto-ids or generated UUIDs). A build's catch-up passes and ``sync`` bring
those points into the shadow, but an alias moved later (``reindex cutover``
of a shadow built earlier, an apply whose gate took minutes) would leave out
what arrived since, and the application would lose it. So right before every
cut-over (and rollback) the target is synced once more from the live version's
payload, with the target's own model: every point, under its own id, exactly
once (the ledger skips what the target already holds; deleted points are deleted).

That pass reads only what changed since the two versions were last made equal
(their *mark*: when the last catch-up between them, or the target's build from
the live payload, began), not the whole collection:

- points an application wrote: every point the tool writes carries the writing
  model's tag (``MODEL_KEY``); an application that adds or rewrites a point
  through its own client writes its own payload, without that tag, so the store's
  filter "tag missing or not the live model's" (``VectorStore.scroll_untagged``)
  finds them;
- points the tool itself wrote into the live version since the mark (a ``sync``
  that embedded an application's writes, which tags them): the live ledger's rows
  updated after the mark (less ``MARK_SLACK``, for clocks that disagree) whose
  content hash the target's ledger does not hold, found in the state database
  without reading the store;
- deletions leave nothing to find, so a count check follows: once the target holds
  every changed document, its ledger counts exactly the live store's points unless
  something was deleted; where the counts disagree the full pass runs (it deletes
  what is gone) and the result says so ("full catch-up: store count X != ledger Y").
  One kind of deletion the count cannot see: a point an application wrote into the
  target while the target was live, carried to the other version by an earlier
  catch-up (so in that version's ledger, never in the target's), then deleted there.
  The live ledger's rows since the mark name it, and the live store no longer holds
  it: the changes pass deletes it from the target. The full pass deletes every point
  of the target's store that the live store lacks, ledger or not.

The full pass also runs where no mark is known (a first catch-up between two
versions), where the live points cannot carry the tag (a Milvus collection without
dynamic fields), and where they hold the application's own vectors (sparse, a
second dense one), which it may rewrite without touching the payload.

Assumption: an application that rewrites a point does not copy the tool's tag
into its new payload. One that does (reads a point, edits its text, writes the
whole payload back) is not seen here; ``reindex sync`` (a full diff of the payload
against the ledger) picks such a write up, and should run before the swap.

Only targets built from the live payload are caught up this way; a version
built from files or SQL follows its source through ``sync``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from reindexer.adapters.base import MODEL_KEY
from reindexer.build.incremental import default_source
from reindexer.build.steps import SyncStats, sync_into, version_text_field
from reindexer.carried_vectors import carry_other_vectors, has_other_vectors
from reindexer.idset import IdSet
from reindexer.sources.payload import PayloadSource
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion
from reindexer.state.models import saved_id, utcnow
from reindexer.workspace import Workspace

#: How far before a mark the live ledger is read again: a sync on another machine whose clock
#: runs behind this one's (a shared PostgreSQL state) still records its rows after the mark minus this.
MARK_SLACK = timedelta(minutes=10)
#: ledger ids per page of the live ledger's recent rows
LEDGER_PAGE = 2000


@dataclass
class CatchUpStats(SyncStats):
    """A catch-up's work, and how it found it: ``how`` is one line for people, ``full`` whether it read everything."""

    how: str = ""
    full: bool = False


def catch_up_from_live(
    ws: Workspace,
    lc: LogicalCollection,
    target: IndexVersion,
    live: IndexVersion | None,
    lease: object | None = None,
    text_field: str | None = None,
) -> CatchUpStats:
    """Sync ``target`` from ``live``'s payload as it is now, embedding with ``target``'s model.

    ``text_field`` defaults to the text field ``target`` was built with. Nothing is done
    when there is no other live version, or when ``target`` was built from another source.
    """
    if live is None or live.id == target.id:
        return CatchUpStats(how="nothing to catch up")
    if text_field is None:
        if default_source(ws, lc, target).kind != "payload":
            return CatchUpStats(how=f"v{target.version} follows its own source (sync), not the live payload")
        text_field = version_text_field(ws, lc, target)
    began = utcnow()
    model = ws.state.model_of(target)
    since, why_full = _mark(ws, target, live)
    stats = CatchUpStats(full=True, how=f"full catch-up: {why_full}")
    if since is not None:
        stats = _changes_pass(ws, target, live, model, text_field, since, lease)
        have, want = ws.store.count(live.physical_name), ws.state.ledger_count(saved_id(target))
        if have != want:  # something was deleted (or the mark no longer holds): read everything
            stats.full, stats.how = True, f"full catch-up: store count {have} != ledger {want}"
    if stats.full:
        stats.add(_full_pass(ws, target, live, model, text_field, lease))
        # A re-embedded point got only the vector the tool makes, and an application may have changed a
        # point's other vectors alone: they come from live, every one (a no-op where there are none).
        carry_other_vectors(ws.store, live.physical_name, target.physical_name, ws.batch_size)
    _set_marks(ws, target, live, began)
    return stats


def _full_pass(
    ws: Workspace,
    target: IndexVersion,
    live: IndexVersion,
    model: ModelVersion,
    text_field: str,
    lease: object | None,
) -> SyncStats:
    """Every live point, diffed against the target's ledger; what the live store no longer has is deleted: the
    ledger's ids, and the target's own points its ledger never held (an application's, see the module's notes)."""
    source = open_source(
        SourceSpec(kind="payload", text_field=text_field),
        store=ws.store,
        collection=live.physical_name,
        batch_size=ws.batch_size,
    )
    seen = IdSet()
    try:
        stats = sync_into(ws, target, model, source, lease=lease, label="catching up", seen=seen)
        # read whole before deleting (a scroll's position under its own deletions is the store's business); few
        strays = [
            d
            for page in ws.store.scroll(target.physical_name, batch_size=ws.batch_size)
            for d in seen.missing(p.doc_id for p in page)
        ]
        for start in range(0, len(strays), ws.batch_size):
            stats.deleted += _delete_from_target(ws, target, model, strays[start : start + ws.batch_size])
        return stats
    finally:
        source.close()
        seen.close()


def _delete_from_target(ws: Workspace, target: IndexVersion, model: ModelVersion, ids: list[str]) -> int:
    """Delete ``ids`` from the target's store, then from its ledger (store first: a crash between leaves a ledger
    row without its point, which the next count check sees); how many."""
    if ids:
        ws.store.delete(target.physical_name, ids)
        ws.state.record_batch(saved_id(target), model.fingerprint, [], deleted=ids)
    return len(ids)


def _changes_pass(
    ws: Workspace,
    target: IndexVersion,
    live: IndexVersion,
    model: ModelVersion,
    text_field: str,
    since: datetime,
    lease: object | None,
) -> CatchUpStats:
    """The live points written since ``since``, by applications or by the tool, synced into the target."""
    source = _ChangedPoints(ws, target, live, text_field, since)
    done = sync_into(ws, target, model, source, delete_missing=False, lease=lease, label="catching up")
    stats = CatchUpStats(**done.__dict__)
    stats.deleted += _delete_from_target(ws, target, model, source.gone)
    stats.how = (
        f"changes only: {source.untagged} points without v{live.version}'s model tag, "
        f"{source.recorded} re-read from its ledger since {since:%Y-%m-%d %H:%M:%S}Z"
    )
    return stats


class _ChangedPoints(PayloadSource):
    """The live points an application wrote (no live tag), then those the tool wrote after ``since``.

    The two are disjoint (the second keeps only points that carry the live tag), so no id repeats.
    """

    def __init__(
        self, ws: Workspace, target: IndexVersion, live: IndexVersion, text_field: str, since: datetime
    ) -> None:
        super().__init__(ws.store, live.physical_name, text_field=text_field, batch_size=ws.batch_size)
        self.ws, self.target, self.live, self.since = ws, target, live, since
        self.tag = ws.state.model_of(live).short
        self.untagged = 0
        self.recorded = 0
        self.gone: list[str] = []  # re-read from the live ledger, no longer in the live store: deleted there
        self.description = f"changes in {self.description}"

    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        name = self.collection
        for page in self.store.scroll_untagged(name, MODEL_KEY, self.tag, batch_size=self.batch_size):
            for point in page:
                self.untagged += 1
                yield f"point {point.doc_id!r}", point.doc_id, point.payload or {}
        for ids in _recorded_since(self.ws, self.target, self.live, self.since - MARK_SLACK):
            points = self.store.retrieve(name, ids)
            held = {p.doc_id for p in points}
            self.gone.extend(d for d in ids if d not in held)
            for point in points:
                if point.payload.get(MODEL_KEY) == self.tag:
                    self.recorded += 1
                    yield f"point {point.doc_id!r}", point.doc_id, point.payload


def _recorded_since(ws: Workspace, target: IndexVersion, live: IndexVersion, since: datetime) -> Iterator[list[str]]:
    """``live``'s ledger ids recorded after ``since`` with a content hash ``target``'s ledger lacks, a page
    at a time (keyset on the id): a build or a catch-up just before the mark reads nothing from the store."""
    return ws.state.ledger_changes_since(saved_id(live), saved_id(target), since, LEDGER_PAGE)


# -- marks: since when two versions are known to hold the same documents ----------------------------


def _mark_key(target: IndexVersion, live: IndexVersion) -> str:
    return f"caught-up:{saved_id(target)}<-{saved_id(live)}"


def _mark(ws: Workspace, target: IndexVersion, live: IndexVersion) -> tuple[datetime | None, str]:
    """When ``target`` last held what ``live`` held (None: unknown), and else why the full pass runs."""
    store, physical = ws.store, live.physical_name
    if not store.holds_point_tags(physical):
        return None, f"the points of {physical} carry no model tag (no dynamic field), so writes leave no trace"
    if has_other_vectors(store, physical):
        return None, f"{physical} holds the application's own vectors, which it may rewrite without its payload"
    mark = ws.state.get_meta(_mark_key(target, live))
    if mark is not None:
        return _utc(datetime.fromisoformat(mark)), ""
    built = _built_from(ws, target, live)
    if built is not None:
        return built, ""
    return None, f"no earlier catch-up of v{target.version} from v{live.version} to start from"


def _built_from(ws: Workspace, target: IndexVersion, live: IndexVersion) -> datetime | None:
    """When ``target``'s finished build from ``live``'s payload began: every pass of it read ``live`` after that."""
    if not target.plan_id:
        return None
    plan = ws.state.get_plan(target.plan_id)
    body = plan.body if plan is not None else {}
    source, origin = body.get("source") or {}, body.get("from_version") or {}
    if source.get("kind") != "payload" or origin.get("physical") != live.physical_name:
        return None
    runs = ws.state.succeeded_run_starts(saved_id(target), ("build", "copy"))
    return _utc(max(runs)) if runs else None


def _set_marks(ws: Workspace, target: IndexVersion, live: IndexVersion, began: datetime) -> None:
    """Both directions: once the alias moves, the old live version is the one a rollback catches up."""
    ws.state.set_meta({_mark_key(target, live): began.isoformat(), _mark_key(live, target): began.isoformat()})


def _utc(dt: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
