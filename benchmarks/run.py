"""One command, one run, side-by-side ratios: ``python benchmarks/run.py`` (or ``make bench``).

Builds a collection of ``--docs`` documents with all-MiniLM-L6-v2 on CPU, then
measures a no-op sync and a sync with ``--changed`` of the documents rewritten,
each as a fraction of the full build's time; and the same work through
LangChain's ``index()`` (SQLRecordManager, cleanup="incremental", the same
model and store kind) as the reference. Exits 1 when a target is missed, unless
``--report-only``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.incremental import render, run  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=20_000, help="documents in the corpus (default 20000)")
    p.add_argument("--store", default="qdrant+local",
                   help="qdrant+local[:PATH] (default) or milvus+lite[:PATH.db]; default paths lie in the temp folder")
    p.add_argument("--changed", type=float, default=0.01, help="fraction of documents rewritten (default 0.01)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each incremental step; the median counts (default 3)")
    p.add_argument("--batch-size", type=int, default=256, help="documents per batch, both tools (default 256)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--skip-langchain", action="store_true", help="do not measure the LangChain reference")
    p.add_argument("--skip-cli", action="store_true", help="do not time a no-op sync in a new process")
    p.add_argument("--profile", type=int, metavar="N", default=0,
                   help="also cProfile one no-op sync and print its N heaviest functions to stderr")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--workdir", help="work in this folder and keep it (default: a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--report-only", action="store_true", help="exit 0 even when a target is missed")
    args = p.parse_args(argv)
    if args.docs < 2:
        p.error("--docs must be at least 2")
    if not 0 < args.changed <= 1:
        p.error("--changed must be a fraction in (0, 1]")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
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
