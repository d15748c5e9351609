"""The build of an apply's shadow version: create it, run the source's passes into it, record the run.

``ShadowBuild.run`` is the "build" step of ``reindex apply`` (reindexer.commands.applying):
the first pass embeds (or, for a copy plan, copies) the source into the new physical
collection, further passes catch up with documents edited meanwhile, on the local
executor (reindexer.build.stream through ``sync_into``) or on Ray (reindexer.raydata).
Verifying the result, gating and cutting over are apply's next steps, not this module's.
Not to be confused with reindexer.shadow, which mirrors live queries to a built shadow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from reindexer.build.incremental import open_sync_source
from reindexer.build.steps import (
    MAX_CATCHUP_PASSES,
    SyncStats,
    copy_into,
    create_physical,
    finish_run,
    start_run,
    sync_into,
)
from reindexer.carried_vectors import carry_other_vectors
from reindexer.errors import DriftError
from reindexer.estimate import record_run
from reindexer.estimate_index import record_build
from reindexer.idset import IdSet
from reindexer.model_registry import embedder_for
from reindexer.planner import Plan
from reindexer.sources.spec import SourceSpec
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion
from reindexer.workspace import Workspace


@dataclass
class Shadow:
    """The version an apply builds, with its collection, its model and the live version when it was opened."""

    lc: LogicalCollection
    live: IndexVersion | None
    version: IndexVersion
    model: ModelVersion


@dataclass
class ShadowBuild:
    """One build of a plan's shadow version: the source's passes into it, on the chosen executor."""

    ws: Workspace
    shadow: Shadow
    plan: Plan
    lease: object
    delete_missing: bool
    executor: str = "local"
    ray_address: str | None = None
    #: The ANN index this run built after the load, as the store recorded it (``CollectionInfo.ann_index``);
    #: None where the store indexes as it writes, or the index was there already.
    index_build: dict[str, Any] | None = field(default=None, init=False)

    def run(self) -> tuple[SyncStats, IdSet | set[str]]:
        """The build's stats and the ids the source yielded in its last pass; the run records any failure."""
        ws, shadow, plan = self.ws, self.shadow, self.plan
        live = shadow.live
        physical = shadow.version.physical_name
        create_physical(ws, shadow.lc, shadow.version, shadow.model, like=live.physical_name if live else None)
        run = start_run(ws, shadow.version, "copy" if plan.mode == "copy" else "build", plan.id)
        spec = SourceSpec.from_dict(plan.source)
        total = SyncStats()
        try:
            index_before = ws.store.describe(physical).ann_index
            if plan.mode == "copy":
                total.add(self._copy_live(run))
            embedder = self._embedder()
            started = time.perf_counter()
            seen = self._passes(spec, embedder, run, total)
            if live is not None and plan.mode != "copy":
                carry_other_vectors(ws.store, live.physical_name, physical, ws.batch_size)
            if self.executor == "ray" or total.changed == 0:
                # Ray's writers, and a resumed run that wrote nothing, never settled the store: a store that
                # builds its ANN index after the load (pgvector) builds it now.
                ws.store.finish_writes(physical)
            self.index_build = self._index_built(index_before)
            finish_run(ws, run)
            seconds = time.perf_counter() - started
            if self.index_build and plan.mode != "copy":  # the estimate states the index build on its own line
                seconds -= float(self.index_build.get("seconds") or 0.0)
            self._record_rate(embedder, total, seconds)
        except BaseException as exc:
            finish_run(ws, run, error=f"{type(exc).__name__}: {exc}")
            raise
        return total, seen

    def _copy_live(self, run: Any) -> SyncStats:
        shadow = self.shadow
        if shadow.live is None:  # the drift check before the build compares the live version with the plan's
            raise DriftError(
                f"plan {self.plan.id[:12]} copies the live version of {shadow.lc.name}, which has none now"
            )
        return copy_into(self.ws, shadow.live, shadow.version, shadow.model, run, text_field=shadow.lc.text_field)

    def _embedder(self) -> Any:
        """This process's embedder; on Ray the replicas load the model, so this process only connects."""
        if self.executor == "local":
            return embedder_for(self.shadow.model, device=self.ws.config.device, batch_size=self.ws.embed_batch_size)
        from reindexer.raydata import connect

        connect(self.ray_address)
        return None

    def _passes(self, spec: SourceSpec, embedder: Any, run: Any, total: SyncStats) -> IdSet | set[str]:
        """Documents edited while a pass ran are picked up by the next; stop once one finds none."""
        seen: IdSet | set[str] | None = None
        for attempt in range(MAX_CATCHUP_PASSES + 1):
            close_ids(seen)
            stats, seen = self._one_pass(
                spec,
                embedder,
                run,
                label="embedding" if attempt == 0 else "catching up",
                total=self.plan.counts.get("source_docs") if attempt == 0 else None,
            )
            total.add(stats)
            if stats.changed == 0:
                break
        assert seen is not None
        return seen

    def _one_pass(
        self, spec: SourceSpec, embedder: Any, run: Any, label: str, total: int | None
    ) -> tuple[SyncStats, IdSet | set[str]]:
        """One sync pass of the source into the shadow: its stats and the ids it saw."""
        ws, shadow = self.ws, self.shadow
        if self.executor == "ray":
            from reindexer.raydata.executor import sync_on_ray

            live_name = shadow.live.physical_name if shadow.live else None
            return sync_on_ray(
                ws, shadow.version, shadow.model, spec, live_name, self.delete_missing, run, self.lease,
                label=label, total=total,
            )  # fmt: skip
        source = open_sync_source(ws, spec, shadow.live)
        ids = IdSet()  # the pass's ids, filled by the pipeline (and the source): kept for verification
        try:
            stats = sync_into(
                ws, shadow.version, shadow.model, source, embedder, self.delete_missing, run, self.lease,
                label=label, total=total, seen=ids,
            )  # fmt: skip
        except BaseException:
            ids.close()
            raise
        finally:
            source.close()
        return stats, ids

    def _index_built(self, before: dict[str, Any]) -> dict[str, Any] | None:
        """The ANN index the store recorded since ``before``, recorded in turn for later plans' estimates."""
        after = self.ws.store.describe(self.shadow.version.physical_name).ann_index
        if not after or after.get("built_at") == before.get("built_at"):
            return None
        record_build(self.ws.state, self.ws.store_url, after)
        return after

    def _record_rate(self, embedder: Any, total: SyncStats, seconds: float) -> None:
        """What later plans of this model estimate from (reindexer.estimate); a Ray build's rate is the
        cluster's, not this device's, so it is not recorded as one."""
        if total.embedded and embedder is not None:
            ws = self.ws
            model = self.shadow.model
            record_run(
                ws.state, model.fingerprint, embedder.device, ws.store_url, total.embedded, seconds, total.embed_seconds
            )


def close_ids(ids: IdSet | set[str] | None) -> None:
    """Release the ids a build saw (an IdSet may hold a file on disk); a plain set needs nothing."""
    if isinstance(ids, IdSet):
        ids.close()
