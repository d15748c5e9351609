"""The driver of a build on Ray: the same ledger checkpoint as the local executor, with Ray doing the work.

Ray reads the source in partitions, parses and hashes each record, drops what the ledger
already holds (a shared lookup table, reindexer.raydata.ledger_table) and embeds the rest
on an actor pool of model replicas. The store write comes next: from Ray workers for a
server store, through this process for an embedded one (only one process may hold its
folder or file). Either way the ledger is recorded here, after the batch's write: store
first, then ledger, so a build killed anywhere resumes, with either executor, to the
same result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from reindexer.build.steps import SyncStats
from reindexer.errors import ReindexError, UsageError
from reindexer.killpoints import kill_point
from reindexer.progress import progress
from reindexer.raydata import stages
from reindexer.raydata.ledger_table import LedgerTable
from reindexer.raydata.reads import dataset
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, ModelVersion, Run
from reindexer.state.models import saved_id
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)

CPU_ACTOR_CPUS = 1
WRITERS = 2


@dataclass
class RayOptions:
    """How the build uses the cluster; the defaults size it from what the cluster has."""

    address: str | None = None
    replicas: int | None = None  # model replicas (actors); default: one per GPU, else CPUs - 1
    writers: int = WRITERS  # writer actors for a server store: what the store can take, not what Ray could run


def cluster_shape() -> tuple[int, int]:
    import ray

    res = ray.cluster_resources()
    return int(res.get("CPU", 0)), int(res.get("GPU", 0))


def replica_resources(options: RayOptions) -> dict[str, Any]:
    cpus, gpus = cluster_shape()
    if gpus:
        return {"concurrency": options.replicas or gpus, "num_gpus": 1, "num_cpus": 1, "device": "cuda"}
    # One CPU stays free for the read, parse and write tasks, which would otherwise wait on the replicas.
    replicas = options.replicas or max(1, cpus - 1)
    return {"concurrency": replicas, "num_gpus": 0, "num_cpus": CPU_ACTOR_CPUS, "device": "cpu"}


def _reindex_cause(exc: BaseException) -> ReindexError | None:
    """The tool's own error inside Ray's wrappers (a bad record, a worker's wrong model), if any."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ReindexError):
            return e
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None


def _payload_pages(ws: Workspace, spec: SourceSpec, live_physical: str | None) -> Iterator[list]:
    if live_physical is None:
        raise UsageError("a payload source reads the live collection, and there is none yet", hint="pass --source")
    source = open_source(spec, store=ws.store, collection=live_physical)
    for page in ws.store.scroll(live_physical, batch_size=ws.batch_size, with_vectors=False):
        yield [(f"point {p.doc_id!r}", p.doc_id, p.payload or {}) for p in page]
    source.close()


def _description(ws: Workspace, spec: SourceSpec, live_physical: str | None) -> str:
    if spec.kind == "payload":
        source = open_source(spec, store=ws.store, collection=live_physical)
    else:
        source = open_source(spec)
    try:
        return source.description
    finally:
        source.close()


def sync_on_ray(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    spec: SourceSpec,
    live_physical: str | None,
    delete_missing: bool = True,
    run: Run | None = None,
    lease: object | None = None,
    label: str = "embedding",
    total: int | None = None,
    options: RayOptions | None = None,
) -> tuple[SyncStats, set[str]]:
    """Make ``version`` hold exactly the source's documents, embedding on Ray only what the ledger lacks.

    Returns the pass's stats and every source id it saw (for verification), as the local path does.
    """
    import ray

    options = options or RayOptions()
    _quiet_ray_data()
    state = ws.state
    ledger = state.ledger(saved_id(version))
    ledger_ref = ray.put(LedgerTable.from_ledger(ledger)) if ledger else None
    description = _description(ws, spec, live_physical)
    cpus, _ = cluster_shape()

    def documents():
        pages = _payload_pages(ws, spec, live_physical) if spec.kind == "payload" else None
        ds = dataset(spec, parallelism=max(2, 2 * cpus), payload_pages=pages)
        return ds.map_batches(
            stages.parse_and_filter,
            batch_format="numpy",
            fn_kwargs={"spec": spec, "description": description, "ledger_ref": ledger_ref},
        )

    stats = SyncStats()
    seen: set[str] = set()
    with progress(f"{label} {version.physical_name} on Ray", total) as advance:

        def consume(pipeline, probe: bool) -> bool:
            """Take the pipeline's batches; a probe stops at the first document to embed (False)."""
            for batch in pipeline.iter_batches(batch_size=ws.batch_size, batch_format="numpy"):
                if probe and batch[stages.TODO].astype(bool).any():
                    return False
                _take(ws, version, model, batch, seen, stats, run, not ws.location.embedded, description)
                if lease is not None:
                    ws.renew(lease)
                if not probe:
                    advance(len(batch[stages.DOC_ID]))
            return True

        try:
            # A resume or catch-up pass often finds nothing to embed: a read-and-hash pass on Ray tasks
            # finds out first, so the model replicas start only when there is work for them.
            if not (ledger and consume(documents(), probe=True)):
                seen.clear()
                stats = SyncStats()
                consume(_embedded(ws, version, model, documents(), options), probe=False)
            else:
                advance(stats.seen)
        except ReindexError:
            raise
        except Exception as exc:
            cause = _reindex_cause(exc)
            if cause is not None:
                raise cause from None
            raise
    if delete_missing:
        gone = sorted(set(ledger) - seen)
        for i in range(0, len(gone), ws.batch_size):
            chunk = gone[i : i + ws.batch_size]
            ws.store.delete(version.physical_name, chunk)
            state.record_batch(saved_id(version), model.fingerprint, [], deleted=chunk, run_id=run.id if run else None)
            stats.deleted += len(chunk)
    return stats, seen


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # The build reports its own progress; Ray Data's per-dataset notices would interleave with it.
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _embedded(ws: Workspace, version: IndexVersion, model: ModelVersion, documents, options: RayOptions):
    """``documents`` embedded on the replica pool and, for a server store, written by the writer pool."""
    from ray.data import ActorPoolStrategy

    shape = replica_resources(options)
    ds = documents.map_batches(
        stages.EmbedReplica,
        fn_constructor_kwargs={
            "path": model.path,
            "settings": dict(model.settings or {}),
            "fingerprint": model.fingerprint,
            "dim": model.dim,
            "device": ws.config.device or shape["device"],
            "batch_size": None,
        },
        compute=ActorPoolStrategy(size=shape["concurrency"]),
        batch_size=ws.batch_size,
        batch_format="numpy",
        num_cpus=shape["num_cpus"],
        num_gpus=shape["num_gpus"],
        max_restarts=0,  # a replica that dies fails the pass; the ledger makes the rerun resume
    )
    if ws.location.embedded:
        return ds  # only this process may hold the store: it writes
    return ds.map_batches(
        stages.StoreWriter,
        fn_constructor_kwargs={
            "store_url": ws.config.store_url,
            "base_dir": str(ws.config.base_dir),
            "physical": version.physical_name,
            "model_short": model.short,
        },
        compute=ActorPoolStrategy(size=options.writers),
        batch_size=ws.batch_size,
        batch_format="numpy",
        num_cpus=0,
        max_restarts=0,  # waits on the store: it must not take a CPU from the replicas or the reads
    )


def _take(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    batch: dict[str, np.ndarray],
    seen: set[str],
    stats: SyncStats,
    run: Run | None,
    written: bool,
    description: str,
) -> None:
    """Check one batch's ids, write it here unless a worker did, then record it in the ledger."""
    ids = [str(d) for d in batch[stages.DOC_ID]]
    for doc_id in ids:
        if doc_id in seen:
            raise UsageError(
                f"{description}: duplicate id {doc_id!r}",
                hint="every document needs its own id; deduplicate the source",
            )
        seen.add(doc_id)
    todo = batch[stages.TODO].astype(bool)
    stats.seen += len(ids)
    stats.unchanged += int((~todo).sum())
    if not todo.any():
        return
    if not written:
        ws.store.upsert(version.physical_name, stages.points(batch, model.short))
    kill_point("ray-before-ledger")
    done = [(d, str(h)) for d, h, t in zip(ids, batch[stages.HASH], todo, strict=True) if t]
    ws.state.record_batch(
        saved_id(version),
        model.fingerprint,
        done,
        run_id=run.id if run else None,
        checkpoint={"last_doc_id": done[-1][0]},
        embedded=len(done),
    )
    stats.embedded += len(done)
