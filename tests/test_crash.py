"""Crash safety: kill -9 an apply or a sync at several points, resume, and get the uninterrupted result.

Each backend (Qdrant local, Milvus Lite) gets one world, built once per module:
a v1 collection of ``N_DOCS`` documents from a JSONL file, a plan for a second
model version (MiniLM truncated to 256 dimensions) in ``plan.json``, and a copy
of that pristine workspace (store folder and state database) that every test
restores before it starts. The reference results come from uninterrupted runs
of the same plan, and of the same sync, on that same pristine copy.

A test starts ``python -m reindexer.cli`` as a subprocess, watches the state
database (SQLite in WAL mode, opened read-only) and SIGKILLs the process when it
reaches a chosen point:

- (a) the shadow's version row exists (status building), its run not yet started;
- (a') the run started (the shadow collection exists), no batch recorded yet;
- (b) k batches recorded, in a first run and in a resumed one;
- (c) the build finished (built or verified), the alias not moved yet;
- a sync half embedded, and a sync deleting.

It then re-runs the same command, or ``apply --resume docs``, to completion and
compares the store and the ledger with the reference: the same ids, no
duplicates, the same payloads and model tags, the same vectors, the same ledger,
the alias on the same version. Re-runs find the lease, lock files and WAL files
that the killed process left behind. A run that is to be killed gets a process of
its own; a run that finishes the job runs the same command line in this process
(``reindex_here``), which spares it the torch and model import.

Windows too short for a watcher (microseconds between a store change and the
state write that records it) have named kill points instead: the process, run
with ``REINDEX_TEST_KILL_AT=<point>``, SIGKILLs itself there (reindexer.killpoints).
The last section kills cutover, apply and rollback after the alias swap, gc after
a drop, migrate between the drop and the alias, and adopt between tagging the
points and recording them, on Qdrant local, Milvus Lite and the Milvus server,
and checks that the next command repairs the state from the store.
tests/test_reconcile.py runs every kill point in process, with every command
that reconciles as the next one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reindexer import commands, killpoints
from reindexer.adapters.base import MODEL_KEY, CollectionSpec, Point
from reindexer.commands import sync
from reindexer.config import Config
from reindexer.errors import ConflictError, NotFoundError, VerificationError
from reindexer.model_identity import ModelSettings
from reindexer.planner import load_plan_file
from reindexer.sources.spec import SourceSpec
from reindexer.state.models import iso
from reindexer.workspace import Workspace
from tests.plugins.corpus import scaled_documents, write_jsonl
from tests.plugins.liveness import statuses
from tests.plugins.stores import EMBEDDED_KINDS

pytestmark = pytest.mark.slow

# A kill point needs only "more than a few batches", so the batches are small rather than the
# corpus large: each killed process pays its torch and model import anyway.
N_DOCS = 96
APPLY_BATCH = 8  # 12 batches for a full build of N_DOCS
SMALL_WS_BATCH = 32  # the in-process test kills nothing mid-build: two batches are enough
SYNC_BATCH = 4  # small batches, so that a 10% change takes several embed and delete batches
MAX_ABS_DIFF = 1e-5
RUN_TIMEOUT = 240  # seconds for one subprocess; far beyond what one takes
POLL = 0.005


# -- the world: a v1 collection, a plan for v2, a pristine copy, reference results ----------
@dataclass
class Snapshot:
    """What a version holds in the store and the ledger, and where the alias points."""

    physical: str
    ids: list[str]  # as scrolled, so duplicates would show
    count: int
    vectors: dict[str, np.ndarray]
    payloads: dict[str, dict[str, Any]]
    ledger: dict[str, str]
    alias: str | None
    statuses: dict[int, str]


@dataclass
class World:
    kind: str
    base: Path
    ws_dir: Path
    pristine: Path
    corpus: Path
    plan_file: Path
    store_url: str
    state_db: Path
    documents: list[dict]
    changed_documents: list[dict]
    v1_model_short: str = ""
    v2_model_short: str = ""
    applied: Snapshot | None = None  # uninterrupted apply of plan.json
    synced: Snapshot | None = None  # uninterrupted sync after the 10% change
    notes: list[str] = field(default_factory=list)

    def config(self, batch_size: int = APPLY_BATCH) -> Config:
        return Config(base_dir=self.base, store_url=self.store_url, state_url=f"sqlite:///{self.state_db}",
                      batch_size=batch_size)

    def workspace(self, batch_size: int = APPLY_BATCH) -> Workspace:
        return Workspace(self.config(batch_size))

    def restore(self, documents: list[dict] | None = None) -> None:
        """Put back the pristine workspace (v1 live, nothing else) and the corpus file."""
        shutil.rmtree(self.ws_dir, ignore_errors=True)
        shutil.copytree(self.pristine, self.ws_dir)
        write_jsonl(self.corpus, documents if documents is not None else self.documents)

    def env(self, batch_size: int = APPLY_BATCH) -> dict[str, str]:
        return {
            **os.environ,
            "REINDEX_STORE": self.store_url,
            "REINDEX_STATE": f"sqlite:///{self.state_db}",
            "REINDEX_BATCH_SIZE": str(batch_size),
            # One text per encode call: windows of 16 documents, each embedded over a few hundred ms,
            # so the watches catch a build between batches. At the CPU default the whole build is one
            # window whose 12 writes land within milliseconds, and a kill "at 3 batches" could land
            # after the last.
            "REINDEX_EMBED_BATCH_SIZE": "1",
            "REINDEX_PROGRESS": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }


def changed_corpus(documents: list[dict]) -> list[dict]:
    """A 10% change: 12 texts edited, 9 documents deleted, 9 new ones."""
    rng = random.Random(7)
    picked = rng.sample(range(len(documents)), 21)
    edited, deleted = set(picked[:12]), set(picked[12:])
    out = []
    for i, d in enumerate(documents):
        if i in deleted:
            continue
        d = dict(d)
        if i in edited:
            d["text"] = f"{d['text']} Edited after the first build, note {i}."
        out.append(d)
    for j in range(9):
        d = dict(documents[(j * 31) % len(documents)])
        d["id"] = f"new-{j}"
        d["text"] = f"A document added later, number {j}. {d['text']}"
        out.append(d)
    return out


def snapshot(world: World, physical: str) -> Snapshot:
    with world.workspace() as ws:
        store = ws.store
        points = [p for page in store.scroll(physical, batch_size=128, with_vectors=True) for p in page]
        lc = ws.state.get_collection(ws.store_url, "docs")
        version = ws.state.version_by_physical(lc.id, physical)
        return Snapshot(
            physical=physical,
            ids=[p.doc_id for p in points],
            count=store.count(physical),
            vectors={p.doc_id: np.asarray(p.vector, dtype=np.float64) for p in points},
            payloads={p.doc_id: dict(p.payload) for p in points},
            ledger=ws.state.ledger(version.id),
            alias=store.resolve("docs"),
            statuses={v.version: v.status for v in ws.state.versions(lc.id)},
        )


@pytest.fixture(scope="module", params=[pytest.param(k, id=k) for k in EMBEDDED_KINDS])
def world(request, tmp_path_factory, minilm_path, demo_corpus) -> World:
    kind = request.param
    base = tmp_path_factory.mktemp(f"crash-{kind}")
    ws_dir = base / "ws"
    ws_dir.mkdir()
    store_url = f"qdrant+local:{ws_dir / 'qdrant'}" if kind == "qdrant-local" else f"milvus+lite:{ws_dir / 'milvus.db'}"
    documents = scaled_documents(demo_corpus, N_DOCS)
    w = World(kind=kind, base=base, ws_dir=ws_dir, pristine=base / "pristine", corpus=base / "corpus.jsonl",
              plan_file=base / "plan.json", store_url=store_url, state_db=ws_dir / "state.db",
              documents=documents, changed_documents=changed_corpus(documents))
    write_jsonl(w.corpus, documents)
    with w.workspace() as ws:
        p1 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                           source=SourceSpec(kind="jsonl", location=str(w.corpus)))
        assert commands.apply(ws, p1).live == "docs__v1"
        p2 = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=256),
                           estimate=False)
        assert p2.mode == "full" and p2.dimension_change and p2.counts["to_embed"] == N_DOCS
        w.plan_file.write_text(p2.to_json() + "\n")
        w.v1_model_short = p1.to_version["model_fingerprint"][:12]
        w.v2_model_short = p2.to_version["model_fingerprint"][:12]
    shutil.copytree(ws_dir, w.pristine)

    # The references: the same plan, and the same sync, run without interruption.
    with w.workspace() as ws:
        r = commands.apply(ws, load_plan_file(w.plan_file))
        assert r.cut_over and r.live == "docs__v2" and r.verification["ok"]
    w.applied = snapshot(w, "docs__v2")
    w.restore(w.changed_documents)
    with w.workspace(SYNC_BATCH) as ws:
        r = sync(ws, "docs")
        assert r.versions["v1"]["embedded"] == 21 and r.versions["v1"]["deleted"] == 9
    w.synced = snapshot(w, "docs__v1")
    w.restore()
    yield w
    if w.notes:
        print(f"\n[{kind}] " + f"\n[{kind}] ".join(w.notes))


# -- running the CLI and killing it ------------------------------------------------------
@dataclass
class Outcome:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    killed_at: Any  # what the watcher saw when it killed; None when the process ended by itself
    seconds: float

    @property
    def killed(self) -> bool:  # by the watcher, or by the process itself at a kill point
        return self.killed_at is not None or self.returncode == -signal.SIGKILL

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (f"`reindex {' '.join(self.args)}` exited {self.returncode} after {self.seconds:.1f}s"
                f"{f', killed at {self.killed_at}' if self.killed else ''}\nstdout: {self.stdout[-2000:]}\n"
                f"stderr: {self.stderr[-3000:]}")


Watch = Callable[[sqlite3.Connection], Any]


def _env(world: World, batch_size: int | None) -> dict[str, str]:
    return world.env() if batch_size is None else world.env(batch_size)


def reindex(world: World, *args: str, kill_when: Watch | None = None, batch_size: int | None = None,
            kill_at: str | None = None) -> Outcome:
    """Run the CLI in a subprocess; SIGKILL it as soon as ``kill_when`` returns something truthy.

    With ``kill_at``, the process SIGKILLs itself at that kill point (reindexer.killpoints).
    """
    out_path, err_path = world.base / "stdout.txt", world.base / "stderr.txt"
    env = _env(world, batch_size)
    if kill_at is not None:
        env[killpoints.ENV] = kill_at
    started = time.monotonic()
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "reindexer.cli", *args], cwd=world.base,
                                env=env, stdout=out, stderr=err, start_new_session=True)
        seen = None
        db = sqlite3.connect(f"file:{world.state_db}?mode=ro", uri=True, timeout=1) if kill_when else None
        try:
            while proc.poll() is None:
                if time.monotonic() - started > RUN_TIMEOUT:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    pytest.fail(f"`reindex {' '.join(args)}` ran past {RUN_TIMEOUT}s")
                if db is not None:
                    try:
                        seen = kill_when(db)
                    except sqlite3.OperationalError:  # a table not made yet, a busy moment
                        seen = None
                    if seen:
                        os.killpg(proc.pid, signal.SIGKILL)
                        break
                time.sleep(POLL)
            proc.wait()
        finally:
            if db is not None:
                db.close()
    return Outcome(tuple(args), proc.returncode, out_path.read_text(), err_path.read_text(), seen,
                   time.monotonic() - started)


def reindex_here(world: World, *args: str, batch_size: int | None = None) -> Outcome:
    """Run the CLI in this process, with the environment a subprocess would get.

    For the commands that follow a kill: only a process that is killed needs one of its
    own, and a fresh one pays the torch and model import again (seconds on a busy machine).
    What the killed process left (its lease, lock and WAL files) is found the same way.
    """
    from click.testing import CliRunner

    from reindexer.cli import cli

    started = time.monotonic()
    result = CliRunner().invoke(cli, list(args), env=_env(world, batch_size), catch_exceptions=False)
    return Outcome(tuple(args), result.exit_code, result.stdout, result.stderr, None, time.monotonic() - started)


def completed(outcome: Outcome) -> dict[str, Any]:
    assert outcome.returncode == 0 and not outcome.killed, outcome.describe()
    return outcome.json()


def was_killed(outcome: Outcome) -> Outcome:
    assert outcome.killed and outcome.returncode == -signal.SIGKILL, (
        "the process ended before the watched point came:\n" + outcome.describe()
    )
    return outcome


# -- what the watcher looks at (the state database, read-only) ---------------------------------
def settled_db(world: World) -> sqlite3.Connection:
    """The state database once no command runs, opened read-write so that SQLite recovers the WAL.

    A process SIGKILLed inside a commit can leave its last transaction in the WAL but not yet in the
    shared WAL index; a read-only connection may then read without it, while the next command (which
    recovers the WAL) sees it: counts read that way disagreed with what the resumed run found.
    """
    return sqlite3.connect(world.state_db, timeout=5)


def max_run_id(world: World) -> int:
    with settled_db(world) as db:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM reindex_run").fetchone()[0]


def _version_row(db: sqlite3.Connection, number: int):
    return db.execute("SELECT id, status FROM reindex_index_version WHERE version = ?", (number,)).fetchone()


def _newest_run(db: sqlite3.Connection, after: int, version_id: int | None = None, kind: str | None = None):
    sql = "SELECT id, kind, status, batches, embedded, deleted FROM reindex_run WHERE id > ?"
    params: list[Any] = [after]
    if version_id is not None:
        sql += " AND index_version_id = ?"
        params.append(version_id)
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    return db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()


def shadow_building_before_any_batch(after: int) -> Watch:
    """(a) as soon as the v2 row exists, status building, and no batch of this process is recorded."""

    def watch(db):
        row = _version_row(db, 2)
        if row is None or row[1] != "building":
            return None
        run = _newest_run(db, after, version_id=row[0])
        if run is not None and run[3] > 0:
            return None
        return {"status": "building", "run": "none yet" if run is None else "started", "batches": 0}

    return watch


def shadow_run_started_no_batch(after: int) -> Watch:
    """(a') this process's build run exists (the shadow collection is made), no batch recorded yet."""

    def watch(db):
        row = _version_row(db, 2)
        run = _newest_run(db, after, version_id=row[0]) if row else None
        if run is None or run[3] > 0:
            return None
        return {"status": row[1], "run": "started", "batches": 0}

    return watch


def shadow_batches_at_least(k: int, after: int) -> Watch:
    """(b) this process has recorded at least ``k`` batches into v2."""

    def watch(db):
        row = _version_row(db, 2)
        run = _newest_run(db, after, version_id=row[0]) if row else None
        if run is None or run[3] < k:
            return None
        ledger = db.execute("SELECT COUNT(*) FROM reindex_ledger WHERE index_version_id = ?", (row[0],)).fetchone()[0]
        return {"status": row[1], "batches": run[3], "ledger": ledger}

    return watch


def shadow_built_not_cut_over(db):
    """(c) the build is finished (built or verified) and the alias not moved yet."""
    row = _version_row(db, 2)
    if row is not None and row[1] in ("built", "verified"):
        return {"status": row[1]}
    return None


def sync_batches_at_least(k: int, after: int) -> Watch:
    def watch(db):
        run = _newest_run(db, after, kind="sync")
        return {"batches": run[3], "embedded": run[4], "deleted": run[5]} if run and run[3] >= k else None

    return watch


def sync_deleting(after: int) -> Watch:
    def watch(db):
        run = _newest_run(db, after, kind="sync")
        return {"batches": run[3], "embedded": run[4], "deleted": run[5]} if run and run[5] > 0 else None

    return watch


def ledger_count(world: World, number: int) -> int:
    with settled_db(world) as db:
        row = _version_row(db, number)
        if row is None:
            return 0
        return db.execute("SELECT COUNT(*) FROM reindex_ledger WHERE index_version_id = ?", (row[0],)).fetchone()[0]


# -- the comparison --------------------------------------------------------------------------
def assert_same(actual: Snapshot, expected: Snapshot, model_short: str) -> None:
    n = len(expected.ids)
    assert len(actual.ids) == len(set(actual.ids)), "the store holds duplicate ids"
    assert set(actual.ids) == set(expected.ids), (
        f"missing {sorted(set(expected.ids) - set(actual.ids))[:30]}, "
        f"extra {sorted(set(actual.ids) - set(expected.ids))[:5]}"
    )
    assert actual.count == n, f"{actual.physical} counts {actual.count} points, the uninterrupted run {n}"
    assert actual.ledger == expected.ledger, "the ledger differs from the uninterrupted run's"
    assert set(actual.ledger) == set(actual.ids)
    assert {p.get(MODEL_KEY) for p in actual.payloads.values()} == {model_short}
    assert actual.payloads == expected.payloads
    diff = max(float(np.abs(actual.vectors[d] - expected.vectors[d]).max()) for d in expected.ids)
    assert diff < MAX_ABS_DIFF, f"vectors differ from the uninterrupted run's by up to {diff:.2e}"
    assert actual.alias == expected.alias == actual.physical
    assert actual.statuses == expected.statuses


# -- apply ------------------------------------------------------------------------------------
def test_apply_killed_at_each_point_then_finished(world: World):
    """One apply, killed at (a), (a'), (b) and (c), each time restarted by the other command; then finished.

    The restarts alternate between re-running the same command and `apply --resume docs`;
    each must go on from the checkpoint the killed process left, and the last one must
    end where an uninterrupted run of the plan ends.
    """
    world.restore()
    same = ("--json", "--yes", "apply", str(world.plan_file))
    resume = ("--json", "--yes", "apply", "--resume", "docs")

    a = was_killed(reindex(world, *same, kill_when=shadow_building_before_any_batch(max_run_id(world))))
    world.notes.append(f"apply killed at (a) {a.killed_at} after {a.seconds:.1f}s; ledger {ledger_count(world, 2)}")

    a2 = was_killed(reindex(world, *resume, kill_when=shadow_run_started_no_batch(max_run_id(world))))
    world.notes.append(f"--resume killed at (a') {a2.killed_at} after {a2.seconds:.1f}s; "
                       f"ledger {ledger_count(world, 2)}")
    with world.workspace() as ws:
        assert ws.store.collection_exists("docs__v2") and ws.store.resolve("docs") == "docs__v1"

    b = was_killed(reindex(world, *same, kill_when=shadow_batches_at_least(3, max_run_id(world))))
    after_b = ledger_count(world, 2)
    world.notes.append(f"re-run killed at (b) {b.killed_at} after {b.seconds:.1f}s; ledger {after_b}")
    assert 3 * APPLY_BATCH <= after_b < N_DOCS
    with world.workspace() as ws:
        assert ws.store.resolve("docs") == "docs__v1", "the alias moved before the build finished"

    before_c = max_run_id(world)
    c = reindex(world, *resume, kill_when=shadow_built_not_cut_over)
    with settled_db(world) as db:
        embedded_by_c = db.execute("SELECT COALESCE(SUM(embedded), 0) FROM reindex_run WHERE id > ?",
                                   (before_c,)).fetchone()[0]
    # the resumed run embedded only what the checkpoint lacked
    assert embedded_by_c == N_DOCS - after_b, c.describe()
    if c.killed:
        world.notes.append(f"--resume killed at (c) {c.killed_at} after {c.seconds:.1f}s")
        assert ledger_count(world, 2) == N_DOCS
        with world.workspace() as ws:
            assert ws.store.resolve("docs") == "docs__v1", "the alias moved before the cut-over"
        final = reindex_here(world, *same)
        result = completed(final)
        world.notes.append(f"re-run after (c) finished in {final.seconds:.1f}s: {result['stats']}")
        assert result["cut_over"] and result["live"] == "docs__v2"
        if c.killed_at["status"] == "built":  # the killed run never verified the shadow: this one must
            assert result["verification"] and result["verification"]["ok"], result
        assert result["stats"].get("embedded", 0) == 0
    else:  # the window between build and cut-over went by between two looks
        result = completed(c)
        world.notes.append(f"(c) went by too fast to catch; --resume finished in {c.seconds:.1f}s: {result['stats']}")
        assert result["cut_over"] and result["verification"]["ok"]
        again = completed(reindex_here(world, *same))
        assert "already applied" in again["message"]
    assert_same(snapshot(world, "docs__v2"), world.applied, world.v2_model_short)


def test_a_shadow_half_created_by_a_kill_inside_the_store_does_not_stop_the_next_apply(world: World):
    """A kill inside the store's own create_collection leaves a folder that is not yet a collection.

    Milvus Lite makes ``collections/NAME/`` and only then writes its ``schema.json``; a SIGKILL
    between the two (CI caught one at kill point (a)) left a folder that Milvus Lite refused to
    create again ("File exists"), so every later apply failed. Qdrant local makes
    ``collection/NAME/`` before it records the collection in ``meta.json``. The next apply must
    finish where an uninterrupted run ends.
    """
    world.restore()
    if world.kind == "milvus-lite":
        half = world.ws_dir / "milvus.db" / "collections" / "docs__v2"
        half.mkdir(parents=True)
        (half / "schema.json.tmp").write_text('{"collection_name": "docs__v2", "fie')  # cut mid-write
    else:
        half = world.ws_dir / "qdrant" / "collection" / "docs__v2"
        half.mkdir(parents=True)
    with world.workspace() as ws:
        assert not ws.store.collection_exists("docs__v2")

    result = completed(reindex_here(world, "--json", "--yes", "apply", str(world.plan_file)))
    assert result["cut_over"] and result["live"] == "docs__v2" and result["verification"]["ok"], result
    assert_same(snapshot(world, "docs__v2"), world.applied, world.v2_model_short)


# -- sync -------------------------------------------------------------------------------------
def test_sync_killed_midway_then_rerun(world: World):
    """A 10% change to the JSONL file; kill the sync mid-embedding, then while deleting; re-run."""
    world.restore(world.changed_documents)
    cmd = ("--json", "--yes", "sync", "docs")

    s1 = was_killed(reindex(world, *cmd, kill_when=sync_batches_at_least(2, max_run_id(world)),
                            batch_size=SYNC_BATCH))
    world.notes.append(f"sync killed mid-embedding at {s1.killed_at} after {s1.seconds:.1f}s")
    assert s1.killed_at["deleted"] == 0

    s2 = reindex(world, *cmd, kill_when=sync_deleting(max_run_id(world)), batch_size=SYNC_BATCH)
    if s2.killed:
        world.notes.append(f"sync re-run killed after {s2.killed_at['deleted']} of 9 deletions "
                           f"at {s2.killed_at} after {s2.seconds:.1f}s")
        assert s2.returncode == -signal.SIGKILL
        final = reindex_here(world, *cmd, batch_size=SYNC_BATCH)
        result = completed(final)
        world.notes.append(f"second sync re-run finished in {final.seconds:.1f}s: {result['versions']}")
        assert result["versions"]["v1"]["deleted"] < 9
    else:
        result = completed(s2)
        world.notes.append(f"the deleting phase went by too fast to catch; re-run finished: {result['versions']}")
    assert result["versions"]["v1"]["embedded"] < 21, "the re-run started over instead of resuming"
    assert_same(snapshot(world, "docs__v1"), world.synced, world.v1_model_short)


# -- in process: a crash between the end of the build and the cut-over -------------------------
@pytest.fixture
def small_ws(embedded_store_url, tmp_path, minilm_path, small_corpus_file):
    """v1 of 60 documents, live."""
    config = Config(base_dir=tmp_path, store_url=embedded_store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=SMALL_WS_BATCH)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path),
                                         source=SourceSpec(kind="jsonl", location=str(small_corpus_file))))
        yield ws


def _die(*args, **kwargs):
    raise KeyboardInterrupt  # stands for SIGKILL at this line: nothing after it runs


def _statuses(ws) -> list[str]:
    return [v.status for v in ws.state.versions(ws.state.get_collection(ws.store_url, "docs").id)]


def test_a_crash_between_build_and_cutover_resumes_through_verification(small_ws, minilm_path, monkeypatch):
    """Dead right after 'built', then right before the alias swap: each resume verifies or finishes,
    never cuts over blind."""
    from reindexer.commands import verify

    ws = small_ws
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=256))
    with monkeypatch.context() as m:
        m.setattr("reindexer.commands.applying.verify_version", _die)
        with pytest.raises(KeyboardInterrupt):
            commands.apply(ws, plan)
    assert _statuses(ws) == ["live", "built"]
    assert commands.latest_unfinished_plan(ws, "docs").id == plan.id

    # The shadow loses a point behind the ledger's back: the resumed apply must verify, see it and stop.
    victim = sorted(p.doc_id for page in ws.store.scroll("docs__v2") for p in page)[0]
    ws.store.delete("docs__v2", [victim])
    with pytest.raises(VerificationError, match="in the ledger but not the store") as failed:
        commands.apply(ws, commands.latest_unfinished_plan(ws, "docs"))
    # The hint is whole: an operator (or a fuzzer) runs exactly what it names.
    assert "`reindex verify docs --version 2 --fix`" in failed.value.hint
    assert "`reindex apply --resume docs`" in failed.value.hint
    assert ws.store.resolve("docs") == "docs__v1" and _statuses(ws) == ["live", "built"]
    assert verify(ws, "docs", "v2", fix=True).fixed

    # Repaired; this time the process dies between 'verified' and the alias swap.
    with monkeypatch.context() as m:
        m.setattr("reindexer.commands.applying.swap_alias", _die)
        with pytest.raises(KeyboardInterrupt):
            commands.apply(ws, commands.latest_unfinished_plan(ws, "docs"))
    assert _statuses(ws) == ["live", "verified"] and ws.store.resolve("docs") == "docs__v1"

    resumed = commands.apply(ws, commands.latest_unfinished_plan(ws, "docs"))
    assert resumed.cut_over and resumed.live == "docs__v2" and ws.store.resolve("docs") == "docs__v2"
    assert ws.store.count("docs__v2") == 60 and _statuses(ws) == ["retired", "live"]
    with pytest.raises(NotFoundError, match="no interrupted apply"):
        commands.latest_unfinished_plan(ws, "docs")


# -- SIGKILL between the store change and the state write: the next command repairs ----------
# The world here (tests/plugins/liveness.py): docs v1 live and v2 built, and an adopted `kb`,
# on Qdrant local, Milvus Lite and the Milvus server. Each process kills itself at a kill
# point (reindexer.killpoints); the next command must take over its lease, reconcile the
# state with the store's alias, and record the repair in the audit log.
def _state(pair, collection: str = "docs") -> tuple[str | None, dict[int, str]]:
    with pair.workspace() as ws:
        return ws.store.resolve(collection), statuses(ws, collection)


def _actions(pair, collection: str = "docs") -> list[tuple[str, str]]:
    with pair.workspace() as ws:
        return [(e["action"], e["result"]) for e in commands.history(ws, collection, limit=100)["events"]]


def test_cutover_sigkilled_after_the_alias_swap_is_repaired_by_status(pair):
    pair.restore()
    was_killed(reindex(pair, "--yes", "cutover", "docs", kill_at="after-alias-swap"))
    assert _state(pair) == ("docs__v2", {1: "live", 2: "verified"})  # the store moved, the state did not

    [row] = completed(reindex_here(pair, "--json", "status", "docs"))  # takes over the dead process's lease
    assert row["live"]["physical"] == "docs__v2" and [r["physical"] for r in row["retired"]] == ["docs__v1"]
    assert [(r["kind"], r["recorded"]) for r in row["repairs"]] == [("completed", True)]
    assert _state(pair) == ("docs__v2", {1: "retired", 2: "live"})
    assert _actions(pair)[:2] == [("reconcile", "ok"), ("cutover", "ok")]
    with pair.workspace() as ws:  # previous_id came back with the repair
        assert commands.rollback(ws, "docs")["live"] == "docs__v1"


def test_apply_sigkilled_after_the_alias_swap_is_finished_by_applying_again(pair):
    pair.restore()
    plan = str(pair.plan_v2)
    was_killed(reindex(pair, "--yes", "apply", plan, kill_at="after-alias-swap"))
    assert _state(pair) == ("docs__v2", {1: "live", 2: "verified"})

    r = completed(reindex_here(pair, "--json", "--yes", "apply", plan))
    assert r["cut_over"] and r["live"] == "docs__v2" and "interrupted cut-over" in r["message"]
    assert _state(pair) == ("docs__v2", {1: "retired", 2: "live"})

    old = reindex_here(pair, "--yes", "apply", str(pair.plan_v1))  # a plan is applied once
    assert old.returncode == 4, old.describe()
    assert "applied once" in old.stderr and "reindex cutover docs --to v1" in old.stderr
    assert "cut over" not in old.stdout and _state(pair)[0] == "docs__v2"


def test_rollback_sigkilled_after_the_alias_swap_is_finished_not_repeated(pair):
    pair.restore()
    with pair.workspace() as ws:
        commands.cutover(ws, "docs")
    was_killed(reindex(pair, "--yes", "rollback", "docs", kill_at="after-alias-swap"))
    assert _state(pair) == ("docs__v1", {1: "retired", 2: "live"})  # v1 serves while recorded retired

    again = reindex_here(pair, "--yes", "rollback", "docs")
    assert again.returncode == 0 and "completed the interrupted rollback" in again.stdout, again.describe()
    assert _state(pair) == ("docs__v1", {1: "live", 2: "retired"})

    forward = reindex_here(pair, "--yes", "cutover", "docs")  # nothing built: it names the way forward
    assert forward.returncode == 3 and "reindex cutover docs --to v2" in forward.stderr, forward.describe()
    with pair.workspace() as ws:
        assert commands.cutover(ws, "docs", to="v2")["live"] == "docs__v2"


def test_gc_sigkilled_after_the_drop_is_recorded_by_the_next_gc(pair):
    pair.restore()
    with pair.workspace() as ws:
        commands.cutover(ws, "docs")
        v1 = ws.state.version_by_physical(ws.state.get_collection(ws.store_url, "docs").id, "docs__v1")
    was_killed(reindex(pair, "--yes", "gc", "docs", "--keep", "0", kill_at="gc-after-drop"))
    with pair.workspace() as ws:
        assert not ws.store.collection_exists("docs__v1") and statuses(ws)[1] == "retired"

    r = completed(reindex_here(pair, "--json", "--yes", "gc", "docs", "--keep", "0"))
    assert r["dropped"] == [] and [x["kind"] for x in r["repairs"]] == ["dropped"]
    with pair.workspace() as ws:
        assert statuses(ws) == {1: "dropped", 2: "live"} and ws.state.ledger_count(v1.id) == 0


def test_migrate_sigkilled_between_the_drop_and_the_alias_is_finished_by_migrate(pair):
    pair.restore()
    was_killed(reindex(pair, "--yes", "migrate", "kb", kill_at="migrate-after-drop"))
    assert _state(pair, "kb") == (None, {1: "live", 2: "verified"})  # the name resolves to nothing

    with pair.workspace() as ws:  # status reads only: it says what to run (tests/test_reconcile.py)
        [row] = commands.status(ws, "kb")
        assert row["live"] is None and "reindex migrate kb" in row["repairs"][0]["message"]
        assert ws.store.resolve("kb") is None, "status wrote to the store"

    r = completed(reindex_here(pair, "--json", "--yes", "migrate", "kb"))
    assert r["migrated"] and r["completed"] and r["copied_to"] == "kb__v2"
    assert _state(pair, "kb") == ("kb__v2", {1: "dropped", 2: "live"})
    assert ("migrate", "ok") in _actions(pair, "kb")


def _unadopted_copy(ws: Workspace, name: str) -> None:
    """A collection made outside the tool: kb's points (MiniLM's vectors, the text), untagged."""
    points = [p for page in ws.store.scroll("kb", with_vectors=True) for p in page]
    ws.store.create_collection(CollectionSpec(name=name, dim=len(points[0].vector)))
    ws.store.upsert(name, [Point(p.doc_id, p.vector, {"text": p.payload["text"]}) for p in points])


def _adoption(ws: Workspace, name: str) -> dict[str, Any]:
    """What adopt leaves: the points (tags included), the collection's metadata, the state's records."""
    lc = ws.state.get_collection(ws.store_url, name)
    [v] = ws.state.versions(lc.id)
    points = [p for page in ws.store.scroll(name, with_vectors=True) for p in page]
    metadata = dict(ws.store.describe(name).metadata)
    assert metadata.pop("reindex.logical") == name
    assert metadata.pop("reindex.created") == iso(v.created_at)  # the store's tag names the recorded version
    return {
        "ids": sorted(p.doc_id for p in points),
        "count": ws.store.count(name),
        "payloads": {p.doc_id: dict(p.payload) for p in points},
        "vectors": {p.doc_id: list(p.vector) for p in points},
        "metadata": metadata,
        "text_field": lc.text_field,
        "version": (v.version, v.physical_name == name, v.status, v.model_fingerprint, v.dim, v.metric,
                    v.point_count, v.live_since is not None),
        "ledger": ws.state.ledger(v.id),
        "audit": [(e["action"], e["result"]) for e in commands.history(ws, name, limit=100)["events"]],
    }


def test_adopt_sigkilled_before_the_record_is_finished_by_adopting_again(pair, minilm_path):
    """Killed with the points tagged and the metadata set, before the state knows: adopt again completes it.

    The reference is an uninterrupted adopt of an identical copy, in the same store. Both copies
    are adopted by processes that did not write them, as an application's collection is: Qdrant
    local keeps a cosine collection's vectors normalised in the writer's memory but stored as sent,
    and a payload update persists the memory copy, so an adopt inside the writing process would
    store vectors one float32 rounding away from the ones sent (which vectors depends on the
    machine's BLAS kernel: the clean-clone failure of issue 22). Read by a fresh process, adopt
    must leave every vector bit for bit as it found it.
    """
    pair.restore()
    with pair.workspace() as ws:
        _unadopted_copy(ws, "notes")
        _unadopted_copy(ws, "notes_ref")
    with pair.workspace() as ws:
        before = {p.doc_id: list(p.vector) for page in ws.store.scroll("notes_ref", with_vectors=True) for p in page}
        commands.adopt(ws, "notes_ref", str(minilm_path), sample=4)
    with pair.workspace() as ws:
        expected = _adoption(ws, "notes_ref")
    assert expected["vectors"] == before  # adopt tags; it never rewrites a vector
    adopt = ("--json", "adopt", "notes", "--model", str(minilm_path), "--sample", "4")

    was_killed(reindex(pair, *adopt, kill_at="adopt-before-record"))
    with pair.workspace() as ws:  # the store changed, the state did not
        assert ws.state.get_collection(ws.store_url, "notes") is None
        tags = {p.payload.get(MODEL_KEY) for page in ws.store.scroll("notes") for p in page}
        assert tags == {expected["payloads"][expected["ids"][0]][MODEL_KEY]}
        assert ws.store.describe("notes").metadata.get("reindex.fingerprint")

    r = completed(reindex_here(pair, *adopt))  # takes over the dead process's lease, finds the tags in place
    assert r["collection"] == r["physical"] == "notes" and r["version"] == 1
    with pair.workspace() as ws:
        assert _adoption(ws, "notes") == expected
        with pytest.raises(ConflictError, match="already managed"):
            commands.adopt(ws, "notes", str(minilm_path), sample=4)
