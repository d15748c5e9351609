"""The steps that build an index version: its collection, its runs, a sync into it, a copy into it.

A full build is a sync into an empty index version: stream the source, skip
what the ledger already holds with the same content hash, embed the rest in
batches, upsert, and record each batch in the ledger in one transaction. The
ledger is therefore also the checkpoint: after a crash, running the same
command again skips everything already written and ends in the same state.

The streaming itself is the local executor, reindexer.build.stream; checking the
result is reindexer.build.verify, and moving the alias reindexer.swap. Which steps
a verb runs, in which order, is the verbs' business (reindexer.commands).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from reindexer.adapters.base import DOC_ID_KEY, MODEL_KEY, CollectionSpec
from reindexer.build.stream import Pipeline
from reindexer.carried_vectors import application_schema
from reindexer.embedding import Embedder
from reindexer.encoders import model_metadata
from reindexer.idset import IdSet
from reindexer.model_registry import embedder_for
from reindexer.progress import progress
from reindexer.sources.base import Document, extract_text
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion, Run
from reindexer.state.models import iso, saved_id
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)

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


def version_text_field(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> str:
    """How ``version``'s text is read: its plan's text field or template, else the collection's.

    A plan may name another template than the collection's first one; the version it builds
    records, verifies and re-embeds by its own.
    """
    if version.plan_id:
        record = ws.state.get_plan(version.plan_id)
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
    ws.state.interrupt_runs(version.id, "the process ended without finishing (killed or crashed)")
    return ws.state.save(Run(index_version_id=version.id, kind=kind, plan_id=plan_id))


def finish_run(ws: Workspace, run: Run, error: str | None = None) -> None:
    ws.state.finish_run(run.id, error)


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

    The work is a streaming pipeline (reindexer.build.stream): the source is read and diffed
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
