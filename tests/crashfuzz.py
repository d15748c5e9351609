"""A randomized crash fuzzer: SIGKILL a real `reindex` at a random instant, run what an operator runs next, check.

Shared by ``tests/test_crash_fuzz.py`` (about 30 iterations on Qdrant local and Milvus Lite)
and ``benchmarks/crash_fuzz.py`` (hundreds, the Milvus server too). One iteration:

1. **A world** (``FuzzWorld``): ``docs``, ``N_DOCS`` documents from a JSONL file, v1 (MiniLM)
   live and a plan for v2 (MiniLM truncated to 256 dimensions, a real second model version);
   ``kb``, a collection an application made and queries by its real name, adopted and not
   migrated; ``notes``, an untagged copy of kb's points, not adopted. It is built once per
   backend in three stages, each kept as a pristine copy (the store folder and the state
   database; rebuilt from scratch on a server): ``v1`` (as above), ``built`` (v2 built and
   verified, not cut over) and ``cut`` (v2 live, v1 retired). The iteration restores the stage
   its operation needs and adds **pending application writes**: documents edited, deleted and
   added in the JSONL file; for ``kb``, points written into the collection itself (added,
   changed, deleted, untagged, as an application writes them); for ``verify --fix``, a few
   points deleted behind the ledger's back.
2. **An operation** drawn at random (``OPS``): apply of the v2 plan, sync, cutover, rollback,
   gc, migrate (of kb), adopt (of notes), verify --fix. It runs as its own process and is
   SIGKILLed (with its process group: Milvus Lite's server goes too) after a delay drawn as
   ``uniform(0, 1.2) x`` the operation's typical duration (``TYPICAL``, measured on this
   project's machine; ``benchmarks/crash_fuzz.py --calibrate`` measures it again). A run that
   finishes first is an iteration too.
3. **The operator's next command**, as the README's "Reliability" section names it: ``apply
   --resume COLLECTION`` or the same apply again, sync again, cutover or rollback again or
   ``status`` (which reconciles), gc again, migrate again or sync, adopt again, verify --fix
   again. Then the checks (``check_world``): every command exits 0 or with the documented code
   its situation calls for (never 1, never a traceback); the store's alias and the state's
   live version agree for every collection; ``reindex verify`` shows no problem but the pending
   writes; after the scheduled ``reindex sync`` verify is clean and the live version holds
   every document of the source exactly once, with the live model's tag, the source's text and
   the live model's vector of that text (so does every built shadow, which sync keeps up to
   date); a Searcher answer comes from the live version only.

The processes are forked from a **launcher** that imported torch, sentence-transformers and the
store clients once (``Launcher``): the child is a process of its own (a session leader, so the
kill takes its process group) running the real ``reindexer.cli.main``, so a kill lands in the
command's work (opening the state and the store, loading the model, embedding, writing) rather
than in 10 s of imports. It exits as the interpreter does (threads joined, atexit handlers run,
streams flushed) but skips the module teardown, 2.6 s with torch loaded. Every process runs
with one torch thread (``REINDEX_THREADS=1``): on a loaded machine two threads spin against each
other. An iteration costs 1 to 4 s; the next command and the checks run in this process.

A failure names its seed and iteration; ``REINDEX_FUZZ_SEED=S REINDEX_FUZZ_START=I
REINDEX_FUZZ_ITERATIONS=1`` replays that iteration alone (each iteration draws from its own
``random.Random(f"{seed}/{backend}/{i}")``).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

DOCS, KB, NOTES = "docs", "kb", "notes"
N_DOCS = 32  # the smallest corpus that spans several batches:
BATCH = 4  # 8 batches for a full build, a checkpoint each; one text per encode call (as tests/test_crash.py)
N_KB = 12
TRUNCATE_DIM = 256  # v2: the packaged MiniLM truncated, a real second model version
RUN_TIMEOUT = 240.0  # seconds for one killed-or-finished run: far beyond what one takes
MIN_COSINE = 0.999  # a stored vector against the live model's embedding of the source's text
OPS = ("apply", "sync", "cutover", "rollback", "gc", "migrate", "adopt", "verify-fix")

# What an application writes into kb while the tool works (its own texts, embedded by its own model).
APP_TEXTS = [
    "Zebras cross the Mara river every year in search of fresh grazing.",
    "A sourdough starter needs flour, water and a warm kitchen.",
    "Lighthouses once burned whale oil to guide ships past the reef.",
    "Glaciers carve U-shaped valleys as they slide downhill over centuries.",
    "The violin's sound post transmits vibrations from the top plate to the back.",
]

# Typical duration in seconds of each operation's process, fork to exit, on this project's shared
# 2-core machine (median of 2 uncut runs each, `benchmarks/crash_fuzz.py --calibrate 2`, 6 December
# 2026, load average about 5): the kill delay is drawn from uniform(0, 1.2) times this. A sync or an
# apply loads the model and embeds one text per call; cutover, rollback and gc only open the store
# and the state.
TYPICAL: dict[str, dict[str, float]] = {
    "qdrant-local": {
        "apply": 1.63,
        "sync": 0.63,
        "cutover": 0.16,
        "rollback": 0.16,
        "gc": 0.14,
        "migrate": 1.1,
        "adopt": 0.92,
        "verify-fix": 1.4,
    },
    "milvus-lite": {
        "apply": 1.77,
        "sync": 1.25,
        "cutover": 0.21,
        "rollback": 0.23,
        "gc": 0.21,
        "migrate": 1.2,
        "adopt": 1.09,
        "verify-fix": 1.55,
    },
}
# The Milvus standalone server, measured the same way (median of 2, 6 December 2026, under unshare -rn).
TYPICAL["milvus-server"] = {
    "apply": 4.61,
    "sync": 0.97,
    "cutover": 0.24,
    "rollback": 0.43,
    "gc": 0.36,
    "migrate": 4.31,
    "adopt": 0.95,
    "verify-fix": 2.1,
}

# What the launcher imports once, before it forks a process per command.
PRELOAD = (
    "torch",
    "transformers",
    "sentence_transformers",
    "numpy",
    "sqlalchemy",
    "click",
    "rich",
    "qdrant_client",
    "pymilvus",
    "milvus_lite",
    "reindexer.cli",
    "reindexer.commands",
    "reindexer.commands.syncing",
    "reindexer.embedding",
    "reindexer.build.stream",
    "reindexer.build.steps",
    "reindexer.adapters",
    "reindexer.adapters.qdrant",
    "reindexer.adapters.milvus",
)


class FuzzFailure(AssertionError):
    """An invariant broke after the next command."""


# -- the launcher: one process that imported everything, forking one child per command --------------
def _zygote() -> None:
    """``python -m tests.crashfuzz --zygote``: import what `reindex` needs, then fork a child per request.

    Protocol (JSON lines): a request ``{"args", "env", "cwd", "stdout", "stderr"}`` on stdin is
    answered ``{"pid": N}`` once the child leads a session of its own (so the whole group can be
    killed), then ``{"pid": N, "returncode": RC}`` when it ends (negative: the signal).
    """
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's; what imports print goes to the log
    os.dup2(2, 1)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional client that is not installed: the child imports what it needs
            pass
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        ready_r, ready_w = os.pipe()
        out.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            out.close()
            _child(req, ready_w)  # never returns
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        out.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")


def _child(req: dict[str, Any], ready: int) -> None:
    os.setsid()
    os.write(ready, b".")
    os.close(ready)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = ["reindex", *req["args"]]
    code = 0
    try:
        from reindexer.cli import main

        main()
    except SystemExit as exc:  # as the interpreter maps it
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 (what the interpreter prints for an uncaught exception)
        traceback.print_exc()
        code = 1
    _leave(code)


def _leave(code: int) -> None:
    """Exit as the interpreter does (non-daemon threads joined, atexit handlers run, streams flushed),
    without then tearing down torch's modules one by one: 2.6 s on this machine, nothing outside the process."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    kill_after: float | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def describe(self) -> str:
        return (
            f"`reindex {' '.join(self.args)}` exited {self.returncode} after {self.seconds:.2f}s"
            f"{f' (kill at {self.kill_after:.2f}s)' if self.kill_after is not None else ''}\n"
            f"stdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-3000:]}"
        )


