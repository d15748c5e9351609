"""Incremental work on a managed collection: scheduled sync, reconcile and repair.

``sync`` diffs the source against each target version's ledger and embeds only
new and changed documents, with that version's own model: the live version and
every built shadow, so a shadow waiting for its evaluation or cut-over never
falls behind. A shadow still *building* belongs to its apply, whose catch-up
passes re-read the source until nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reindexer.errors import NotFoundError, UsageError
from reindexer.executor import (
    SyncStats,
    VerifyReport,
    finish_run,
    ids_of,
    start_run,
    sync_into,
    verify_version,
    version_metadata,
    version_text_field,
)
from reindexer.idset import IdSet
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.planner import live_version
from reindexer.policy import configured_source
from reindexer.reconcile import reconcile
from reindexer.schema import refuse_stale_sparse
from reindexer.sources.base import extract_text
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion, PlanRecord
from reindexer.state.models import Meta, saved_id
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


def default_source(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> SourceSpec:
    """The source the version was built from (its plan's), else the live payload."""
    if version.plan_id:
        with ws.state.session() as s:
            record = s.get(PlanRecord, version.plan_id)
        if record is not None:
            return SourceSpec.from_dict(record.body["source"])
    return SourceSpec(kind="payload", text_field=lc.text_field)


def _watermark_key(ws: Workspace, collection: str, spec: SourceSpec) -> str:
    return f"watermark:{ws.store_url}#{collection}#{spec.kind}:{spec.location}"


def get_watermark(ws: Workspace, collection: str, spec: SourceSpec) -> Any:
    with ws.state.session() as s:
        row = s.get(Meta, _watermark_key(ws, collection, spec))
    return None if row is None else number_or_text(row.value)


def number_or_text(value: str) -> Any:
    """A stored watermark, or a --since value, as the number it spells (int, then float), else the text."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def set_watermark(ws: Workspace, collection: str, spec: SourceSpec, value: Any) -> None:
    with ws.state.session() as s:
        key = _watermark_key(ws, collection, spec)
        row = s.get(Meta, key) or Meta(key=key, value="")
        row.value = str(value)
        s.add(row)
        s.commit()


def _open(ws: Workspace, spec: SourceSpec, live: IndexVersion):
    if spec.kind == "payload":
        return open_source(spec, store=ws.store, collection=live.physical_name)
    return open_source(spec)


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
            model = ws.state.model_of(version)
            run = start_run(ws, version, "sync")
            source_obj = _Watermarked(_open(ws, spec, live))
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
            if source_obj.max_updated_at is not None:
                watermark = source_obj.max_updated_at
            result.versions[f"v{version.version}"] = _stats(stats)
            ws.state.set_status(version, version.status, point_count=ws.store.count(version.physical_name))
        if spec.updated_field and watermark is not None:
            set_watermark(ws, collection, spec, watermark)
            result.watermark = watermark
        ws.state.audit("sync", collection, source=result.source, versions=result.versions, since=since)
        return result


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
) -> VerifyResult:
    """Reconcile ledger, store and source ids and model tags; with ``fix``, repair the version.

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
            with _open(ws, spec, live or version) as src:
                source_ids = ids_of(src)
        try:
            return _verify_and_fix(ws, lc, collection, version, model, spec, live, source_ids, fix, lease)
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
) -> VerifyResult:
    """Verify ``version`` against its ledger and the source's ids; with ``fix``, repair it and verify again."""
    report: VerifyReport = verify_version(ws, lc, version, model, source_ids)
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
        with _open(ws, spec, live or version) as src:
            sync_into(ws, version, model, src, delete_missing=True, lease=lease, label="repairing")
        after = verify_version(ws, lc, version, model, source_ids)
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


def rewrite_lexical(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> int:
    """Write every point's BM25 vector again from the text it holds (no embedding); the number written."""
    from reindexer.pipeline import lexical_encoder

    lexical = lexical_encoder(version)
    if lexical is None:
        return 0
    text_field, written = version_text_field(ws, lc, version), 0
    for page in ws.store.scroll(version.physical_name, batch_size=ws.batch_size):
        texts = [extract_text(p.payload, text_field) for p in page]
        points = [p for p, text in zip(page, texts, strict=True) if text is not None]
        sparse = lexical.documents([text for text in texts if text is not None])
        for point, vector in zip(points, sparse, strict=True):
            point.other_vectors = {lexical.stored.vector: vector}
        ws.store.set_other_vectors(version.physical_name, points)
        written += len(points)
    return written
