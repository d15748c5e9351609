"""The shared state database fails too: PostgreSQL (pgserver) stopped, restarted, cut off and upgraded half-way.

The module starts a PostgreSQL server of its own (the session's shared one is never stopped), stops it
with pg_ctl in the middle of an apply and of a sync and starts it again: the run's state writes wait
it out (bounded tenacity retries, a new connection through pool_pre_ping) and the run finishes; a
server that stays away ends the run with exit 5, the retry count and the state URL without its
password, and `apply --resume` finishes it once the server is back.

A lease holder cut off from the database: first its connections are killed from another session
while it is stopped mid-build (SIGSTOP, then pg_terminate_backend: a second apply meanwhile is
refused; let go, it reconnects, keeps its lease and finishes).
Then a real partition, through a TCP proxy on loopback that the holder's state connection goes
through and the test cuts (every open connection closed, every new one refused, as a firewall
that rejects would; a firewall that drops packets is the keepalive and tcp_user_timeout settings'
job, which the proxy cannot show because the kernel acknowledges its packets): the holder cannot
renew its lease, a second apply is refused until the lease expires, then takes it over and
finishes; when the partition heals, the holder's next write is refused by the fence (exit 4) and
it writes nothing more.

A state upgrade interrupted half-way: a step failing (SQLite and PostgreSQL), and the process killed
while its PostgreSQL transaction is open; running the upgrade again repairs it.

The vector store is Qdrant local (one process at a time): every test runs its faulted command in a
process of its own and the others after it, except the partition test, whose two applies share one
store client in this process (the lease, not the store's folder lock, must be what stops the second).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY
from reindexer.config import Config
from reindexer.errors import EXIT_BACKEND_UNAVAILABLE, EXIT_CONFLICT, LeaseLostError
from reindexer.sources.spec import SourceSpec
from reindexer.state import StateStore
from reindexer.state.revisions import VERSION_TABLE, head_revision
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

pytestmark = [pytest.mark.server, pytest.mark.slow]

N_DOCS = 48
BATCH = 6
RUN_TIMEOUT = 300
PASSWORD = "s3cret-state-pw"  # the server trusts local connections; the URL carries it all the same
#: Rides through a restart: a minute and a half of retries.
LONG_RETRIES = {"REINDEX_RETRY_ATTEMPTS": "40", "REINDEX_RETRY_INITIAL": "0.3", "REINDEX_RETRY_MAX_SECONDS": "90"}
#: Gives up: 3 attempts in about a second.
SHORT_RETRIES = {"REINDEX_RETRY_ATTEMPTS": "3", "REINDEX_RETRY_INITIAL": "0.2", "REINDEX_RETRY_MAX_SECONDS": "5"}


# -- the module's own PostgreSQL server -------------------------------------------------------------------
class Postgres:
    """pgserver's PostgreSQL, stopped and started with its own pg_ctl."""

    def __init__(self, folder: Path):
        import pgserver

        self.server = pgserver.get_server(str(folder), cleanup_mode="stop")
        uri = self.server.get_uri()
        self.socket_dir = parse_qs(urlsplit(uri).query)["host"][0]

    def url(self, database: str, password: str | None = PASSWORD) -> str:
        return sa.engine.URL.create(
            "postgresql+psycopg",
            username="postgres",
            password=password,
            database=database,
            query={"host": self.socket_dir},
        ).render_as_string(hide_password=False)

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return name

    def sql(self, database: str, statement: str, **params: object) -> list:
        engine = sa.create_engine(self.url(database, None), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                result = conn.execute(sa.text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        # as pgserver itself starts it: no TCP listener, the socket in the same folder
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    pytest.importorskip("pgserver", reason="pip install pgserver (the test extra) for PostgreSQL tests")
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' for PostgreSQL tests")
    try:
        server = Postgres(tmp_path_factory.mktemp("pgfaults"))
    except Exception as exc:  # noqa: BLE001 - pgserver's own binaries failed to start here
        pytest.skip(f"pgserver could not start PostgreSQL: {exc}")
    yield server
    # pgserver stops only the postmaster it started itself, not the one this module restarted
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped
    server.server.cleanup()


@dataclass
class World:
    folder: Path
    pg: Postgres
    database: str
    corpus: Path
    minilm: Path

    @property
    def state_url(self) -> str:
        return self.pg.url(self.database)

    @property
    def store_url(self) -> str:
        return f"qdrant+local:{self.folder / 'q'}"

    def config(self, state_url: str | None = None, **kw: object) -> Config:
        return Config(
            base_dir=self.folder,
            store_url=self.store_url,
            state_url=state_url or self.state_url,
            batch_size=BATCH,
            **kw,
        )

    def env(self, retries: dict[str, str]) -> dict[str, str]:
        return {
            **os.environ,
            **retries,
            "REINDEX_STORE": self.store_url,
            "REINDEX_STATE": self.state_url,
            "REINDEX_BATCH_SIZE": str(BATCH),
            "REINDEX_PROGRESS": "0",
        }

    def reindex(self, *args: str, retries: dict[str, str] = LONG_RETRIES) -> SimpleNamespace:
        """The CLI, in this process, with the environment a subprocess would get."""
        from click.testing import CliRunner

        from reindexer.cli import cli

        result = CliRunner().invoke(cli, list(args), env=self.env(retries), catch_exceptions=False)
        return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)

    def start(self, *args: str, retries: dict[str, str]) -> Run:
        # One text per encode call paces the build, so the test meets it between batches.
        env = {**self.env(retries), "REINDEX_EMBED_BATCH_SIZE": "1"}
        return Run(
            subprocess.Popen(
                [sys.executable, "-m", "reindexer.cli", *args],
                cwd=self.folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )

    def plan_file(self, corpus: Path | None = None) -> Path:
        with Workspace(self.config()) as ws:
            plan = commands.plan(
                ws,
                "docs",
                model_path=str(self.minilm),
                estimate=False,
                source=SourceSpec(kind="jsonl", location=str(corpus or self.corpus)),
            )
        path = self.folder / "plan.json"
        path.write_text(plan.to_json() + "\n")
        return path

    def batches(self, kind: str) -> int:
        """Batches recorded by the newest running run of ``kind``, read over a connection of the test's own."""
        rows = self.pg.sql(
            self.database,
            "SELECT batches FROM reindex_run WHERE status = 'running' AND kind = :k ORDER BY id DESC LIMIT 1",
            k=kind,
        )
        return rows[0][0] if rows else 0

    def wait_for_batches(self, run: Run | threading.Thread, kind: str, at_least: int = 2) -> int:
        deadline = time.monotonic() + RUN_TIMEOUT
        while (done := self.batches(kind)) < at_least:
            assert run.is_alive(), run.stderr() if isinstance(run, Run) else "the run ended"
            assert time.monotonic() < deadline, f"the {kind} recorded no batches"
            time.sleep(0.02)
        return done


class Run:
    """A reindex process whose stderr is read as it comes, so the test can wait for its first retry."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self.retrying = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "did not answer" in line:
                self.retrying.set()

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the run for the block, as a stalled holder (a GC pause, a frozen VM) would be; SIGCONT after."""
        assert self.is_alive(), self.stderr()
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stderr(self) -> str:
        return "".join(self.lines)

    def finish(self) -> tuple[int, str]:
        self.proc.wait(timeout=RUN_TIMEOUT)
        self.reader.join(timeout=30)
        return self.proc.returncode, self.stderr()

    def outage_met(self, pg: Postgres) -> float:
        """Keep the server stopped until the run has failed to reach it at least once; then start it."""
        began = time.monotonic()
        pg.stop()
        try:
            assert self.is_alive()  # stopped in the middle of the run
            assert self.retrying.wait(timeout=RUN_TIMEOUT), self.stderr()
            time.sleep(1.0)  # and a second more of its retries
        finally:
            pg.start()
        return time.monotonic() - began


@pytest.fixture
def world(pg, tmp_path, minilm_path, demo_corpus) -> World:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:N_DOCS])
    return World(tmp_path, pg, pg.new_database(), corpus, minilm_path)