class Launcher:
    """Starts `reindex` processes forked from a process that imported the heavy modules once."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crashfuzz", "--zygote"],
            cwd=ROOT,
            env=env or dict(os.environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._buf = b""
        started = time.monotonic()
        msg = self._readline(300)
        if msg is None or "ready" not in msg:
            self.close()
            raise RuntimeError(f"the launcher did not start (log: {log})")
        self.startup_seconds = time.monotonic() - started

    def _readline(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the launcher exited ({self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def run(
        self,
        args: tuple[str, ...],
        env: dict[str, str],
        cwd: Path,
        kill_after: float | None = None,
        timeout: float = RUN_TIMEOUT,
    ) -> Run:
        """Run `reindex ARGS`; SIGKILL its process group ``kill_after`` seconds after the fork, if still running."""
        assert self.proc.stdin is not None
        out, err = cwd / "fuzz-stdout.txt", cwd / "fuzz-stderr.txt"
        req = {"args": list(args), "env": env, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        msg = self._readline(60)
        if msg is None:
            raise RuntimeError("the launcher did not fork")
        pid, started = msg["pid"], time.monotonic()
        wait = timeout if kill_after is None else min(kill_after, timeout)
        msg = self._readline(wait)
        if msg is None:  # still running: the kill (or, past the timeout, the end of a hung run)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # ended between the two looks
                pass
            msg = self._readline(60)
            if msg is None:
                raise RuntimeError(f"`reindex {' '.join(args)}` (pid {pid}) survived SIGKILL")
            if kill_after is None or kill_after > timeout:
                raise FuzzFailure(f"`reindex {' '.join(args)}` ran past {timeout:.0f}s")
        seconds = time.monotonic() - started
        return Run(tuple(args), msg["returncode"], out.read_text(), err.read_text(), seconds, kill_after)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def run_here(world: FuzzWorld, args: tuple[str, ...]) -> Run:
    """Run the CLI in this process (the next command and the checks), with the environment a child gets."""
    from click.testing import CliRunner

    from reindexer.cli import cli

    started = time.monotonic()
    try:
        result = CliRunner().invoke(cli, list(args), env=world.env(), catch_exceptions=False)
    except Exception:  # noqa: BLE001 (REINDEX_DEBUG is set: an unexpected error comes here, traceback and all)
        return Run(tuple(args), 1, "", traceback.format_exc(), time.monotonic() - started)
    return Run(tuple(args), result.exit_code, result.stdout, result.stderr, time.monotonic() - started)


# -- the world -------------------------------------------------------------------------------------------
def scaled_documents(base: list[dict], n: int) -> list[dict]:
    """``n`` distinct documents: the demo corpus, repeated with a varying sentence and new ids."""
    out = []
    for i in range(n):
        d = dict(base[i % len(base)])
        round_ = i // len(base)
        if round_:
            d["id"] = f"{d['id']}-r{round_}"
            d["text"] = f"{d['text']} Revision {round_} of this article."
        out.append({"id": d["id"], "text": d["text"]})
    return out


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


STAGES = ("v1", "built", "cut")


@dataclass
class FuzzWorld:
    kind: str  # qdrant-local, milvus-lite, milvus-server
    base: Path
    minilm_path: Path
    documents: list[dict]
    store_url: str = ""
    kb_docs: list[dict] = field(default_factory=list)
    short: dict[str, str] = field(default_factory=dict)  # v1 / v2 -> model short fingerprint
    app_vectors: dict[str, list[float]] = field(default_factory=dict)  # APP_TEXTS, embedded by kb's model
    build_seconds: float = 0.0
    _references: dict[tuple[int, str], Any] = field(default_factory=dict)
    _embedders: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ws_dir = self.base / "ws"
        self.state_db = self.ws_dir / "state.db"
        self.corpus = self.base / "corpus.jsonl"
        self.plan_v2 = self.base / "plan-v2.json"
        if not self.store_url:
            self.store_url = (
                f"qdrant+local:{self.ws_dir / 'qdrant'}"
                if self.kind == "qdrant-local"
                else f"milvus+lite:{self.ws_dir / 'milvus.db'}"
            )

    @property
    def embedded(self) -> bool:
        return self.kind in ("qdrant-local", "milvus-lite")

    def config(self):
        from reindexer.config import Config

        return Config(
            base_dir=self.base, store_url=self.store_url, state_url=f"sqlite:///{self.state_db}", batch_size=BATCH
        )

    def workspace(self):
        from reindexer.workspace import Workspace

        return Workspace(self.config())

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REINDEX_STORE": self.store_url,
            "REINDEX_STATE": f"sqlite:///{self.state_db}",
            "REINDEX_BATCH_SIZE": str(BATCH),
            "REINDEX_EMBED_BATCH_SIZE": "1",  # one text per encode call: a kill lands between batches
            # One torch thread: on a loaded machine two threads spin against each other and an encode
            # of one text takes ten times as long (308 ms against 30 ms, measured at load 6 on 2 cores).
            "REINDEX_THREADS": os.environ.get("REINDEX_FUZZ_THREADS", "1"),
            "REINDEX_PROGRESS": "0",
            "REINDEX_DEBUG": "1",  # an unexpected error shows its traceback (and fails the iteration)
            "REINDEX_RETRY_ATTEMPTS": "2",
            "REINDEX_RETRY_INITIAL": "0.05",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    # building ------------------------------------------------------------------------------------
    def build(self) -> None:
        """Build the three stages; on an embedded store, keep a pristine copy of each."""
        from reindexer.embedding import Embedder

        started = time.monotonic()
        self.kb_docs = [{"id": f"kb-{i}", "text": d["text"]} for i, d in enumerate(self.documents[-N_KB:])]
        vectors = Embedder(self.minilm_path).embed_documents(APP_TEXTS)
        self.app_vectors = {t: v.tolist() for t, v in zip(APP_TEXTS, vectors, strict=True)}
        self._build("cut", keep=True)
        self.build_seconds = time.monotonic() - started

    def _build(self, upto: str, keep: bool = False) -> None:
        from reindexer import commands
        from reindexer.adapters.base import CollectionSpec, Point
        from reindexer.embedding import Embedder
        from reindexer.model_identity import ModelSettings
        from reindexer.planner import load_plan_file
        from reindexer.sources.spec import SourceSpec

        if not self.embedded:
            _drop_everything(self.store_url)
        shutil.rmtree(self.ws_dir, ignore_errors=True)
        self.ws_dir.mkdir(parents=True)
        write_jsonl(self.corpus, self.documents)

        def stage_done(name: str) -> bool:
            if keep and self.embedded:
                shutil.rmtree(self.base / f"pristine-{name}", ignore_errors=True)
                shutil.copytree(self.ws_dir, self.base / f"pristine-{name}")
            return name == upto

        with self.workspace() as ws:
            p1 = commands.plan(
                ws,
                DOCS,
                model_path=str(self.minilm_path),
                estimate=False,
                source=SourceSpec(kind="jsonl", location=str(self.corpus)),
            )
            assert commands.apply(ws, p1).live == f"{DOCS}__v1"
            vectors = Embedder(self.minilm_path).embed_documents([d["text"] for d in self.kb_docs])
            points = [
                Point(d["id"], v.tolist(), {"text": d["text"]}) for d, v in zip(self.kb_docs, vectors, strict=True)
            ]
            for name in (KB, NOTES):  # made by an application: untagged, queried by their own names
                ws.store.create_collection(CollectionSpec(name=name, dim=len(points[0].vector)))
                ws.store.upsert(name, points)
        with self.workspace() as ws:  # adopted by a process that did not write it, as an application's is
            commands.adopt(ws, KB, str(self.minilm_path), sample=4)
            # From the file, as v1: every version of docs follows the JSONL file (a plan with no source
            # would build v2 from v1's payload, and v2 would then sync from its own). Made again with each
            # rebuild (on a server): a plan names the state database it was made against.
            p2 = commands.plan(
                ws,
                DOCS,
                model_path=str(self.minilm_path),
                settings=ModelSettings(truncate_dim=TRUNCATE_DIM),
                estimate=False,
                source=SourceSpec(kind="jsonl", location=str(self.corpus)),
            )
            assert p2.mode == "full" and p2.counts["to_embed"] == N_DOCS
            self.plan_v2.write_text(p2.to_json() + "\n")
            self.short = {"v1": p1.to_version["model_fingerprint"][:12], "v2": p2.to_version["model_fingerprint"][:12]}
        if stage_done("v1"):
            return
        with self.workspace() as ws:
            r = commands.apply(ws, load_plan_file(self.plan_v2), cutover=False)
            assert not r.cut_over and r.verification["ok"]
        if stage_done("built"):
            return
        with self.workspace() as ws:
            assert commands.cutover(ws, DOCS)["live"] == f"{DOCS}__v2"
        stage_done("cut")

    def restore(self, stage: str, documents: list[dict]) -> None:
        """Put back the stage's pristine workspace and write the source file."""
        if self.embedded:
            shutil.rmtree(self.ws_dir, ignore_errors=True)
            shutil.copytree(self.base / f"pristine-{stage}", self.ws_dir)
        else:
            self._build(stage)
        write_jsonl(self.corpus, documents)

    # what a version should hold ---------------------------------------------------------------------
    def reference(self, dim: int, text: str):
        """The vector the model of dimension ``dim`` (v1: 384, v2: 256) makes of ``text``, one text per call."""
        import numpy as np

        key = (dim, text)
        if key not in self._references:
            if dim not in self._embedders:
                from reindexer.embedding import Embedder
                from reindexer.model_identity import ModelSettings

                settings = ModelSettings(truncate_dim=dim) if dim == TRUNCATE_DIM else None
                self._embedders[dim] = Embedder(self.minilm_path, settings, batch_size=1)
            [v] = self._embedders[dim].embed_documents([text])
            self._references[key] = np.asarray(v, dtype=np.float64)
        return self._references[key]


