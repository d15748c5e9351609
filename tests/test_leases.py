"""Leases and team state, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from reindexer import commands
from reindexer.config import Config
from reindexer.errors import LeaseHeldError
from reindexer.sources.spec import SourceSpec
from reindexer.state import StateStore
from reindexer.state.revisions import head_revision
from reindexer.workspace import Workspace


def test_second_holder_is_refused_with_who_and_since(state_url):
    state = StateStore(state_url)
    lease = state.acquire_lease("docs", timedelta(minutes=5), holder="alice@ops-1 pid 42")
    with pytest.raises(LeaseHeldError, match="locked by alice@ops-1 pid 42 since") as exc:
        state.acquire_lease("docs", timedelta(minutes=5), holder="cron@batch-2")
    assert exc.value.exit_code == 4
    state.release_lease(lease)
    state.release_lease(state.acquire_lease("docs", timedelta(minutes=5)))


def test_stale_leases_expire(state_url):
    state = StateStore(state_url)
    state.acquire_lease("docs", timedelta(seconds=-1), holder="crashed@host")
    taken = state.acquire_lease("docs", timedelta(minutes=5), holder="next@host")
    assert taken.holder == "next@host"


def test_racing_acquirers_get_exactly_one_lease(state_url):
    """Eight threads, each with its own engine, race for one (expired) lease."""
    StateStore(state_url).acquire_lease("docs", timedelta(seconds=-1), holder="stale")
    winners, losers = [], []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        state = StateStore(state_url)
        barrier.wait()
        try:
            winners.append(state.acquire_lease("docs", timedelta(minutes=5), holder=f"t{i}"))
        except LeaseHeldError:
            losers.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7


def test_wait_gets_the_lease_once_released(state_url, tmp_path):
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path}/q", state_url=state_url)
    ws = Workspace(config)
    holder = ws.state.acquire_lease(ws.lease_name("docs"), timedelta(minutes=5), holder="apply@elsewhere")
    threading.Timer(1.0, ws.state.release_lease, args=(holder,)).start()
    started = time.monotonic()
    with ws.lease("docs", wait=30):
        waited = time.monotonic() - started
    assert 0.9 < waited < 20
    with pytest.raises(LeaseHeldError):
        with ws.lease("docs"):
            with ws.lease("docs"):
                pass
    ws.close()


@pytest.mark.slow
def test_two_concurrent_applies_never_both_proceed(state_url, tmp_path, minilm_path, small_corpus_file):
    store = f"qdrant+local:{tmp_path}/q"
    config = Config(base_dir=tmp_path, store_url=store, state_url=state_url, batch_size=16)
    with Workspace(config) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                             source=SourceSpec(kind="jsonl", location=str(small_corpus_file)))
        (tmp_path / "plan.json").write_text(plan.to_json())
    env = {**os.environ, "REINDEX_STORE": store, "REINDEX_STATE": state_url, "REINDEX_PROGRESS": "0",
           "REINDEX_BATCH_SIZE": "8", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reindexer.cli", "--yes", "apply", str(tmp_path / "plan.json")]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = StateStore(state_url)
    from reindexer.state import Lease

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the first apply holds the lease
        with state.session() as s:
            if s.get(Lease, f"{store}#docs") is not None:
                break
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    # The second apply runs in this process: it reaches the lease at once, where a process of its
    # own would first spend seconds importing, racing the end of the first apply.
    from click.testing import CliRunner

    from reindexer.cli import cli

    second = CliRunner().invoke(cli, cmd[3:], env=env, catch_exceptions=False)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.exit_code == 4, second.output
    assert "is locked by" in second.stderr and "since" in second.stderr
    with Workspace(config) as ws:
        assert ws.store.resolve("docs") == "docs__v1"
        assert [v.version for v in ws.state.versions(1)] == [1]


def test_state_tables_and_schema_stamp_on_both_engines(state_url):
    state = StateStore(state_url)
    assert state.schema_revision == head_revision()
    again = StateStore(state_url)
    assert again.store_id == state.store_id


def test_a_lease_left_by_a_killed_process_is_taken_over(state_url):
    state = StateStore(state_url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from reindexer.state.leases import this_holder

    ghost = this_holder().rsplit(" pid ", 1)[0] + f" pid {dead.pid} ns " + this_holder().rsplit(" ns ", 1)[1]
    state.acquire_lease("docs", timedelta(minutes=10), holder=ghost)
    assert state.acquire_lease("docs", timedelta(minutes=10)).holder == this_holder()
    # a live holder, or one on another host, is never taken over
    state2 = StateStore(state_url)
    with pytest.raises(LeaseHeldError):
        state2.acquire_lease("docs", timedelta(minutes=10))
    state2.acquire_lease("other", timedelta(minutes=10), holder=f"root@elsewhere pid {dead.pid} ns 1")
    with pytest.raises(LeaseHeldError):
        state2.acquire_lease("other", timedelta(minutes=10))