def assert_consistent(world: World, texts: dict[str, str] | None = None, source: Path | None = None) -> None:
    """docs__v1 live in the store and the state, each document of the source once with the model's tag, verify clean."""
    source = source or world.corpus
    verify = world.reindex("verify", "docs", "--json", "--source", f"jsonl:{source}")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with Workspace(world.config()) as ws:
        assert ws.store.resolve("docs") == "docs__v1"
        lc = ws.state.get_collection(ws.store_url, "docs")
        versions = ws.state.versions(lc.id)
        assert [(v.physical_name, v.status) for v in versions] == [("docs__v1", "live")]
        points = [p for page in ws.store.scroll("docs__v1", batch_size=128) for p in page]
        model = ws.state.model_of(versions[0])
        ledger = ws.state.ledger(versions[0].id)
        assert ws.state.get_pending(f"pending:{ws.store_url}#docs") is None
    ids = [p.doc_id for p in points]
    assert len(ids) == len(set(ids)) == len(source.read_text().splitlines()) and set(ledger) == set(ids)
    assert {p.payload[MODEL_KEY] for p in points} == {model.short}
    if texts is not None:
        assert {p.doc_id: p.payload["text"] for p in points} == texts
    # no lease left behind
    assert world.pg.sql(world.database, "SELECT count(*) FROM reindex_lease")[0][0] == 0