def _drop_everything(url: str) -> None:
    from reindexer.adapters import open_store

    with open_store(url) as store:
        for alias in store.list_aliases():
            store.drop_alias(alias)
        for name in store.list_collections():
            store.drop_collection(name)


# -- one iteration ----------------------------------------------------------------------------------------
@dataclass
class Scenario:
    seed: int
    backend: str
    iteration: int
    op: str
    stage: str
    args: tuple[str, ...]
    next_args: tuple[str, ...]
    fraction: float  # of the typical duration: the kill delay is fraction x TYPICAL
    delay: float | None  # None: no kill (calibration)
    edited: list[str] = field(default_factory=list)  # docs ids whose text changed in the file
    deleted: list[str] = field(default_factory=list)  # docs ids gone from the file
    added: list[str] = field(default_factory=list)  # new docs ids in the file
    app_added: list[str] = field(default_factory=list)  # kb points written by the application
    app_changed: list[str] = field(default_factory=list)
    app_deleted: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # docs points deleted from the live collection behind
    # the ledger's back (verify --fix only)

    @property
    def collection(self) -> str:
        return {"migrate": KB, "adopt": NOTES}.get(self.op, DOCS)

    def replay(self) -> str:
        return (
            f"REINDEX_FUZZ_SEED={self.seed} REINDEX_FUZZ_START={self.iteration} REINDEX_FUZZ_ITERATIONS=1 "
            f"REINDEX_FUZZ_BACKENDS={self.backend}"
        )


