"""Cut-over and rollback time against collection size: ``python benchmarks/liveness.py`` (``make bench-liveness``).

Whole commands, as an operator runs them: a new ``reindex`` process for each (``python -m
reindexer.cli --yes --json cutover|rollback docs``), process start, imports and the store's
opening included. For each store and size, a collection ``docs`` with two versions is made
outside the timed part: v1 live and v2 built beside it from v1's payload, both by the real
``plan`` and ``apply`` with a one-layer MiniLM (32 tokens, vectors truncated to 64 and 32
dimensions) over the first ``--real`` documents; the rest of the points are then written
into both versions with the same payloads and tags, random unit vectors and the ledger
rows a build records (the catch-up reads payloads, tags and ledgers, never vectors; embedding
10^5 documents twice would take most of an hour on 2 cores). Then, timed:

1. ``status`` (the floor: a process that opens the store and the state and reads the alias);
2. ``cutover`` to v2 and ``rollback`` to v1 with nothing written since the last sync (``--swaps N``: N
   such pairs, medians reported, each run's seconds in ``swap_runs_s``);
3. ``cutover --to v2`` and ``rollback`` with ``--writes`` new points written into the live
   version before each, as an application writes them (its own payload, no tool tag);
4. ``cutover --to v2`` after the application deleted one point: a deletion leaves nothing to
   find, so the count check sends this one through the full pass (what every catch-up was before;
   ``--no-full-pass`` skips it: at 10^6 points it is the longest part of a run).

``--stores milvus-server`` runs the same against a Milvus standalone started for the run (the
``milvus`` package; run the benchmark in a loopback-only network namespace, docs/benchmarks.md),
emptied between sizes; before the first timed command of each size it waits until the server has
indexed every row of both versions (``settle_s``), so that its compaction of the rows just written
is not timed as the tool's.

Each command's JSON says how its catch-up went (``catch_up``), which the table shows.
Prints one JSON line per store and size, then a table; exits 1 when a command fails or an
application's write is missing from the version the alias reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import log, write_jsonl  # noqa: E402
from benchmarks.throughput import MilvusStandalone, short_documents, tiny_model  # noqa: E402

COLLECTION = "docs"
STORES = ("qdrant+local", "milvus+lite")
SERVER = "milvus-server"
SEED_CHUNK = 2000
#: seeded points between flushes: Milvus Lite's writes slow down as its unflushed memtable grows (seeding
#: 10^6 points went from about 2,000 to under 100 points a second per version past 500,000 without them)
SEED_FLUSH = 100_000


def store_url(kind: str, folder: Path, server: str | None = None) -> str:
    if kind == SERVER:
        assert server is not None, "a Milvus standalone is started for --stores milvus-server"
        return server
    return f"qdrant+local:{folder / 'qdrant'}" if kind == "qdrant+local" else f"milvus+lite:{folder / 'milvus.db'}"


def empty_server(url: str) -> None:
    """Drop what one size left on the server (the alias, then the versions), so that the next starts bare."""
    from reindexer.adapters import open_store

    with open_store(url) as store:
        if store.get_alias(COLLECTION) is not None:
            store.drop_alias(COLLECTION)
        for name in store.list_collections():
            if name.startswith(f"{COLLECTION}__"):
                store.drop_collection(name)


def _env(url: str, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REINDEX_STORE": url,
        "REINDEX_STATE": f"sqlite:///{folder / 'state.db'}",
        "REINDEX_PROGRESS": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _workspace(url: str, folder: Path):
    from reindexer.config import Config
    from reindexer.workspace import Workspace

    return Workspace(Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder / 'state.db'}"))


def make_world(url: str, folder: Path, docs: int, real: int, model: str) -> None:
    """v1 live and v2 built from its payload, by the real plan and apply over ``real`` documents; the
    rest written into both as those builds write (payload, tag, ledger row), with random vectors."""
    from reindexer import commands
    from reindexer.adapters.base import MODEL_KEY, Point
    from reindexer.model_identity import ModelSettings
    from reindexer.sources.base import content_hash
    from reindexer.sources.spec import SourceSpec

    corpus = write_jsonl(folder / "first.jsonl", short_documents(min(docs, real)))
    with _workspace(url, folder) as ws:
        commands.apply(
            ws,
            commands.plan(
                ws,
                COLLECTION,
                model_path=model,
                estimate=False,
                source=SourceSpec(kind="jsonl", location=str(corpus)),
                settings=ModelSettings(truncate_dim=64),
            ),
        )
        plan = commands.plan(ws, COLLECTION, model_path=model, estimate=False, settings=ModelSettings(truncate_dim=32))
        commands.apply(ws, plan, cutover=False)
        lc = ws.state.get_collection(ws.store_url, COLLECTION)
        versions = [(v, ws.state.model_of(v)) for v in ws.state.versions(lc.id)]
        rng = np.random.default_rng(0)
        rest = list(short_documents(docs))[real:]
        for start in range(0, len(rest), SEED_CHUNK):
            chunk = rest[start : start + SEED_CHUNK]
            rows = [(d["id"], content_hash(d["text"], {"text": d["text"]})) for d in chunk]
            for version, model_version in versions:
                vectors = rng.standard_normal((len(chunk), version.dim), dtype=np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                points = [
                    Point(d["id"], v, {"text": d["text"], MODEL_KEY: model_version.short})
                    for d, v in zip(chunk, vectors.tolist(), strict=True)
                ]
                ws.store.upsert(version.physical_name, points)
                ws.state.record_batch(version.id, model_version.fingerprint, rows)
                if (start + len(chunk)) % SEED_FLUSH < SEED_CHUNK:
                    ws.store.finish_writes(version.physical_name)
                    log(f"seeded {real + start + len(chunk):,} points of {version.physical_name}")
        for version, _ in versions:
            ws.store.finish_writes(version.physical_name)
            if ws.store.count(version.physical_name) != docs:
                raise RuntimeError(f"{version.physical_name} holds {ws.store.count(version.physical_name)} points")


def wait_until_indexed(url: str, timeout: float = 3600.0, poll: float = 5.0) -> float:
    """Seconds until the Milvus server has indexed every row of both versions (``describe_index``).

    Right after 2 x 10^6 rows are written the server spends minutes building their index; a command
    timed then measures that work too (even ``status`` took 1.5x its 10^4 time). An operator's
    rollback meets a collection that has been serving for a while, so the timings start once the
    index is built. The wait is reported, not hidden (``settle_s``).
    """
    from reindexer.adapters import open_store

    began = time.perf_counter()
    with open_store(url) as store:
        client = store._client  # a benchmark's look at the server's own progress
        while True:
            pending = {}
            for name in store.list_collections():
                if not name.startswith(f"{COLLECTION}__"):
                    continue
                for index in client.list_indexes(name):
                    info = client.describe_index(name, index)
                    total, indexed = int(info.get("total_rows", 0)), int(info.get("indexed_rows", 0))
                    waiting = int(info.get("pending_index_rows", 0) or 0)
                    if indexed < total or waiting > 0 or info.get("state") not in (None, "Finished"):
                        pending[f"{name}.{index}"] = f"{indexed:,} of {total:,} indexed, {waiting:,} pending"
            waited = time.perf_counter() - began
            if not pending:
                return waited
            if waited > timeout:
                raise RuntimeError(f"the server had not indexed everything after {waited:.0f} s: {pending}")
            log(f"waiting for the server's index ({waited:.0f} s): {pending}")
            time.sleep(poll)


def _unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dim)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def app_writes(url: str, folder: Path, n: int, round_: int) -> list[str]:
    """``n`` new points written into the live version through the alias, as an application writes them;
    ``n`` < 0: that many of its points deleted through the alias."""
    from reindexer.adapters.base import Point

    ids = [f"app-{round_}-{i}" for i in range(n)]
    with _workspace(url, folder) as ws:
        if n < 0:
            ws.store.delete(COLLECTION, [f"d{i:07d}" for i in range(-n)])
            return []
        dim = ws.store.describe(COLLECTION).dim
        rng = random.Random(round_)
        ws.store.upsert(
            COLLECTION, [Point(d, _unit(rng, dim), {"text": f"written by the application, {d}"}) for d in ids]
        )
    return ids


def timed(url: str, folder: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Seconds of one whole ``reindex`` command, and its JSON answer."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--yes", "--json", *args],
        capture_output=True,
        text=True,
        env=_env(url, folder),
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reindex {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def missing_writes(url: str, folder: Path, ids: list[str]) -> list[str]:
    with _workspace(url, folder) as ws:
        found = {p.doc_id for p in ws.store.retrieve(COLLECTION, ids)}
    return [i for i in ids if i not in found]


def measure(
    kind: str,
    docs: int,
    writes: int,
    real: int,
    root: Path,
    server: str | None = None,
    swaps: int = 1,
    full_pass: bool = True,
) -> dict[str, Any]:
    """One world's timings; the nothing-changed cut-over and rollback ``swaps`` times (their medians count)."""
    folder = root / f"{kind.replace('+', '_')}-{docs}"
    folder.mkdir(parents=True)
    url = store_url(kind, folder, server)
    began = time.perf_counter()
    make_world(url, folder, docs, real, tiny_model(root))
    out: dict[str, Any] = {
        "store": kind,
        "points": docs,
        "writes": writes,
        "build_s": round(time.perf_counter() - began, 1),
    }
    if kind == SERVER:
        out["settle_s"] = round(wait_until_indexed(url), 1)
    steps: list[tuple[str, tuple[str, ...], int]] = [("status", ("status", COLLECTION), 0)]
    steps += [("cutover", ("cutover", COLLECTION, "--to", "v2"), 0), ("rollback", ("rollback", COLLECTION), 0)] * swaps
    steps += [
        ("cutover_writes", ("cutover", COLLECTION, "--to", "v2"), writes),
        ("rollback_writes", ("rollback", COLLECTION), writes),
    ]
    if full_pass:
        steps.append(("cutover_deleted", ("cutover", COLLECTION, "--to", "v2"), -1))
    lost: list[str] = []
    runs: dict[str, list[float]] = {}
    for i, (name, args, n) in enumerate(steps):
        ids = app_writes(url, folder, n, i) if n else []  # (deletions return none to look for)
        seconds, answer = timed(url, folder, *args)
        how = answer.get("catch_up", "-") if isinstance(answer, dict) else "-"
        log(f"{kind}, {docs:,} points: {name} {seconds:.1f} s ({how})")  # a long run's figures as they come
        runs.setdefault(name, []).append(round(seconds, 2))
        out[f"{name}_s"] = round(statistics.median(runs[name]), 2)
        if "catch_up" in answer:
            out[f"{name}_how"] = answer["catch_up"]
        lost += missing_writes(url, folder, ids)
    if swaps > 1:
        out["swap_runs_s"] = {name: runs[name] for name in ("cutover", "rollback")}
    out["lost_writes"] = len(lost)
    out["load_avg"] = [round(x, 1) for x in os.getloadavg()]  # 2 shared cores: the timings' context
    return out


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| store | points | status | cutover | rollback | cutover, N writes | rollback, N writes "
        "| cutover after a deletion (full pass) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = r["writes"]
        lines.append(
            f"| {r['store']} | {r['points']:,} | {r['status_s']:.1f} s | {r['cutover_s']:.1f} s | "
            f"{r['rollback_s']:.1f} s | {r['cutover_writes_s']:.1f} s ({w}) | {r['rollback_writes_s']:.1f} s ({w}) | "
            + (f"{r['cutover_deleted_s']:.1f} s |" if "cutover_deleted_s" in r else "- |")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/liveness.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="points per collection, comma-separated")
    p.add_argument(
        "--stores",
        default=",".join(STORES),
        help=f"embedded stores, comma-separated; {SERVER}: a Milvus standalone started for the run",
    )
    p.add_argument("--writes", type=int, default=100, help="application writes before the last two commands")
    p.add_argument("--real", type=int, default=1000, help="documents embedded by the real builds (the rest seeded)")
    p.add_argument("--workdir", help="keep the worlds here (default: a temporary folder, removed)")
    p.add_argument("--swaps", type=int, default=1, help="nothing-changed cut-over and rollback pairs (medians count)")
    p.add_argument(
        "--no-full-pass", action="store_true", help="skip the deletion that sends a cut-over through the full pass"
    )
    args = p.parse_args(argv)
    rows, failed = [], 0
    kinds = args.stores.split(",")
    with tempfile.TemporaryDirectory(prefix="reindex-liveness-") as tmp, contextlib.ExitStack() as stack:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        server = stack.enter_context(MilvusStandalone(root / "milvus-server")) if SERVER in kinds else None
        for kind in kinds:
            for docs in (int(s) for s in args.sizes.split(",")):
                log(f"{kind}, {docs:,} points")
                row = measure(kind, docs, args.writes, args.real, root, server, args.swaps, not args.no_full_pass)
                if kind == SERVER:
                    empty_server(server)
                failed += row["lost_writes"] > 0
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(render(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