# -- 1. the server stopped and started again mid-run: ridden through ----------------------------------------
def test_database_restarted_mid_apply_is_ridden_through(world):
    plan = world.plan_file()
    proc = world.start("--yes", "apply", str(plan), retries=LONG_RETRIES)
    stopped_after = world.wait_for_batches(proc, "build")
    outage = proc.outage_met(world.pg)
    rc, err = proc.finish()
    print(f"\nstopped after {stopped_after} of {N_DOCS // BATCH} batches for {outage:.1f}s; apply exit {rc}")
    assert stopped_after < N_DOCS // BATCH
    assert rc == 0, err
    assert "did not answer (attempt 1 of 40)" in err and PASSWORD not in err  # it met the outage, and waited
    assert_consistent(world)


def test_database_restarted_mid_sync_is_ridden_through(world, demo_corpus):
    with Workspace(world.config()) as ws:
        commands.apply(
            ws,
            commands.plan(
                ws,
                "docs",
                model_path=str(world.minilm),
                estimate=False,
                source=SourceSpec(kind="jsonl", location=str(world.corpus)),
            ),
        )
    revised = [{**d, "text": d["text"] + " Revised for the sync."} for d in demo_corpus.documents[:N_DOCS]]
    changed = write_jsonl(world.folder / "revised.jsonl", revised)
    proc = world.start("sync", "docs", "--source", f"jsonl:{changed}", retries=LONG_RETRIES)
    stopped_after = world.wait_for_batches(proc, "sync")
    outage = proc.outage_met(world.pg)
    rc, err = proc.finish()
    print(f"\nsync stopped after {stopped_after} batches for {outage:.1f}s; exit {rc}")
    assert rc == 0, err
    assert "did not answer (attempt 1 of 40)" in err
    assert_consistent(world, texts={d["id"]: d["text"] for d in revised}, source=changed)


# -- 2. the server stays away: exit 5, the retry count, no password; resume afterwards --------------------
def test_database_away_longer_than_the_retries_exits_5_and_resume_finishes(world):
    plan = world.plan_file()
    proc = world.start("--yes", "apply", str(plan), retries=SHORT_RETRIES)
    world.wait_for_batches(proc, "build")
    world.pg.stop()
    try:
        rc, err = proc.finish()
    finally:
        world.pg.start()
    assert rc == EXIT_BACKEND_UNAVAILABLE, err
    assert "unavailable after 3 attempts" in err or "lost the connection to the state database" in err, err
    assert "postgres:***@" in err and PASSWORD not in err
    assert "Traceback" not in err and "reindex apply --resume" in err

    resumed = world.reindex("--yes", "apply", "--resume", "docs")
    assert resumed.returncode == 0, resumed.stderr
    assert_consistent(world)


def test_database_down_before_the_command_exits_5_and_leaves_the_store_untouched(world):
    plan = world.plan_file()
    before = sorted(p.name for p in (world.folder / "q").rglob("*"))
    world.pg.stop()
    try:
        for args in (["--yes", "apply", str(plan)], ["status", "--json"], ["sync", "docs"]):
            began = time.monotonic()
            r = world.reindex(*args, retries=SHORT_RETRIES)
            assert r.returncode == EXIT_BACKEND_UNAVAILABLE, (args, r.stdout, r.stderr)
            assert "is unavailable after 3 attempts" in r.stderr and f"/{world.database}?" in r.stderr
            assert "postgres:***@" in r.stderr and PASSWORD not in r.stderr + r.stdout
            assert time.monotonic() - began < 30
    finally:
        world.pg.start()
    assert sorted(p.name for p in (world.folder / "q").rglob("*")) == before
    with Workspace(world.config()) as ws:
        assert ws.store.list_aliases() == {} and ws.store.list_collections() == []
        lc = ws.state.get_collection(ws.store_url, "docs")
        assert lc is None or ws.state.versions(lc.id) == []  # the plan's records, nothing more