@dataclass
class Record:
    """What one iteration did; ``failure`` is None when every check held."""

    backend: str
    iteration: int
    op: str
    stage: str
    delay: float | None
    outcome: str  # killed / finished
    first_rc: int
    first_seconds: float
    next: str
    next_rc: int
    check_rcs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failure: str | None = None
    replay: str = ""
    repaired: bool = False  # the next command exited 7 naming `verify --fix`, which was run before it again
    first_next: str = ""  # that first answer, for the record

    def line(self) -> str:
        checks = " ".join(f"{k}={v}" for k, v in self.check_rcs.items())
        kill = "no kill" if self.delay is None else f"kill at {self.delay:.2f}s"
        return (
            f"[{self.backend} #{self.iteration}] {self.op} ({self.stage}) {kill}: "
            f"{self.outcome} rc={self.first_rc} after {self.first_seconds:.2f}s; next `{self.next}` "
            f"rc={self.next_rc}; {checks}; {self.seconds:.1f}s{' REPAIRED' if self.repaired else ''}"
            f"{' FAILED' if self.failure else ''}"
        )


def scenario(world: FuzzWorld, seed: int, i: int, typical: dict[str, float] | None = None) -> Scenario:
    """Iteration ``i``'s draw: from its own generator, so that it replays alone."""
    rng = random.Random(f"{seed}/{world.kind}/{i}")
    # Every operation once in each round of len(OPS) iterations, in a seeded order: a short run covers them all.
    order = list(OPS)
    random.Random(f"{seed}/{world.kind}/round {i // len(OPS)}").shuffle(order)
    op = order[i % len(OPS)]
    stage = {
        "apply": "v1",
        "cutover": "built",
        "rollback": "cut",
        "gc": "cut",
        "migrate": "v1",
        "adopt": "v1",
        "sync": rng.choice(STAGES),
        "verify-fix": rng.choice(("v1", "cut")),
    }[op]
    plan = str(world.plan_v2)
    model = ("--model", str(world.minilm_path), "--sample", "4")
    first = {
        "apply": ("apply", plan),
        "sync": ("sync", DOCS),
        "cutover": ("cutover", DOCS),
        "rollback": ("rollback", DOCS),
        "gc": ("gc", DOCS, "--keep", "0"),
        "migrate": ("migrate", KB),
        "adopt": ("adopt", NOTES, *model),
        "verify-fix": ("verify", DOCS, "--fix"),
    }[op]
    nexts = {
        "apply": [("apply", "--resume", DOCS), ("apply", plan)],
        "sync": [("sync", DOCS)],
        "cutover": [("cutover", DOCS), ("status", DOCS)],
        "rollback": [("rollback", DOCS), ("status", DOCS)],
        "gc": [("gc", DOCS, "--keep", "0")],
        "migrate": [("migrate", KB), ("sync", KB)],
        "adopt": [("adopt", NOTES, *model)],
        "verify-fix": [("verify", DOCS, "--fix")],
    }[op]
    next_args = rng.choice(nexts)
    fraction = rng.uniform(0.0, 1.2)
    typical = typical or TYPICAL.get(world.kind, TYPICAL["milvus-lite"])
    s = Scenario(
        seed,
        world.kind,
        i,
        op,
        stage,
        ("--json", "--yes", *first),
        ("--json", "--yes", *next_args),
        fraction,
        fraction * typical[op],
    )
    # Pending writes to the source file: some edits, deletions and additions (or none).
    ids = [d["id"] for d in world.documents]
    picked = rng.sample(ids, rng.randint(0, 4) + rng.randint(0, 3))
    n_edit = rng.randint(0, len(picked))
    s.edited, s.deleted = sorted(picked[:n_edit]), sorted(picked[n_edit:])
    s.added = [f"new-{i}-{j}" for j in range(rng.randint(0, 3))]
    if op == "migrate":  # the application writes into kb itself
        kb_ids = [d["id"] for d in world.kb_docs]
        s.app_added = [f"app-{i}-{j}" for j in range(rng.randint(1, 3))]
        touched = rng.sample(kb_ids, rng.randint(0, 1) + rng.randint(0, 1))
        s.app_changed, s.app_deleted = touched[:1], touched[1:]
    if op == "verify-fix":
        s.damaged = sorted(rng.sample([x for x in ids if x not in s.deleted], rng.randint(0, 2)))
    return s


