"""The streaming pipeline that carries plans out: build, catch up, copy, verify, cut over.

A full build is a sync into an empty index version: stream the source, skip
what the ledger already holds with the same content hash, embed the rest in
batches, upsert, and record each batch in the ledger in one transaction. The
ledger is therefore also the checkpoint: after a crash, running the same
command again skips everything already written and ends in the same state.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reindexer.adapters.base import DOC_ID_KEY, MODEL_KEY, CollectionSpec, VectorStore
from reindexer.embedding import Embedder, ModelSettings, cosine_rows
from reindexer.encoders import model_metadata
from reindexer.errors import ConflictError, NotFoundError, VerificationError
from reindexer.idset import IdSet
from reindexer.inference_backends import REEMBED_MIN_COSINE, reembed_min_cosine
from reindexer.killpoints import kill_point
from reindexer.lexical import LexicalEncoder
from reindexer.model_registry import embedder_for
from reindexer.pipeline import Pipeline, lexical_encoder
from reindexer.progress import progress
from reindexer.reconcile import liveness_changes, new_intent, pending_key
from reindexer.schema import application_schema
from reindexer.sources.base import Document, extract_text
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion, Run
from reindexer.state.models import iso, saved_id, utcnow
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)

VERIFY_SAMPLE = 16
VERIFY_MIN_COSINE = REEMBED_MIN_COSINE
MAX_CATCHUP_PASSES = 3


@dataclass
class SyncStats:
    seen: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    copied: int = 0
    # Time inside encode calls, and where they ran: what reindexer.estimate learns rates from.
    embed_seconds: float = 0.0
    device: str | None = None

    @property
    def changed(self) -> int:
        return self.embedded + self.deleted + self.copied

    def add(self, other: SyncStats) -> None:
        """Fold a later pass into this one: work adds up; ``unchanged`` stays the first pass's."""
        first = self.seen == 0
        self.seen = other.seen
        self.embedded += other.embedded
        self.unchanged = other.unchanged if first else self.unchanged
        self.deleted += other.deleted
        self.copied += other.copied
        self.embed_seconds += other.embed_seconds
        self.device = other.device or self.device


@dataclass
class VerifyReport:
    store_count: int
    ledger_count: int
    source_count: int | None
    missing_in_store: list[str] = field(default_factory=list)
    extra_in_store: list[str] = field(default_factory=list)
    missing_from_source: list[str] = field(default_factory=list)
    not_in_ledger_source: list[str] = field(default_factory=list)
    wrong_model: list[str] = field(default_factory=list)
    # Query-side keys the collection's metadata lacks or has wrong (versions tagged by older releases).
    stale_metadata: list[str] = field(default_factory=list)
    sample_size: int = 0
    sample_min_cosine: float | None = None
    # Sampled points whose stored BM25 vector is not the one their text makes (a version with a lexical index).
    stale_lexical: list[str] = field(default_factory=list)
    # What the sample must reach: lower for a model whose vectors depend on their batch (dynamic int8).
    sample_floor: float = VERIFY_MIN_COSINE

    @property
    def ok(self) -> bool:
        return (
            self.store_count == self.ledger_count
            and not self.missing_in_store
            and not self.extra_in_store
            and not self.missing_from_source
            and not self.not_in_ledger_source
            and not self.wrong_model
            and not self.stale_metadata
            and not self.stale_lexical
            and (self.sample_min_cosine is None or self.sample_min_cosine >= self.sample_floor)
        )

    def problems(self) -> list[str]:
        out = []
        if self.store_count != self.ledger_count:
            out.append(f"store holds {self.store_count} points, ledger {self.ledger_count}")
        for label, ids in (
            ("in the ledger but not the store", self.missing_in_store),
            ("in the store but not the ledger", self.extra_in_store),
            ("in the index but gone from the source", self.missing_from_source),
            ("in the source but not the index", self.not_in_ledger_source),
            ("tagged with another model", self.wrong_model),
            ("whose lexical vector is not the one their text makes", self.stale_lexical),
        ):
            if ids:
                out.append(f"{len(ids)} ids {label} (e.g. {', '.join(sorted(ids)[:5])})")
        if self.stale_metadata:
            out.append(
                f"collection metadata lacks or misstates {', '.join(self.stale_metadata)}, which the query "
                "side rebuilds its encoder from"
            )
        if self.sample_min_cosine is not None and self.sample_min_cosine < self.sample_floor:
            out.append(
                f"re-embedded sample disagrees with stored vectors (min cosine {self.sample_min_cosine:.4f}, "
                f"needs {self.sample_floor})"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "store_count": self.store_count,
            "ledger_count": self.ledger_count,
            "source_count": self.source_count,
            "problems": self.problems(),
            "sample_size": self.sample_size,
            "sample_min_cosine": self.sample_min_cosine,
            "sample_floor": self.sample_floor,
        }


