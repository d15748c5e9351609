"""How long the ANN index a store builds after the bulk load will take: its own line of the plan's estimate.

pgvector builds its HNSW or IVFFlat index in one ``CREATE INDEX`` once the rows are in
(``VectorStore.finish_writes``): a step of its own after embedding, whose cost grows faster
than the rows. Qdrant and Milvus index points as they arrive, so their write rate already
covers it (reindexer.estimate) and ``VectorStore.ann_index_plan`` is None for them: nothing
is added.

Every apply that built an index records the build per store (``record_build``: kind,
settings, rows, dimension, seconds, the memory and parallel workers it had), and its
seconds are taken out of the rate reindexer.estimate records, so that the two are not
counted twice. A plan estimates the new build from the recorded builds of the same kind on
this store, each scaled by the work model below (the median; the interval from the
smallest and largest, at least ±TIMING_BAND). Without one, it times a small build now
(``VectorStore.time_index_build``: PROBE_ROWS random vectors of the model's dimension, in a
transaction that is rolled back) and scales that. A small table is built by one process, so
the low end of that interval has every parallel maintenance worker of the server sharing
the build, and the point has none.

The work model, what scales one build to another:

- HNSW: rows x log2(rows) x ef_construction x m x dimensions. Each insertion walks the
  graph (about log rows hops) keeping ef_construction candidates and comparing up to 2m
  neighbours of each, each comparison a pass over the dimensions. Past maintenance_work_mem
  pgvector goes on building on disk: the rows past the memory cost ONDISK_SLOWDOWN times as
  much, and the line says what memory to set.
- IVFFlat: rows x (lists + IVF_ROW_WORK) x dimensions: every row compared with every list's
  center, plus its read and write. Past maintenance_work_mem pgvector's k-means stops with
  an error, so the plan refuses it (exit 2) with the setting that makes it fit.

Coarse by nature (a timed build of a thousand random vectors stands for millions of real
ones), so the basis says how it was made; an apply's own build replaces it for the next plan.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from reindexer.errors import UsageError
from reindexer.estimate import TIMING_BAND
from reindexer.state.models import iso, utcnow
from reindexer.state.store import StateStore

#: builds kept per store; the estimate scales these
INDEX_HISTORY = 10
#: random vectors the small timed build indexes (0.3 to 0.8 s for HNSW at 384 dimensions here)
PROBE_ROWS = 1000
#: IVFFlat lists of the small timed build: one per this many of its rows, at most the real build's
PROBE_ROWS_PER_LIST = 50
#: IVFFlat: a row's read and write, as many lists' worth of comparisons (14 to 24 measured here, at 8,000 and
#: 32,000 rows of 384 dimensions with 1 to 100 lists)
IVF_ROW_WORK = 16
#: HNSW rows past maintenance_work_mem cost this many times as much (4 to 7 measured here: 5,000 rows of 384
#: dimensions with 4 MB against the whole graph in memory)
ONDISK_SLOWDOWN = 5.0
#: the settings that name a build, per kind, as the plan's line shows them
SETTINGS = {"hnsw": ("m", "ef_construction"), "ivfflat": ("lists", "probes")}


def _key(store_url: str) -> str:
    return f"index-build:{store_url}"


def past_builds(state: StateStore, store_url: str) -> list[dict[str, Any]]:
    """The recorded index builds on this store, oldest first."""
    builds = state.get_meta(_key(store_url))
    return json.loads(builds) if builds is not None else []


def record_build(state: StateStore, store_url: str, built: dict[str, Any]) -> dict[str, Any]:
    """Remember an apply's index build (``CollectionInfo.ann_index``) for later plans on this store."""
    entry = {"at": iso(utcnow()), **built}
    state.append_meta_list(_key(store_url), entry, keep=INDEX_HISTORY)
    return entry


def work(build: dict[str, Any]) -> float:
    """The work model's size of a build: what its seconds are proportional to."""
    rows, dim = max(int(build["rows"]), 2), int(build["dim"])
    if build["kind"] == "ivfflat":
        return rows * (int(build["lists"]) + IVF_ROW_WORK) * dim
    return rows * math.log2(rows) * int(build["ef_construction"]) * int(build["m"]) * dim


def memory_factor(build: dict[str, Any]) -> float:
    """How much slower than in memory an HNSW build is, for the share of its rows past maintenance_work_mem."""
    wanted, limit = build.get("memory"), build.get("maintenance_work_mem")
    if build["kind"] != "hnsw" or not wanted or not limit or wanted <= limit:
        return 1.0
    fits = limit / wanted
    return fits + (1 - fits) * ONDISK_SLOWDOWN


def seconds_per_work(build: dict[str, Any]) -> float:
    return float(build["seconds"]) / (work(build) * memory_factor(build))