def source_documents(world: FuzzWorld, s: Scenario) -> list[dict]:
    """The JSONL file as the application left it: the scenario's edits, deletions and additions."""
    out = []
    for d in world.documents:
        if d["id"] in s.deleted:
            continue
        if d["id"] in s.edited:
            d = {"id": d["id"], "text": f"{d['text']} Edited by the application, iteration {s.iteration}."}
        out.append(d)
    for j, new_id in enumerate(s.added):
        base = world.documents[(s.iteration * 7 + j * 11) % len(world.documents)]
        out.append({"id": new_id, "text": f"A document added later, number {j}. {base['text']}"})
    return out


def kb_expected(world: FuzzWorld, s: Scenario) -> dict[str, str]:
    """kb's documents (id -> text) once the application's writes are in."""
    texts = {d["id"]: d["text"] for d in world.kb_docs}
    for k, doc_id in enumerate(s.app_changed):
        texts[doc_id] = APP_TEXTS[-1 - k]
    for doc_id in s.app_deleted:
        texts.pop(doc_id)
    for k, doc_id in enumerate(s.app_added):
        texts[doc_id] = APP_TEXTS[k]
    return texts


def prepare(world: FuzzWorld, s: Scenario) -> dict[str, str]:
    """Restore the stage, write the source file and the application's writes; the expected source of the op."""
    from reindexer.adapters.base import Point

    docs = source_documents(world, s)
    world.restore(s.stage, docs)
    if s.app_added or s.app_changed or s.app_deleted or s.damaged:
        with world.workspace() as ws:
            if s.op == "migrate":
                texts = kb_expected(world, s)
                ws.store.upsert(
                    KB, [Point(x, world.app_vectors[texts[x]], {"text": texts[x]}) for x in s.app_added + s.app_changed]
                )
                if s.app_deleted:
                    ws.store.delete(KB, s.app_deleted)
            if s.damaged:
                ws.store.delete(ws.store.resolve(DOCS), s.damaged)
    if s.op == "migrate":
        return kb_expected(world, s)
    if s.op == "adopt":
        return {d["id"]: d["text"] for d in world.kb_docs}
    return {d["id"]: d["text"] for d in docs}