# -- 3. a lease holder cut off from the database ---------------------------------------------------------
def test_a_holder_whose_connections_are_killed_keeps_its_lease_and_a_second_apply_is_refused(world, demo_corpus):
    # 24 batches: the holder stays mid-build through the three rounds however fast the machine
    corpus = write_jsonl(world.folder / "corpus-144.jsonl", demo_corpus.documents[:144])
    plan = world.plan_file(corpus)
    proc = world.start("--yes", "apply", str(plan), retries=LONG_RETRIES)
    done = world.wait_for_batches(proc, "build")
    killed = 0
    for round_ in range(3):
        if round_:
            # it goes on over new connections: a batch more recorded before the next round
            done = world.wait_for_batches(proc, "build", at_least=done + 1)
        # Frozen while the second apply asks, so the holder is mid-build for it every time: on a fast machine
        # it once finished in between, and the second apply rightly answered "plan already applied".
        with proc.paused():
            # every connection to the state but this one: the holder's pool, its heartbeat's
            killed += sum(
                r[0]
                for r in world.pg.sql(
                    world.database,
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
            )
            second = world.reindex("--yes", "apply", str(plan))
        assert second.returncode == EXIT_CONFLICT, second.stdout + second.stderr
        assert "is locked by" in second.stderr
    rc, err = proc.finish()
    print(f"\n{killed} of the holder's connections terminated by batch {done}; its apply exit {rc}")
    assert killed >= 1
    assert rc == 0, err
    assert_consistent(world, source=corpus)


class Partition:
    """A TCP proxy on loopback to the server's socket; ``cut`` closes every connection and refuses new ones."""

    def __init__(self, socket_path: str):
        self.target = socket_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()  # refused: the client sees the connection closed at once
                continue
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.target)
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def heal(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_a_partitioned_holder_is_fenced_after_a_takeover_and_writes_nothing_more(world, monkeypatch):
    ttl = 6.0
    # The holder retries for up to 4 minutes (the partition lasts about 20 s); the CLI call below runs
    # with the same environment, as it swaps os.environ while it runs, under the holder's thread too.
    retries = {
        **LONG_RETRIES,
        "REINDEX_RETRY_MAX_SECONDS": "240",
        "REINDEX_RETRY_ATTEMPTS": "200",
        "REINDEX_LEASE_TTL": str(ttl),
    }
    for key, value in retries.items():
        monkeypatch.setenv(key, value)
    plan_path = world.plan_file()
    from reindexer.planner import load_plan_file

    plan = load_plan_file(plan_path)
    partition = Partition(f"{world.pg.socket_dir}/.s.PGSQL.5432")
    through_proxy = sa.engine.URL.create(
        "postgresql+psycopg",
        username="postgres",
        password=PASSWORD,
        host="127.0.0.1",
        port=partition.port,
        database=world.database,
    ).render_as_string(hide_password=False)
    holder_ws = Workspace(world.config(state_url=through_proxy, embed_batch_size=1))
    outcome: dict[str, BaseException | object] = {}

    def holder() -> None:
        try:
            outcome["result"] = commands.apply(holder_ws, plan)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=holder, name="holder")
    thread.start()
    try:
        world.wait_for_batches(thread, "build")
        holder_run = world.pg.sql(world.database, "SELECT id FROM reindex_run WHERE status = 'running'")[0][0]
        partition.cut()
        cut_at = time.monotonic()

        # While the lease is unexpired, a second apply is refused, as any apply beside a live holder is.
        second = world.reindex("--yes", "apply", str(plan_path), retries=retries)
        assert second.returncode == EXIT_CONFLICT, second.stdout + second.stderr
        assert "is locked by" in second.stderr
        assert time.monotonic() - cut_at < ttl, "the refusal came after the TTL: the test proves nothing"

        # Past the TTL the holder, still cut off, has not renewed it: another apply takes over and finishes.
        expires = world.pg.sql(world.database, "SELECT expires_at FROM reindex_lease")[0][0]
        while world.pg.sql(world.database, "SELECT now() < :e", e=expires)[0][0]:
            time.sleep(0.2)
        assert thread.is_alive()  # still waiting for the database, inside its retries
        batches_at_takeover = world.pg.sql(
            world.database, "SELECT batches FROM reindex_run WHERE id = :i", i=holder_run
        )[0][0]
        taker = Workspace(world.config())
        taker._store = holder_ws.store  # one Qdrant local client: the lease alone must keep them apart
        try:
            done = commands.apply(taker, plan)
        finally:
            taker._store = None
            taker.close()
        assert done.physical == "docs__v1"
        took_over = time.monotonic() - cut_at

        partition.heal()
        thread.join(timeout=RUN_TIMEOUT)
        assert not thread.is_alive()
    finally:
        partition.close()
        thread.join(timeout=RUN_TIMEOUT)
        holder_ws.close()
    print(f"\ncut after {batches_at_takeover} batches; taken over {took_over:.1f}s after the cut (TTL {ttl:.0f}s)")
    error = outcome.get("error")
    assert isinstance(error, LeaseLostError), outcome
    assert error.exit_code == EXIT_CONFLICT and "lost the lease" in str(error)
    assert PASSWORD not in str(error)
    # The holder wrote nothing after the takeover: its run is as the taker left it (marked interrupted
    # when the taker started its own), not "failed" by the holder's error handling, and no batch more.
    status, batches = world.pg.sql(
        world.database, "SELECT status, batches FROM reindex_run WHERE id = :i", i=holder_run
    )[0]
    assert (status, batches) == ("interrupted", batches_at_takeover)
    assert_consistent(world)


