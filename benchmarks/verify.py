"""Verification time against collection size, every point against a sample: ``python benchmarks/verify.py``.

Issue 26 point 3: ``verify`` and apply's verification check counts and a random sample of
VERIFY_POINTS (4,603) points by default, ``--full`` every point. For each size, a collection
``docs`` on Qdrant local is made outside the timed part: v1 built by the real ``plan`` and
``apply`` with a one-layer MiniLM (32 tokens, vectors truncated to 64 dimensions) over the first
``--real`` documents of a JSONL file, then the rest of the points written as copies of those (the
same payload, tag and vector under new ids, with the ledger rows a build records), so that the
re-embedded sample agrees with what is stored and the version verifies clean; the JSONL file then
gets every document, so that the version's recorded source has as many ids. Then, timed:

1. in this process (the verification alone, the store already open): ``verify_version`` with
   ``full=True``; by sample; and by sample with the source's ids given, as apply verifies (its
   build hands the ids it read);
2. whole commands, each a new ``reindex`` process (start, imports and the store's opening
   included): ``status`` (the floor), ``verify docs`` and ``verify docs --full``; both read the
   source's ids from the JSONL file and check them against the ledger.

Prints one JSON line per size, then a table; exits 1 when a verification is not ok.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import log, write_jsonl  # noqa: E402
from benchmarks.throughput import short_documents, tiny_model  # noqa: E402

COLLECTION = "docs"
CHUNK = 2000


def _env(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REINDEX_STORE": f"qdrant+local:{folder / 'qdrant'}",
        "REINDEX_STATE": f"sqlite:///{folder / 'state.db'}",
        "REINDEX_PROGRESS": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _workspace(folder: Path):
    from reindexer.config import Config
    from reindexer.workspace import Workspace

    store, state = f"qdrant+local:{folder / 'qdrant'}", f"sqlite:///{folder / 'state.db'}"
    return Workspace(Config(base_dir=folder, store_url=store, state_url=state))


def make_version(folder: Path, docs: int, real: int, model: str) -> None:
    """v1 built by the real plan and apply over ``real`` documents; the rest copies of those points
    under new ids (payload, tag, vector, ledger row), written as a build writes them."""
    from reindexer import commands
    from reindexer.adapters.base import Point
    from reindexer.model_identity import ModelSettings
    from reindexer.sources.spec import SourceSpec

    corpus = write_jsonl(folder / "first.jsonl", short_documents(min(docs, real)))
    with _workspace(folder) as ws:
        plan = commands.plan(
            ws,
            COLLECTION,
            model_path=model,
            estimate=False,
            source=SourceSpec(kind="jsonl", location=str(corpus)),
            settings=ModelSettings(truncate_dim=64),
        )
        commands.apply(ws, plan)
        lc = ws.state.get_collection(ws.store_url, COLLECTION)
        [version] = ws.state.versions(lc.id)
        fingerprint = ws.state.model_of(version).fingerprint
        seeds = sorted(ws.store.retrieve(version.physical_name, [d["id"] for d in short_documents(real)], True),
                       key=lambda p: p.doc_id)  # fmt: skip
        hashes = ws.state.ledger_hashes(version.id, [p.doc_id for p in seeds])
        for start in range(real, docs, CHUNK):
            ids = [f"d{i:07d}" for i in range(start, min(start + CHUNK, docs))]
            like = [(d, seeds[i % len(seeds)]) for i, d in enumerate(ids, start)]
            ws.store.upsert(version.physical_name, [Point(d, p.vector, dict(p.payload)) for d, p in like])
            ws.state.record_batch(version.id, fingerprint, [(d, hashes[p.doc_id]) for d, p in like])
        ws.store.finish_writes(version.physical_name)
        # The source the version records (and `reindex verify` compares ids with) now holds every document.
        texts = {p.doc_id: p.payload["text"] for p in seeds}
        write_jsonl(corpus, ({"id": f"d{i:07d}", "text": texts[f"d{i % real:07d}"]} for i in range(docs)))
        if ws.store.count(version.physical_name) != docs:
            raise RuntimeError(f"{version.physical_name} holds {ws.store.count(version.physical_name)} points")


def in_process(folder: Path) -> dict[str, Any]:
    """Seconds of ``verify_version``: every point, a sample, a sample with the source's ids (as apply)."""
    from reindexer.build.verify import verify_version
    from reindexer.idset import IdSet

    out: dict[str, Any] = {}
    with _workspace(folder) as ws:
        lc = ws.state.get_collection(ws.store_url, COLLECTION)
        [version] = ws.state.versions(lc.id)
        model = ws.state.model_of(version)
        verify_version(ws, lc, version, model, sample=16, points=10)  # the model loaded, the store warm
        with IdSet() as source_ids:
            for page in ws.state.ledger_id_pages(version.id, page=10_000):
                source_ids.add(page)
            for name, options in (
                ("full", {"full": True}),
                ("sample", {}),
                ("sample_with_source", {"source_ids": source_ids}),
            ):
                started = time.perf_counter()
                report = verify_version(ws, lc, version, model, **options)
                out[f"{name}_s"] = round(time.perf_counter() - started, 2)
                out[f"{name}_ok"] = report.ok
                out[f"{name}_checked"] = report.points_checked
    return out


def timed(folder: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Seconds of one whole ``reindex`` command, and its JSON answer."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--json", *args],
        capture_output=True,
        text=True,
        env=_env(folder),
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reindex {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def measure(docs: int, real: int, root: Path) -> dict[str, Any]:
    folder = root / f"qdrant_local-{docs}"
    folder.mkdir(parents=True)
    began = time.perf_counter()
    make_version(folder, docs, real, tiny_model(root))
    out: dict[str, Any] = {"store": "qdrant+local", "points": docs, "build_s": round(time.perf_counter() - began, 1)}
    out.update(in_process(folder))
    out["status_cmd_s"] = round(timed(folder, "status", COLLECTION)[0], 2)
    for name, args in (("verify_cmd", ()), ("verify_full_cmd", ("--full",))):
        seconds, answer = timed(folder, "verify", COLLECTION, *args)
        out[f"{name}_s"] = round(seconds, 2)
        out[f"{name}_ok"] = answer["ok"]
        out[f"{name}_coverage"] = answer["before"]["coverage"]
    out["load_avg"] = [round(x, 1) for x in os.getloadavg()]  # 2 shared cores: the timings' context
    return out


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| points | full pass | sample | sample + source ids (apply) | `status` | `verify` | `verify --full` |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['points']:,} | {r['full_s']:.2f} s | {r['sample_s']:.2f} s | {r['sample_with_source_s']:.2f} s "
            f"| {r['status_cmd_s']:.1f} s | {r['verify_cmd_s']:.1f} s | {r['verify_full_cmd_s']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/verify.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="points per collection, comma-separated")
    p.add_argument("--real", type=int, default=500, help="documents embedded by the real build (the rest copies)")
    p.add_argument("--workdir", help="keep the collections here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="reindex-verify-") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        for docs in (int(s) for s in args.sizes.split(",")):
            log(f"qdrant+local, {docs:,} points")
            row = measure(docs, args.real, root)
            failed += not all(v for k, v in row.items() if k.endswith("_ok"))
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(render(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