def run_iteration(world: FuzzWorld, launcher: Launcher, s: Scenario) -> Record:
    started = time.monotonic()
    shown = " ".join(s.next_args[2:]).replace(str(world.minilm_path), "MINILM").replace(f"{world.base}/", "")
    rec = Record(world.kind, s.iteration, s.op, s.stage, s.delay, "not run", 0, 0.0, shown, 0, replay=s.replay())
    first = nxt = None
    try:
        expected = prepare(world, s)
        first = launcher.run(s.args, world.env(), world.base, kill_after=s.delay)
        rec.outcome, rec.first_rc, rec.first_seconds = (
            "killed" if first.killed else "finished",
            first.returncode,
            first.seconds,
        )
        nxt = run_here(world, s.next_args)
        rec.next_rc = nxt.returncode
        hinted = re.search(r"`reindex (verify \S+ (?:--version \d+ )?--fix)`", nxt.stderr)
        if nxt.returncode == 7 and hinted:
            # Verification failed (a documented exit) and the hint names the repair: the operator runs it
            # once, as written, then the next command again, which must then succeed like the others.
            fix = run_here(world, ("--json", "--yes", *hinted.group(1).split()))
            rec.repaired, rec.check_rcs["verify-fix-as-hinted"] = True, fix.returncode
            _clean(fix, {0})
            first_next, nxt = nxt, run_here(world, s.next_args)
            rec.check_rcs["next-again"] = nxt.returncode
            rec.first_next = first_next.describe()
        check_world(world, s, first, nxt, expected, rec)
    except Exception as exc:  # noqa: BLE001 (an invariant, a hung run, an error of the harness: all reported)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, AssertionError):
            detail += "\n" + traceback.format_exc()
        rec.failure = (
            f"{detail}\nscenario: {json.dumps(asdict(s))}\n"
            f"killed or finished run: {first.describe() if first else '-'}\n"
            f"next command: {nxt.describe() if nxt else '-'}\nreplay: {s.replay()}"
        )
    rec.seconds = time.monotonic() - started
    return rec


# -- the checks --------------------------------------------------------------------------------------------
def _check(condition: Any, message: str) -> None:
    if not condition:
        raise FuzzFailure(message)


def _clean(run: Run, allowed: set[int]) -> None:
    _check(run.returncode in allowed, f"exit {run.returncode}, expected one of {sorted(allowed)}: {run.describe()}")
    _check("Traceback (most recent call last)" not in run.stderr + run.stdout, f"a traceback: {run.describe()}")


def _live(world: FuzzWorld, collection: str) -> tuple[str | None, Any]:
    """(what the store's name resolves to, the state's live version or None); both must agree."""
    with world.workspace() as ws:
        lc = ws.state.get_collection(ws.store_url, collection)
        resolved = ws.store.resolve(collection)
        if lc is None:
            return resolved, None
        live = [v for v in ws.state.versions(lc.id) if v.status == "live"]
        _check(len(live) == 1, f"{collection}: {len(live)} versions recorded live")
        return resolved, live[0]


def _statuses(world: FuzzWorld, collection: str) -> dict[int, str]:
    with world.workspace() as ws:
        lc = ws.state.get_collection(ws.store_url, collection)
        return {} if lc is None else {v.version: v.status for v in ws.state.versions(lc.id)}


def check_agreement(world: FuzzWorld) -> dict[str, str]:
    """Every managed collection: the store's alias (or name) and the state's live version agree."""
    out = {}
    for name in (DOCS, KB, NOTES):
        resolved, live = _live(world, name)
        if live is None:
            continue
        _check(
            resolved == live.physical_name,
            f"{name}: the store resolves it to {resolved!r}, the state records {live.physical_name!r} live "
            f"(statuses {_statuses(world, name)})",
        )
        out[name] = live.physical_name
    return out


_PROBLEM = re.compile(r"^\d+ ids (.+?) \(e\.g\. (.*)\)$")


def check_verify(
    world: FuzzWorld, collection: str, pending: dict[str, set[str]], rec: Record, label: str, version: str | None = None
) -> None:
    """`reindex verify`: clean, or (``pending`` not empty) only the differences the pending writes explain."""
    run = run_here(world, ("--json", "verify", collection, *(("--version", version) if version else ())))
    rec.check_rcs[label] = run.returncode
    _clean(run, {0, 7} if any(pending.values()) else {0})
    if run.returncode == 0:
        return
    report = json.loads(run.stdout)["before"]
    for problem in report["problems"]:
        m = _PROBLEM.match(problem)
        if problem.startswith("store holds") and collection == KB:
            continue  # the application's writes: counted below by their ids
        _check(m is not None, f"{label}: {problem!r} is no pending write's doing: {run.describe()}")
        kind, examples = m.group(1), set(m.group(2).split(", "))
        allowed = pending.get(kind, set())
        _check(
            examples <= allowed,
            f"{label}: {problem!r}: {sorted(examples - allowed)} are no pending write ({kind}: {sorted(allowed)})",
        )