def test_a_lease_is_renewed_in_the_background_while_its_holder_writes_nothing(world, monkeypatch):
    monkeypatch.setenv("REINDEX_LEASE_TTL", "1.5")
    with Workspace(world.config()) as ws, ws.lease("docs"):
        time.sleep(4.0)  # more than twice the TTL without a write
        other = StateStore(world.state_url)
        try:
            with pytest.raises(Exception, match="is locked by"):
                other.acquire_lease(ws.lease_name("docs"), timedelta(minutes=1))
        finally:
            other.close()


# -- 4. a state upgrade interrupted half-way --------------------------------------------------------------
def _before_migrations(state_url: str) -> None:
    """The previous release's schema: no traffic table, no revision."""
    StateStore(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reindex_traffic"))
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(sa.text("UPDATE reindex_meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()


def _schema_matches_the_models(state_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    state = StateStore(state_url, create=False)
    try:
        assert state.schema_revision == head_revision()
        with state.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    finally:
        state.close()
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_an_upgrade_whose_step_fails_half_way_is_repaired_by_running_it_again(world, engine, monkeypatch):
    import alembic.op

    url = f"sqlite:///{world.folder / 'state.db'}" if engine == "sqlite" else world.state_url
    _before_migrations(url)
    real, calls = alembic.op.create_index, []

    def fails_on_the_second_index(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("injected: the upgrade fails after its first table and index")
        return real(*args, **kwargs)

    monkeypatch.setattr(alembic.op, "create_index", fails_on_the_second_index)
    with pytest.raises(RuntimeError, match="injected"):
        StateStore.upgrade(url)
    monkeypatch.undo()
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    # all or nothing: the half-made table and the revision table were rolled back with it
    assert "reindex_traffic" not in tables and VERSION_TABLE not in tables

    done = StateStore.upgrade(url)
    assert done.from_revision is None and done.to_revision == head_revision()
    _schema_matches_the_models(url)


_KILLED_UPGRADE = """
import sys
from reindexer.state import StateStore
StateStore.upgrade(sys.argv[1])
"""


def test_an_upgrade_killed_inside_its_transaction_is_repaired_by_running_it_again(world):
    url = world.state_url
    _before_migrations(url)
    # The test's own transaction creates the traffic table and keeps it uncommitted: the upgrade's
    # CREATE TABLE of the same name waits for it, inside the upgrade's open transaction, which by then
    # holds its revision table. The process is killed there.
    blocker = sa.create_engine(world.pg.url(world.database, None))
    conn = blocker.connect()
    tx = conn.begin()
    conn.execute(sa.text("CREATE TABLE reindex_traffic (id integer)"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_UPGRADE, url],
        env={**os.environ, **LONG_RETRIES},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not world.pg.sql(
            world.database,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%CREATE TABLE reindex_traffic%' AND datname = current_database()",
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        tx.rollback()
        conn.close()
        blocker.dispose()
    assert proc.returncode == -signal.SIGKILL
    # the killed upgrade's backend ends its transaction when it finds its client gone
    deadline = time.monotonic() + 30
    while world.pg.sql(
        world.database,
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state <> 'idle'",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    tables = set(sa.inspect(sa.create_engine(world.pg.url(world.database, None))).get_table_names())
    assert "reindex_traffic" not in tables and VERSION_TABLE not in tables

    r = world.reindex("state", "upgrade")
    assert r.returncode == 0, r.stderr
    assert f"none (made before migrations) -> {head_revision()}" in r.stdout
    _schema_matches_the_models(url)


def test_two_upgrades_at_once_both_succeed(world):
    url = world.state_url
    _before_migrations(url)
    results: list[object] = []

    def upgrade() -> None:
        try:
            results.append(StateStore.upgrade(url))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len(results) == 2
    _schema_matches_the_models(url)