def version_text_field(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> str:
    """How ``version``'s text is read: its plan's text field or template, else the collection's.

    A plan may name another template than the collection's first one; the version it builds
    records, verifies and re-embeds by its own.
    """
    if version.plan_id:
        from reindexer.state.models import PlanRecord

        with ws.state.session() as s:
            record = s.get(PlanRecord, version.plan_id)
        text_field = ((record.body or {}).get("source") or {}).get("text_field") if record is not None else None
        if text_field:
            return text_field
    return lc.text_field


def version_metadata(
    lc: LogicalCollection, version: IndexVersion, model: ModelVersion, text_field: str | None = None
) -> dict[str, str]:
    # The model keys are what the query side rebuilds its encoder from (reindexer.encoders).
    return {
        "reindex.logical": lc.name,
        "reindex.version": str(version.version),
        **model_metadata(model),
        "reindex.metric": version.metric,
        "reindex.text_field": text_field or lc.text_field,
        "reindex.created": iso(version.created_at),
    }


def create_physical(
    ws: Workspace, lc: LogicalCollection, version: IndexVersion, model: ModelVersion, like: str | None
) -> None:
    """Create the version's collection with the schema and payload indexes of ``like`` (the live version)."""
    store = ws.store
    if store.collection_exists(version.physical_name):
        return  # resuming an interrupted build
    payload_indexes = store.describe(like).payload_indexes if like else {}
    # The application's schema (fields, keys, other vectors, indexes) carries over to every version.
    schema = application_schema(store, like) if like else None
    store.create_collection(
        CollectionSpec(
            name=version.physical_name,
            dim=model.dim,
            metric=version.metric,
            metadata=version_metadata(lc, version, model, version_text_field(ws, lc, version)),
            payload_indexes=dict(payload_indexes),
            index_params=dict(version.index_params or {}),
            schema=schema.for_version(model.dim, version.metric) if schema is not None else None,
        )
    )


def start_run(ws: Workspace, version: IndexVersion, kind: str, plan_id: str | None = None) -> Run:
    """A new run; earlier runs of the version still marked running were killed (we hold the lease)."""
    from sqlmodel import select

    with ws.state.session() as s:
        for stale in s.exec(select(Run).where(Run.index_version_id == version.id, Run.status == "running")).all():
            stale.status, stale.error = "interrupted", "the process ended without finishing (killed or crashed)"
            s.add(stale)
        s.commit()
    return ws.state.save(Run(index_version_id=version.id, kind=kind, plan_id=plan_id))


def finish_run(ws: Workspace, run: Run, error: str | None = None) -> None:
    with ws.state.session() as s:
        row = s.get(Run, run.id)
        if row is None:
            raise NotFoundError(f"no run with id {run.id} to finish")
        row.status = "failed" if error else "succeeded"
        row.error = error
        row.finished_at = utcnow()
        s.add(row)
        s.commit()


def sync_into(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    source: Iterable[Document],
    embedder: Embedder | None = None,
    delete_missing: bool = True,
    run: Run | None = None,
    lease: object | None = None,
    label: str = "embedding",
    total: int | None = None,
    seen: IdSet | None = None,
) -> SyncStats:
    """Make ``version`` hold exactly the source's documents, embedding only what the ledger lacks.

    The work is a streaming pipeline (reindexer.pipeline): the source is read and diffed
    on its own thread, the embedder runs here, writes run beside it, several in flight.
    With ``seen``, the pass's ids are left there for the caller (who closes it).
    """
    # The model loads on the first batch that needs it: a scheduled no-op sync never pays for it.
    loaded: list[Embedder] = [embedder] if embedder is not None else []

    def encoder() -> Embedder:
        if not loaded:
            loaded.append(embedder_for(model, device=ws.config.device, batch_size=ws.embed_batch_size))
        return loaded[0]

    with progress(f"{label} {version.physical_name}", total) as advance:
        done = Pipeline(ws, version, model, encoder, run=run, lease=lease, advance=advance).run(
            source, delete_missing=delete_missing, seen=seen
        )
    return SyncStats(
        seen=done.seen,
        embedded=done.embedded,
        unchanged=done.unchanged,
        deleted=done.deleted,
        embed_seconds=done.embed_seconds,
        device=loaded[0].device if loaded else None,
    )


def copy_into(
    ws: Workspace,
    src: IndexVersion,
    dst: IndexVersion,
    model: ModelVersion,
    run: Run | None = None,
    text_field: str = "text",
) -> SyncStats:
    """Copy vectors and payloads from ``src`` to ``dst`` (same model): nothing is re-embedded."""
    store = ws.store
    stats = SyncStats()
    total = store.count(src.physical_name)
    from reindexer.sources.base import content_hash

    with progress(f"copying {src.physical_name} into {dst.physical_name}", total) as advance:
        for page in store.scroll(src.physical_name, batch_size=ws.batch_size, with_vectors=True):
            # Both ledgers are read a page at a time: nothing here grows with the collection.
            ids = [p.doc_id for p in page]
            done = ws.state.ledger_hashes(saved_id(dst), ids)
            todo = [p for p in page if p.doc_id not in done]
            if todo:
                src_ledger = ws.state.ledger_hashes(saved_id(src), [p.doc_id for p in todo])
                for p in todo:
                    p.payload[MODEL_KEY] = model.short
                store.upsert(dst.physical_name, todo)
                rows = []
                for p in todo:
                    h = src_ledger.get(p.doc_id)
                    if h is None:
                        # A point the ledger never saw (written by an application): hash what it holds.
                        payload = {k: v for k, v in p.payload.items() if k not in (MODEL_KEY, DOC_ID_KEY)}
                        h = content_hash(extract_text(payload, text_field) or "", payload)
                    rows.append((p.doc_id, h))
                ws.state.record_batch(
                    saved_id(dst), model.fingerprint, rows, run_id=run.id if run else None, copied=len(todo)
                )
                stats.copied += len(todo)
            stats.seen += len(page)
            advance(len(page))
    if stats.copied:
        store.finish_writes(dst.physical_name)
    return stats


def verify_version(
    ws: Workspace,
    lc: LogicalCollection,
    version: IndexVersion,
    model: ModelVersion,
    source_ids: IdSet | Collection[str] | None = None,
    sample: int = VERIFY_SAMPLE,
    embedder: Embedder | None = None,
    seed: int = 0,
) -> VerifyReport:
    """Compare store, ledger and (optionally) source ids; re-embed a sample and compare vectors.

    One pass over the store's pages, each checked against the ledger a page at a time; the
    store's ids go to an IdSet, against which the ledger's pages (and the source's ids) are
    checked after: no structure holds the version whole. The sample is a reservoir over the
    pass, seeded, so the same store gives the same sample.
    """
    store = ws.store
    sources = _as_idset(source_ids)
    with IdSet() as in_store:
        found = _walk_store(ws, version, model, in_store, sources, Reservoir(sample, seed))
        missing = [i for page in ws.state.ledger_id_pages(saved_id(version)) for i in in_store.missing(page)]
        unindexed = [i for page in sources.pages() for i in in_store.missing(page)] if sources is not None else []
        report = VerifyReport(
            store_count=store.count(version.physical_name),
            ledger_count=ws.state.ledger_count(saved_id(version)),
            source_count=len(sources) if sources is not None else None,
            missing_in_store=sorted(missing),
            extra_in_store=sorted(found.extra),
            wrong_model=sorted(found.wrong),
            stale_metadata=stale_metadata(store, lc, version, model),
        )
    if sources is not None:
        report.missing_from_source = sorted(found.gone)
        report.not_in_ledger_source = sorted(unindexed)
        if sources is not source_ids:
            sources.close()
    if found.sample.chosen:
        _check_sample(ws, lc, version, model, found.sample.chosen, embedder, report)
    return report


class Reservoir:
    """A seeded uniform sample of ``size`` ids from a stream of unknown length (the same stream, the same sample)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.chosen: list[str] = []
        self.met = 0

    def offer(self, doc_id: str) -> None:
        self.met += 1
        if len(self.chosen) < self.size:
            self.chosen.append(doc_id)
        else:
            slot = self.rng.randrange(self.met)
            if slot < self.size:
                self.chosen[slot] = doc_id


@dataclass
class _StoreFindings:
    sample: Reservoir
    extra: list[str] = field(default_factory=list)  # stored, not in the ledger
    wrong: list[str] = field(default_factory=list)  # tagged with another model
    gone: list[str] = field(default_factory=list)  # stored, not in the source


def _walk_store(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    in_store: IdSet,
    sources: IdSet | None,
    sample: Reservoir,
) -> _StoreFindings:
    """One pass over the store's pages, each checked against the ledger (and the source's ids) as it comes."""
    found = _StoreFindings(sample)
    per_point = ws.store.holds_point_tags(version.physical_name)
    for page in ws.store.scroll(version.physical_name, batch_size=ws.batch_size, with_vectors=False):
        ids = [p.doc_id for p in page]
        in_store.add(ids)
        known = ws.state.ledger_hashes(saved_id(version), ids)
        found.extra.extend(i for i in ids if i not in known)
        # Without per-point tags the model is recorded once, in the collection's metadata
        # (stale_metadata checks it); the sampled re-embedding checks the points.
        if per_point:
            found.wrong.extend(p.doc_id for p in page if p.payload.get(MODEL_KEY) != model.short)
        if sources is not None:
            found.gone.extend(sources.missing(ids))
        for doc_id in ids:
            sample.offer(doc_id)
    return found


def _check_sample(
    ws: Workspace,
    lc: LogicalCollection,
    version: IndexVersion,
    model: ModelVersion,
    chosen: list[str],
    embedder: Embedder | None,
    report: VerifyReport,
) -> None:
    """Re-embed the sampled points' texts; the report gets the sample's size and its lowest cosine."""
    points = list(ws.store.retrieve(version.physical_name, sorted(chosen), with_vectors=True))
    texts, stored = [], []
    text_field = version_text_field(ws, lc, version)
    lexical = lexical_encoder(version)
    for p in points:
        text = extract_text(p.payload, text_field)
        if text is not None:
            texts.append(text)
            stored.append(p.vector)
            if lexical is not None and not _same_sparse(p.other_vectors.get(lexical.stored.vector), text, lexical):
                report.stale_lexical.append(p.doc_id)
    if texts:
        embedder = embedder or embedder_for(model, device=ws.config.device, batch_size=ws.embed_batch_size)
        fresh = embedder.embed_documents(texts)
        report.sample_floor = reembed_min_cosine(ModelSettings.from_dict(model.settings))
        report.sample_size = len(texts)
        report.sample_min_cosine = float(cosine_rows(np.asarray(stored), fresh).min())


def _same_sparse(stored: Any, text: str, lexical: LexicalEncoder) -> bool:
    """Whether a stored BM25 vector is the one ``text`` makes (same terms, weights to float32)."""
    [fresh] = lexical.documents([text])
    if "text" in fresh:  # the store makes the vector from the text it holds: that text must be this one
        return isinstance(stored, dict) and stored.get("text") == text
    if not isinstance(stored, dict) or list(stored.get("indices", [])) != fresh["indices"]:
        return False
    return bool(np.allclose(stored.get("values", []), fresh["values"], rtol=1e-6, atol=0))


def ids_of(documents: Iterable[Any], chunk: int = 10_000) -> IdSet:
    """The ids of ``documents`` (anything with ``doc_id``), gathered into an IdSet a chunk at a time."""
    out = IdSet()
    batch: list[str] = []
    for d in documents:
        batch.append(d.doc_id)
        if len(batch) >= chunk:
            out.add(batch)
            batch = []
    out.add(batch)
    return out


def _as_idset(ids: IdSet | Collection[str] | None) -> IdSet | None:
    if ids is None or isinstance(ids, IdSet):
        return ids
    out = IdSet()
    listed = list(ids)
    for start in range(0, len(listed), 10_000):
        out.add(listed[start : start + 10_000])
    return out


def stale_metadata(store: VectorStore, lc: LogicalCollection, version: IndexVersion, model: ModelVersion) -> list[str]:
    """The query-side metadata keys (reindexer.encoders) that the version's collection lacks or misstates."""
    have = store.describe(version.physical_name).metadata
    want = model_metadata(model)
    return sorted(k for k, v in want.items() if have.get(k) != v and k != "reindex.model_path")


def require_verified(report: VerifyReport, what: str, repair: str) -> None:
    """Raise naming the commands that repair ``what``: an operator copies a hint, so it is whole."""
    if not report.ok:
        raise VerificationError(
            f"verification of {what} failed: " + "; ".join(report.problems()),
            hint=f"the shadow is left in place for inspection; {repair}",
        )


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