def check_content(world: FuzzWorld, collection: str, expected: dict[str, str], number: int | None = None) -> None:
    """The live version (or version ``number``) holds every source document once, with its model's tag, the
    source's text and its model's vector of that text."""
    import numpy as np

    from reindexer.adapters.base import MODEL_KEY

    with world.workspace() as ws:
        lc = ws.state.get_collection(ws.store_url, collection)
        _check(lc is not None, f"{collection} is not managed")
        live = next(
            v for v in ws.state.versions(lc.id) if (v.status == "live" if number is None else v.version == number)
        )
        physical = live.physical_name
        short = ws.state.model_of(live).short
        # docs' v2 is the truncated model; every other version (kb's copy by migrate too) is MiniLM's
        wanted = world.short["v2" if (collection == DOCS and live.version == 2) else "v1"]
        _check(short == wanted, f"{live.physical_name} is recorded with model {short}, it was built with {wanted}")
        points = [p for page in ws.store.scroll(physical, batch_size=128, with_vectors=True) for p in page]
        count = ws.store.count(physical)
        tags_held = ws.store.holds_point_tags(physical)
        ledger = ws.state.ledger(live.id)
    ids = [p.doc_id for p in points]
    dups = sorted(x for x, n in Counter(ids).items() if n > 1)
    _check(not dups, f"{physical} holds ids more than once: {dups[:10]}")
    _check(
        set(ids) == set(expected),
        f"{physical}: missing {sorted(set(expected) - set(ids))[:10]}, extra {sorted(set(ids) - set(expected))[:10]}",
    )
    _check(count == len(expected), f"{physical} counts {count} points, the source has {len(expected)}")
    _check(
        set(ledger) == set(ids), f"{physical}'s ledger differs from its points: {sorted(set(ledger) ^ set(ids))[:10]}"
    )
    for p in points:
        if tags_held:
            _check(
                p.payload.get(MODEL_KEY) == short,
                f"{physical}/{p.doc_id} is tagged {p.payload.get(MODEL_KEY)!r}, the live model is {short!r}",
            )
        _check(p.payload.get("text") == expected[p.doc_id], f"{physical}/{p.doc_id} holds a stale text")
        _check(p.vector is not None and len(p.vector) == live.dim, f"{physical}/{p.doc_id}: not a {live.dim}-d vector")
        v, ref = np.asarray(p.vector, dtype=np.float64), world.reference(live.dim, expected[p.doc_id])
        cos = float(v @ ref / (np.linalg.norm(v) * np.linalg.norm(ref)))
        _check(
            cos >= MIN_COSINE,
            f"{physical}/{p.doc_id}: cosine {cos:.4f} with the live model's vector of its "
            "text (a stale or foreign vector)",
        )


def check_search(world: FuzzWorld, collection: str, physical: str, expected: dict[str, str]) -> None:
    from reindexer import Searcher
    from reindexer.adapters.base import MODEL_KEY

    query = next(iter(sorted(expected.values())))[:80]
    with world.workspace() as ws:
        searcher = Searcher(collection, workspace=ws, refresh=0)
        try:
            hits = searcher.search(query, k=5)
            short = ws.state.model_of(
                next(
                    v
                    for v in ws.state.versions(ws.state.get_collection(ws.store_url, collection).id)
                    if v.status == "live"
                )
            ).short
        finally:
            searcher.close()
    _check(hits, f"the Searcher found nothing in {collection}")
    versions = {h.version for h in hits}
    _check(versions == {physical}, f"a Searcher answer from {sorted(versions)}, the live version is {physical}")
    tags = {h.payload.get(MODEL_KEY) for h in hits} - {None}
    _check(tags <= {short}, f"a Searcher answer holds points of models {sorted(tags)}, the live one is {short}")