def probe_settings(planned: dict[str, Any], rows: int) -> dict[str, Any]:
    """The small timed build's settings: the planned build's, IVFFlat's lists in proportion to its rows."""
    settings = {"kind": planned["kind"], **{k: planned[k] for k in SETTINGS[planned["kind"]]}}
    if planned["kind"] == "ivfflat":
        lists = min(int(planned["lists"]), max(1, rows // PROBE_ROWS_PER_LIST))
        settings.update(lists=lists, probes=min(int(planned["probes"]), lists))
    return settings


def check_memory(planned: dict[str, Any], rows: int) -> None:
    """``UsageError`` for an index build that pgvector would stop for want of maintenance_work_mem."""
    wanted, limit = planned["memory"], planned["maintenance_work_mem"]
    if planned.get("over_memory") != "fails" or wanted <= limit:
        return
    need = math.ceil(wanted * 1.25 / 2**20)  # a quarter more: the model of pgvector's arrays is within a few %
    raise UsageError(
        f"the {planned['kind']} index over {rows:,} rows with {planned['lists']} lists needs about "
        f"{wanted / 2**20:.0f} MB of maintenance_work_mem for its k-means, and its build would have "
        f"{limit / 2**20:.0f} MB: pgvector stops such a build with an error, after the whole load",
        hint=f"set REINDEX_PG_MAINTENANCE_WORK_MEM={need}MB for plan and apply (memory the server has to spare), "
        "or plan fewer lists with --ivf-lists",
    )


def memory_warning(planned: dict[str, Any], rows: int) -> str | None:
    """For an HNSW graph larger than maintenance_work_mem: where the build slows, and the memory to set."""
    wanted, limit = planned["memory"], planned["maintenance_work_mem"]
    if planned.get("over_memory") != "slows" or wanted <= limit:
        return None
    fits = int(rows * limit / wanted)
    return (
        f"the graph wants about {wanted / 2**20:,.0f} MB and maintenance_work_mem is {limit / 2**20:,.0f} MB: "
        f"past about {fits:,} rows pgvector builds on disk, several times slower (x{ONDISK_SLOWDOWN:g} counted); "
        f"REINDEX_PG_MAINTENANCE_WORK_MEM={math.ceil(wanted * 1.1 / 2**20)}MB keeps it in memory"
    )


def describe_settings(build: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {build[k]}" for k in SETTINGS[build["kind"]] if k in build)


def from_builds(planned: dict[str, Any], builds: list[dict[str, Any]]) -> tuple[float, float, float, str]:
    """Point, low, high seconds and the basis, from earlier builds of the same kind, each scaled by work."""
    scaled = [seconds_per_work(b) * work(planned) * memory_factor(planned) for b in builds]
    point = statistics.median(scaled)
    low, high = min(min(scaled), point * (1 - TIMING_BAND)), max(max(scaled), point * (1 + TIMING_BAND))
    n, last = len(builds), builds[-1]
    basis = (
        f"from {n} earlier {planned['kind']} build{'s' if n != 1 else ''} on this store (the last: "
        f"{last['rows']:,} rows in {last['seconds']:.2f} s), scaled by {_model(planned['kind'])}"
    )
    return point, low, high, basis


def from_probe(
    store: Any, planned: dict[str, Any], rows: int, dim: int, metric: str
) -> tuple[float, float, float, str] | None:
    """Point, low, high seconds and the basis, from a small build timed now; None where the store cannot."""
    probe_rows = min(rows, PROBE_ROWS)
    probe = {**probe_settings(planned, probe_rows), "rows": probe_rows, "dim": dim}
    seconds = store.time_index_build(dim, metric, probe, probe_rows)
    if seconds is None:
        return None
    serial = seconds / work(probe) * work(planned) * memory_factor(planned)
    workers = int(planned.get("parallel_workers") or 0)
    low = serial * (1 - TIMING_BAND) / (workers + 1)
    basis = (
        f"from a {planned['kind']} build of {probe_rows:,} random vectors timed now ({seconds:.2f} s, "
        f"{describe_settings(probe)}), scaled by {_model(planned['kind'])}; built by one process, the low end "
        f"with the {workers} parallel maintenance worker{'s' if workers != 1 else ''} the server allows"
    )
    return serial, low, serial * (1 + TIMING_BAND), basis


def _model(kind: str) -> str:
    if kind == "ivfflat":
        return f"rows x (lists + {IVF_ROW_WORK}) x dimensions"
    return "rows x log2(rows) x ef_construction x m x dimensions"


def index_estimate(ws: Any, dim: int, metric: str, index_params: dict[str, Any], rows: int) -> dict[str, Any] | None:
    """The index build after a load of ``rows`` rows, as the plan states it; None where the store builds none
    after the load. Refuses (``UsageError``) an IVFFlat build that would fail for want of memory."""
    planned = ws.store.ann_index_plan(dim, metric, index_params, rows) if rows > 0 else None
    if planned is None:
        return None
    check_memory(planned, rows)
    planned = {**planned, "rows": rows, "dim": dim}
    builds = [b for b in past_builds(ws.state, ws.store_url) if b.get("kind") == planned["kind"] and b.get("seconds")]
    found = from_builds(planned, builds) if builds else from_probe(ws.store, planned, rows, dim, metric)
    out: dict[str, Any] = {k: planned[k] for k in ("kind", *SETTINGS[planned["kind"]])}
    out.update(rows=rows, memory=planned["memory"], maintenance_work_mem=planned["maintenance_work_mem"])
    if found is None:
        out.update(seconds=None, basis="not timed: the store cannot time a build here")
        return out
    point, low, high, basis = found
    out.update(
        seconds=round(point, 2),
        seconds_low=round(low, 2),
        seconds_high=round(high, 2),
        method="history" if builds else "measured",
        basis=basis,
    )
    warning = memory_warning(planned, rows)
    if warning:
        out["warning"] = warning
    return out
