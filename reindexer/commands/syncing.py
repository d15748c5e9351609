"""The verbs of incremental work on a managed collection: sync and verify (with --fix, repair).

``sync`` diffs the source against each target version's ledger and embeds only
new and changed documents, with that version's own model: the live version and
every built shadow, so a shadow waiting for its evaluation or cut-over never
falls behind. A shadow still *building* belongs to its apply, whose catch-up
passes re-read the source until nothing changes. Where a version syncs from and the
watermarks are build steps (reindexer.build.incremental), as is the pass itself
(reindexer.build.steps.sync_into).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reindexer.build.incremental import default_source, get_watermark, open_sync_source, rewrite_lexical, set_watermark
from reindexer.build.steps import (
    SyncStats,
    finish_run,
    start_run,
    sync_into,
    version_metadata,
    version_text_field,
)
from reindexer.build.verify import VerifyReport, ids_of, name_every_bad_point, verify_version
from reindexer.carried_vectors import refuse_stale_sparse
from reindexer.errors import NotFoundError, UsageError
from reindexer.idset import IdSet
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.planner import live_version
from reindexer.policy import configured_source
from reindexer.reconcile import reconcile
from reindexer.sources.spec import SourceSpec
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion
from reindexer.state.models import saved_id
from reindexer.workspace import Workspace

SYNC_TARGET_STATUSES = ("built", "verified", "evaluated")


@dataclass
class SyncResult:
    collection: str
    source: str
    since: Any = None
    watermark: Any = None
    versions: dict[str, dict[str, int]] = field(default_factory=dict)
    repairs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sync(
    ws: Workspace,
    collection: str,
    source: SourceSpec | None = None,
    delete_missing: bool = True,
    since: Any = None,
    wait: float = 0,
) -> SyncResult:
    """Embed new and changed documents into the live version and its built shadows; drop deleted ones.

    ``since="last"`` reads only rows updated after the stored watermark (SQL
    sources with an updated field); such a pass cannot see deletions, so it
    deletes nothing.
    """
    lc = _collection(ws, collection)
    refuse_stale_sparse(ws.store, collection, source or configured_source(ws.config, collection))
    with ws.lease(collection, wait=wait) as lease:
        repairs = reconcile(ws, lc, "sync").messages()
        live = live_version(ws, lc, collection)
        if live is None:
            raise NotFoundError(f"{collection} has no live version to sync", hint="build one with plan and apply")
        spec = source or configured_source(ws.config, collection) or default_source(ws, lc, live)
        if since == "last":
            since = get_watermark(ws, collection, spec)
        if since is not None:
            spec = spec.with_since(since)
            delete_missing = False
        result = SyncResult(collection, spec.describe(), since=since, repairs=repairs)
        targets = [live] + [v for v in ws.state.versions(saved_id(lc)) if v.status in SYNC_TARGET_STATUSES]
        watermark = None
        for version in targets:
            stats, max_updated_at = _sync_version(ws, version, spec, live, delete_missing, lease)
            if max_updated_at is not None:
                watermark = max_updated_at
            result.versions[f"v{version.version}"] = _stats(stats)
            ws.state.set_status(version, version.status, point_count=ws.store.count(version.physical_name))
        if spec.updated_field and watermark is not None:
            set_watermark(ws, collection, spec, watermark)
            result.watermark = watermark
        ws.state.audit("sync", collection, source=result.source, versions=result.versions, since=since)
        return result


def _sync_version(
    ws: Workspace, version: IndexVersion, spec: SourceSpec, live: IndexVersion, delete_missing: bool, lease: object
) -> tuple[SyncStats, Any]:
    """One sync pass of the source into ``version`` with its own model, recorded as a run; with the
    largest ``updated_at`` the pass read (None when the source has none)."""
    model = ws.state.model_of(version)
    run = start_run(ws, version, "sync")
    source_obj = _Watermarked(open_sync_source(ws, spec, live))
    try:
        stats = sync_into(
            ws,
            version,
            model,
            source_obj,
            delete_missing=delete_missing,
            run=run,
            lease=lease,
            label=f"sync v{version.version}",
        )
        finish_run(ws, run)
    except BaseException as exc:
        finish_run(ws, run, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        source_obj.close()
    return stats, source_obj.max_updated_at


class _Watermarked:
    """Passes documents through and remembers the largest ``updated_at`` seen."""

    def __init__(self, source):
        self.source = source
        self.max_updated_at = None
        if hasattr(source, "iter_into"):  # the pipeline then keeps one id set, not two
            self.iter_into = lambda seen: self._watch(source.iter_into(seen))

    def __iter__(self):
        return self._watch(iter(self.source))

    def _watch(self, docs):
        for doc in docs:
            if doc.updated_at is not None and (self.max_updated_at is None or doc.updated_at > self.max_updated_at):
                self.max_updated_at = doc.updated_at
            yield doc

    def close(self) -> None:
        self.source.close()


def _stats(stats: SyncStats) -> dict[str, int]:
    return {"seen": stats.seen, "embedded": stats.embedded, "unchanged": stats.unchanged, "deleted": stats.deleted}


@dataclass
class VerifyResult:
    collection: str
    version: int
    before: dict[str, Any]
    after: dict[str, Any] | None = None
    fixed: bool = False

    @property
    def ok(self) -> bool:
        return (self.after or self.before)["ok"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def verify(
    ws: Workspace,
    collection: str,
    version_ref: str | None = None,
    fix: bool = False,
    source: SourceSpec | None = None,
    full: bool = False,
) -> VerifyResult:
    """Reconcile ledger, store and source ids and model tags; with ``fix``, repair the version.

    Counts and a random sample of points by default, every point with ``full``
    (reindexer.build.verify says when the full pass runs anyway, and what a sample finds).
    Repair: forget ledger rows whose points are missing or carry another model,
    delete stray points the source no longer has, then sync from the source,
    which re-embeds exactly what was forgotten or never recorded.
    """
    if not fix:
        ws.require_store()  # a check must not create the store it checks
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        reconcile(ws, lc, "verify")
        live = live_version(ws, lc, collection)
        version = find_version(ws, lc, version_ref) if version_ref else live
        if version is None:
            raise NotFoundError(f"{collection} has no live version to verify")
        model = ws.state.model_of(version)
        spec = source or default_source(ws, lc, version)
        source_ids: IdSet | None = None
        if spec.kind != "payload" or version.id != (live.id if live else None):
            # (the live payload is the store itself: nothing independent to compare)
            with open_sync_source(ws, spec, live or version) as src:
                source_ids = ids_of(src)
        try:
            return _verify_and_fix(ws, lc, collection, version, model, spec, live, source_ids, fix, lease, full)
        finally:
            if source_ids is not None:
                source_ids.close()


def _verify_and_fix(
    ws: Workspace,
    lc: LogicalCollection,
    collection: str,
    version: IndexVersion,
    model: ModelVersion,
    spec: SourceSpec,
    live: IndexVersion | None,
    source_ids: IdSet | None,
    fix: bool,
    lease: object,
    full: bool = False,
) -> VerifyResult:
    """Verify ``version`` against its ledger and the source's ids; with ``fix``, repair it and verify again."""
    report: VerifyReport = verify_version(ws, lc, version, model, source_ids, full=full)
    if fix and report.checked == "sample" and report.bad_ids():
        name_every_bad_point(ws, lc, version, model, source_ids, report)  # a sample names only some
    result = VerifyResult(collection, version.version, report.to_dict())
    if fix and not report.ok:
        if spec.kind == "payload" and version.id == (live.id if live else None) and report.missing_in_store:
            raise UsageError(
                "points missing from the live collection cannot be rebuilt from its own payload",
                hint="pass --source with the original documents (jsonl:, parquet:, sql:)",
            )
        if report.stale_metadata:
            ws.store.set_metadata(
                version.physical_name, version_metadata(lc, version, model, version_text_field(ws, lc, version))
            )
        if report.stale_lexical:  # a sample found some: every point's is made again from its text (no embedding)
            rewrite_lexical(ws, lc, version)
        forget = set(report.missing_in_store) | set(report.wrong_model)
        if forget:
            ws.state.record_batch(saved_id(version), model.fingerprint, [], deleted=sorted(forget))
        strays = source_ids.missing(report.extra_in_store) if source_ids is not None else []
        if strays:
            ws.store.delete(version.physical_name, strays)
        with open_sync_source(ws, spec, live or version) as src:
            sync_into(ws, version, model, src, delete_missing=True, lease=lease, label="repairing")
        after = verify_version(ws, lc, version, model, source_ids, full=full)
        result.after, result.fixed = after.to_dict(), after.ok
        ws.state.audit(
            "verify-fix",
            collection,
            "ok" if after.ok else "failed",
            version=version.version,
            problems_before=report.problems(),
            problems_after=after.problems(),
        )
    else:
        ws.state.audit(
            "verify",
            collection,
            "ok" if report.ok else "failed",
            version=version.version,
            problems=report.problems(),
        )
    return result