def check_world(world: FuzzWorld, s: Scenario, first: Run, nxt: Run, expected: dict[str, str], rec: Record) -> None:
    c = s.collection
    # The killed process: killed, or finished as an uninterrupted run does.
    if not first.killed:
        _clean(first, {0})
    else:
        _check("Traceback (most recent call last)" not in first.stderr, f"a traceback: {first.describe()}")
    # The next command: 0, or the documented code its situation calls for.
    verb = s.next_args[2]
    allowed = {0}
    if verb == "cutover" and s.op == "cutover":
        allowed = {0, 3}  # the killed run finished the cut-over: nothing built to cut over to
    if verb == "rollback" and s.op == "rollback":
        allowed = {0, 3}
    if verb == "adopt":
        allowed = {0, 4}  # the killed run finished the adopt: already managed
    if verb == "migrate":
        allowed = {0, 4}
    _clean(nxt, allowed)

    live = check_agreement(world)
    statuses = _statuses(world, c)
    # What the op and the next command must have done, where that is determined.
    if s.op == "apply":
        _check(
            not [v for v, st in statuses.items() if st in ("building",)],
            f"apply left a version building after `{rec.next}`: {statuses}",
        )
        if s.next_args[2:4] != ("apply", "--resume"):
            _check(live[DOCS] == f"{DOCS}__v2", f"apply of the plan again ended with {live[DOCS]} live: {statuses}")
        elif 2 in statuses:
            _check(live[DOCS] == f"{DOCS}__v2", f"apply --resume left v2 {statuses[2]}, {live[DOCS]} live")
    if s.op == "cutover" and verb == "cutover":
        _check(live[DOCS] == f"{DOCS}__v2", f"cutover twice left {live[DOCS]} live: {statuses}")
    if s.op == "rollback" and verb == "rollback":
        _check(live[DOCS] == f"{DOCS}__v1", f"rollback again left {live[DOCS]} live: {statuses}")
    if s.op in ("sync", "verify-fix", "gc"):
        expected_live = f"{DOCS}__v2" if s.stage == "cut" else f"{DOCS}__v1"
        _check(live[DOCS] == expected_live, f"{s.op} moved the alias to {live[DOCS]}: {statuses}")
    if s.op == "gc":
        _check(statuses.get(1) == "dropped", f"gc again left v1 {statuses.get(1)}")
        with world.workspace() as ws:
            _check(not ws.store.collection_exists(f"{DOCS}__v1"), "gc again left docs__v1 in the store")
    if s.op == "migrate" and verb == "migrate":
        _check(live[KB] != KB, f"migrate again left kb unmigrated: {statuses}")
    if s.op == "adopt":
        _check(NOTES in live and live[NOTES] == NOTES, f"adopt again left notes unmanaged: {live}")

    # verify, before the scheduled sync: only the pending writes differ.
    if c == DOCS:
        absorbed = s.op in ("sync", "verify-fix") or (s.op == "apply" and live[DOCS] == f"{DOCS}__v2")
        pending = (
            {}
            if absorbed
            else {
                "in the index but gone from the source": set(s.deleted),
                "in the source but not the index": set(s.added),
            }
        )
    elif c == KB:
        pending = {
            "in the store but not the ledger": set(s.app_added),
            "in the ledger but not the store": set(s.app_deleted),
            "tagged with another model": set(s.app_added) | set(s.app_changed),
        }
    else:
        pending = {}
    check_verify(world, c, pending, rec, "verify")
    # The scheduled sync, then verify is clean and the live version is the source.
    sync_run = run_here(world, ("--json", "--yes", "sync", c))
    rec.check_rcs["sync"] = sync_run.returncode
    _clean(sync_run, {0})
    check_verify(world, c, {}, rec, "verify-after-sync")
    live = check_agreement(world)
    check_content(world, c, expected)
    for number, status in _statuses(world, c).items():  # sync keeps every built shadow up to date too
        if status in ("built", "verified"):
            check_verify(world, c, {}, rec, f"verify-v{number}", version=f"v{number}")
            check_content(world, c, expected, number)
    check_search(world, c, live[c], expected)


# -- a session -------------------------------------------------------------------------------------------
def fuzz(
    world: FuzzWorld,
    launcher: Launcher,
    seed: int,
    iterations: int,
    start: int = 0,
    typical: dict[str, float] | None = None,
    echo: Any = None,
) -> list[Record]:
    records = []
    for i in range(start, start + iterations):
        s = scenario(world, seed, i, typical)
        rec = run_iteration(world, launcher, s)
        records.append(rec)
        if echo is not None:
            echo(rec.line())
            if rec.failure:
                echo(rec.failure)
    return records


def summary(records: list[Record]) -> str:
    """A table per backend and operation: iterations, killed, finished, failures, median seconds."""
    rows: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        rows.setdefault((r.backend, r.op), []).append(r)
    lines = [
        f"{'backend':<14} {'operation':<11} {'runs':>5} {'killed':>7} {'finished':>9} {'repaired':>9} {'failed':>7} "
        f"{'median s':>9}"
    ]
    for (backend, op), rs in sorted(rows.items()):
        secs = sorted(r.seconds for r in rs)
        lines.append(
            f"{backend:<14} {op:<11} {len(rs):>5} {sum(r.outcome == 'killed' for r in rs):>7} "
            f"{sum(r.outcome == 'finished' for r in rs):>9} {sum(r.repaired for r in rs):>9} "
            f"{sum(r.failure is not None for r in rs):>7} {secs[len(secs) // 2]:>9.1f}"
        )
    total = len(records)
    lines.append(
        f"{'all':<14} {'':<11} {total:>5} {sum(r.outcome == 'killed' for r in records):>7} "
        f"{sum(r.outcome == 'finished' for r in records):>9} {sum(r.repaired for r in records):>9} "
        f"{sum(r.failure is not None for r in records):>7}"
    )
    return "\n".join(lines)


@contextmanager
def fuzz_environment() -> Iterator[None]:
    """This process's builds, commands and checks with the torch threads the children get, and no progress
    lines; both put back afterwards."""
    import torch

    saved = {k: os.environ.get(k) for k in ("REINDEX_THREADS", "REINDEX_PROGRESS")}
    saved_threads = torch.get_num_threads()
    os.environ["REINDEX_THREADS"] = os.environ.get("REINDEX_FUZZ_THREADS", "1")
    os.environ["REINDEX_PROGRESS"] = "0"
    torch.set_num_threads(int(os.environ["REINDEX_THREADS"]))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(saved_threads)


def settings_from_env(default_iterations: int, default_seed: int = 22) -> tuple[int, int, int]:
    """(seed, iterations, start) from REINDEX_FUZZ_SEED, REINDEX_FUZZ_ITERATIONS, REINDEX_FUZZ_START."""
    return (
        int(os.environ.get("REINDEX_FUZZ_SEED", default_seed)),
        int(os.environ.get("REINDEX_FUZZ_ITERATIONS", default_iterations)),
        int(os.environ.get("REINDEX_FUZZ_START", 0)),
    )


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    _zygote()
