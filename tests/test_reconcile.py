"""The store's alias is the truth for which version is live; every command reconciles the state with it first.

Each test stops a step that changes the store and then the state between the
two, at its kill point (reindexer.killpoints), in process: the kill point raises
instead of sending SIGKILL, so the test goes on in the same process. The lease
is released on the way out, unlike after a real kill; tests/test_crash.py runs
the same kill points with a real SIGKILL in a subprocess, where the next command
must also take over the dead process's lease.

Also here: a plan is applied once (re-applying one whose version was superseded
or rolled back never moves the alias), and after a rollback `cutover` names the
version to go forward to.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest

from reindexer import commands, killpoints
from reindexer.commands import sync, verify
from reindexer.errors import ConflictError, DriftError, NotFoundError
from reindexer.model_identity import ModelSettings
from reindexer.planner import load_plan_file
from reindexer.reconcile import pending_key
from reindexer.workspace import LEASE_TTL
from tests.plugins.liveness import statuses

pytestmark = pytest.mark.slow


@pytest.fixture
def world(embedded_pair):
    embedded_pair.restore()
    return embedded_pair


@pytest.fixture
def ws(world):
    with world.workspace() as workspace:
        yield workspace


def _die():
    raise KeyboardInterrupt  # stands for SIGKILL at the kill point: nothing after it runs


@contextmanager
def dies_at(point: str):
    with pytest.MonkeyPatch.context() as m:
        m.setattr(killpoints, "_kill", _die)
        m.setenv(killpoints.ENV, point)
        with pytest.raises(KeyboardInterrupt):
            yield


def _version(ws, number: int, collection: str = "docs"):
    lc = ws.state.get_collection(ws.store_url, collection)
    return next(v for v in ws.state.versions(lc.id) if v.version == number)


def _events(ws, collection: str = "docs") -> list[dict]:
    return commands.history(ws, collection, limit=100)["events"]  # newest first


def _pending(ws, collection: str = "docs"):
    return ws.state.get_pending(pending_key(ws.store_url, collection))


def _the_bug(ws) -> None:
    """The state a kill between the swap and the state write leaves: the alias on v2, the state saying v1."""
    assert ws.store.resolve("docs") == "docs__v2"
    assert statuses(ws) == {1: "live", 2: "verified"}
    assert _pending(ws)["to"] == _version(ws, 2).id


def _assert_cut_over_recorded(ws) -> None:
    assert statuses(ws) == {1: "retired", 2: "live"}
    assert _version(ws, 2).previous_id == _version(ws, 1).id  # so that rollback knows where to go
    assert _pending(ws) is None
    events = _events(ws)
    cutovers = [e for e in events if e["action"] == "cutover"]
    assert cutovers and cutovers[0]["detail"]["completed_by"] == "reconcile"
    assert cutovers[0]["detail"]["to"] == "docs__v2" and cutovers[0]["detail"]["previous"] == "docs__v1"
    assert any(e["action"] == "reconcile" and "interrupted" in " ".join(e["detail"]["repairs"]) for e in events)


# -- a cut-over killed between the alias swap and the state write ----------------------------
NEXT_COMMANDS = ["status", "history", "cutover", "cutover --to v1", "rollback", "sync", "verify", "gc", "eval",
                 "plan"]


@pytest.mark.parametrize("next_command", NEXT_COMMANDS)
def test_a_cutover_killed_after_the_swap_is_repaired_by_the_next_command(world, ws, next_command, tmp_path):
    with dies_at("after-alias-swap"):
        commands.cutover(ws, "docs")
    _the_bug(ws)

    if next_command == "status":
        [row] = commands.status(ws, "docs")
        assert row["live"]["physical"] == "docs__v2" and row["shadows"] == []
        assert [r["physical"] for r in row["retired"]] == ["docs__v1"]
        assert [(r["kind"], r["recorded"]) for r in row["repairs"]] == [("completed", True)]
    elif next_command == "history":
        assert commands.history(ws, "docs")["versions"][1]["status"] == "live"
    elif next_command == "cutover":
        r = commands.cutover(ws, "docs")
        assert r["completed"] and r["live"] == "docs__v2" and not r["changed"] and r["previous"] == "docs__v1"
    elif next_command == "cutover --to v1":
        assert commands.cutover(ws, "docs", to="v1")["live"] == "docs__v1"
        assert ws.store.resolve("docs") == "docs__v1"
    elif next_command == "rollback":
        r = commands.rollback(ws, "docs")
        assert r["changed"] and r["live"] == "docs__v1" and r["from"] == "docs__v2"
    elif next_command == "sync":
        r = sync(ws, "docs")
        assert r.repairs and set(r.versions) == {"v2"}
    elif next_command == "verify":
        assert verify(ws, "docs").version == 2
    elif next_command == "gc":
        assert commands.gc(ws, "docs", keep=1)["dropped"] == []
    elif next_command == "eval":
        log = tmp_path / "log.txt"
        log.write_text("how do I reset my password\nexport invoices\n")
        commands.compare_versions(ws, "docs", str(log), versions="v1,v2", k=3)
    elif next_command == "plan":
        p = commands.plan(ws, "docs", model_path=str(world.minilm_path), estimate=False)
        assert p.from_version["physical"] == "docs__v2"

    if next_command in ("cutover --to v1", "rollback"):
        assert statuses(ws) == {1: "live", 2: "retired"}
        assert [e["action"] for e in _events(ws)][:3] in (
            ["cutover", "reconcile", "cutover"], ["rollback", "reconcile", "cutover"])
    else:
        _assert_cut_over_recorded(ws)
        r = commands.rollback(ws, "docs")  # previous_id was restored with the repair
        assert r["live"] == "docs__v1" and ws.store.resolve("docs") == "docs__v1"


def test_an_apply_killed_after_the_swap_is_finished_by_applying_again(world, ws):
    plan = load_plan_file(world.plan_v2)
    with dies_at("after-alias-swap"):
        commands.apply(ws, plan)
    _the_bug(ws)
    again = commands.apply(ws, plan)
    assert again.cut_over and again.live == "docs__v2" and "interrupted cut-over" in again.message
    assert [r["kind"] for r in again.repairs] == ["completed"]
    _assert_cut_over_recorded(ws)
    assert list(statuses(ws).values()).count("live") == 1  # not two versions "live"
    event = next(e for e in _events(ws) if e["action"] == "cutover")
    assert event["plan_fingerprint"] == plan.inputs_fingerprint and event["detail"]["completed_by"] == "reconcile"
    assert "already applied" in commands.apply(ws, plan).message
    assert commands.rollback(ws, "docs")["live"] == "docs__v1"


def test_a_cutover_killed_before_the_swap_changes_nothing_and_says_so(world, ws):
    with dies_at("before-alias-swap"):
        commands.cutover(ws, "docs")
    assert ws.store.resolve("docs") == "docs__v1" and _pending(ws) is not None
    [row] = commands.status(ws, "docs")
    assert row["live"]["physical"] == "docs__v1" and [r["kind"] for r in row["repairs"]] == ["interrupted"]
    assert statuses(ws) == {1: "live", 2: "verified"} and _pending(ws) is None
    assert _events(ws)[1]["action"] == "cutover" and _events(ws)[1]["result"] == "interrupted"
    assert commands.cutover(ws, "docs")["live"] == "docs__v2"
    assert statuses(ws) == {1: "retired", 2: "live"}


def test_a_rollback_killed_after_the_swap_is_not_rolled_back_twice(world, ws):
    commands.cutover(ws, "docs")
    p3 = commands.plan(ws, "docs", model_path=str(world.minilm_path), settings=ModelSettings(truncate_dim=128),
                       estimate=False)
    assert commands.apply(ws, p3).live == "docs__v3"  # v1 -> v2 -> v3, each remembering the one before
    with dies_at("after-alias-swap"):
        commands.rollback(ws, "docs")
    assert ws.store.resolve("docs") == "docs__v2" and statuses(ws) == {1: "retired", 2: "retired", 3: "live"}

    r = commands.rollback(ws, "docs")
    assert r["completed"] and not r["changed"] and r["live"] == "docs__v2" and r["from"] == "docs__v3"
    assert ws.store.resolve("docs") == "docs__v2", "rolled back a second time, to v1"
    assert statuses(ws) == {1: "retired", 2: "live", 3: "retired"}
    rollbacks = [e for e in _events(ws) if e["action"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["detail"]["completed_by"] == "reconcile"

    with pytest.raises(NotFoundError) as exc:  # after a rollback, cutover names the way forward
        commands.cutover(ws, "docs")
    assert "v3 was rolled back" in exc.value.message and "reindex cutover docs --to v3" in exc.value.hint
    with pytest.raises(ConflictError, match="rolled back to v2") as exc:  # and the old plan cannot do it
        commands.apply(ws, p3)
    assert exc.value.exit_code == 4 and "reindex cutover docs --to v3" in exc.value.hint
    assert ws.store.resolve("docs") == "docs__v2"


def test_a_gc_killed_after_the_drop_is_recorded_by_the_next_command(world, ws):
    commands.cutover(ws, "docs")
    v1 = _version(ws, 1)
    assert ws.state.ledger_count(v1.id) == 24
    with dies_at("gc-after-drop"):
        commands.gc(ws, "docs", keep=0)
    assert not ws.store.collection_exists("docs__v1") and statuses(ws)[1] == "retired"

    [row] = commands.status(ws, "docs")
    assert [r["kind"] for r in row["repairs"]] == ["dropped"] and row["retired"] == []
    assert statuses(ws) == {1: "dropped", 2: "live"} and ws.state.ledger_count(v1.id) == 0
    assert commands.gc(ws, "docs", keep=0)["dropped"] == []
    with pytest.raises(NotFoundError, match="dropped"):
        commands.rollback(ws, "docs")


def test_a_gc_killed_inside_the_stores_own_drop_is_finished_by_the_next_gc(world):
    """Both embedded stores delete a collection's files with ``shutil.rmtree`` before they forget it
    (Milvus Lite's ``schema.json``, Qdrant local's ``meta.json`` entry), so a kill inside the walk
    leaves a collection the store still lists with part of its files gone. It must not stop the
    commands that read, and the next gc drops it and records it."""
    with world.workspace() as ws:
        commands.cutover(ws, "docs")
        v1 = _version(ws, 1)
    if world.kind == "milvus-lite":
        folder = world.ws_dir / "milvus.db" / "collections" / "docs__v1"
        shutil.rmtree(folder / "partitions")  # data and index files; schema.json and the manifest stay
    else:
        folder = world.ws_dir / "qdrant" / "collection" / "docs__v1"
        (folder / "storage.sqlite").unlink()  # its points; meta.json still lists the collection
    with world.workspace() as ws:
        assert ws.store.collection_exists("docs__v1") and ws.store.resolve("docs") == "docs__v2"
        [row] = commands.status(ws, "docs")
        assert row["live"]["physical"] == "docs__v2" and statuses(ws) == {1: "retired", 2: "live"}, row

        assert commands.gc(ws, "docs", keep=0)["dropped"] == ["docs__v1"]
        assert not ws.store.collection_exists("docs__v1") and not folder.exists()
        assert statuses(ws) == {1: "dropped", 2: "live"} and ws.state.ledger_count(v1.id) == 0
        assert verify(ws, "docs").ok


@pytest.mark.parametrize("next_command", ["migrate", "gc"])
def test_a_migrate_killed_between_the_drop_and_the_alias(world, ws, next_command):
    with dies_at("migrate-after-drop"):
        commands.migrate(ws, "kb")
    assert ws.store.resolve("kb") is None and ws.store.collection_exists("kb__v2")

    [row] = commands.status(ws, "kb")  # reads only: reports, never makes the alias
    assert row["live"] is None
    [repair] = row["repairs"]
    assert repair["kind"] == "unresolved" and not repair["recorded"] and "reindex migrate kb" in repair["message"]
    assert ws.store.resolve("kb") is None and statuses(ws, "kb") == {1: "live", 2: "verified"}

    if next_command == "migrate":
        r = commands.migrate(ws, "kb")
        assert r["migrated"] and r["completed"] and r["copied_to"] == "kb__v2" and r["copied"] == 12
        assert r["name_missing_ms"] > 0
    else:
        assert [x["kind"] for x in commands.gc(ws, "kb", keep=1)["repairs"]] == ["alias-restored", "completed"]
    assert ws.store.resolve("kb") == "kb__v2" and statuses(ws, "kb") == {1: "dropped", 2: "live"}
    assert ws.state.ledger_count(_version(ws, 1, "kb").id) == 0
    assert ws.state.ledger_count(_version(ws, 2, "kb").id) == 12
    [event] = [e for e in _events(ws, "kb") if e["action"] == "migrate"]
    assert event["detail"]["completed_by"] == "reconcile" and event["detail"]["gap_ms"] > 0


def test_a_migrate_killed_after_the_alias_is_recorded_by_status(world, ws):
    with dies_at("migrate-after-alias"):
        commands.migrate(ws, "kb")
    assert ws.store.resolve("kb") == "kb__v2" and statuses(ws, "kb") == {1: "live", 2: "verified"}
    [row] = commands.status(ws, "kb")
    assert row["live"]["physical"] == "kb__v2" and [r["kind"] for r in row["repairs"]] == ["completed"]
    assert statuses(ws, "kb") == {1: "dropped", 2: "live"}


# -- apply --resume when no apply was interrupted ---------------------------------------------
def test_resume_after_a_finished_apply_is_done_and_reads_the_alias_after_reconciling(world, ws):
    plan = load_plan_file(world.plan_v2)
    assert commands.apply(ws, plan).live == "docs__v2"  # finished: the kill, if any, came after the last write
    r = commands.apply_from(ws, resume="docs")
    assert r.already_applied and not r.cut_over and (r.plan_id, r.version, r.live) == (plan.id, 2, "docs__v2")
    assert r.message == f"nothing to resume: plan {plan.id[:12]} is already applied; v2 (docs__v2) is live"
    assert r.repairs == [] and r.to_dict()["live"] == "docs__v2"
    assert ws.store.resolve("docs") == "docs__v2" and statuses(ws) == {1: "retired", 2: "live"}

    # A rollback killed after its swap: the alias says v1, the state still says v2. The answer
    # reconciles first, records the repair, and names what the alias names.
    with dies_at("after-alias-swap"):
        commands.rollback(ws, "docs")
    assert ws.store.resolve("docs") == "docs__v1" and statuses(ws) == {1: "retired", 2: "live"}
    r = commands.apply_from(ws, resume="docs")
    assert r.already_applied and not r.cut_over and (r.plan_id, r.version, r.live) == (plan.id, 2, "docs__v1")
    assert r.message.endswith("is already applied (v2 went live, and is retired now); v1 (docs__v1) is live")
    assert [(x["kind"], x["recorded"]) for x in r.repairs] == [("completed", True)]
    assert statuses(ws) == {1: "live", 2: "retired"} and ws.store.resolve("docs") == "docs__v1"


def test_resume_where_no_apply_ever_finished_is_still_not_found(world, ws):
    from reindexer.sources.spec import SourceSpec

    with pytest.raises(NotFoundError, match="unknown collection 'nope'") as exc:
        commands.apply_from(ws, resume="nope")
    assert exc.value.exit_code == 3
    # kb was adopted: live, but no apply ever built it
    with pytest.raises(NotFoundError, match="no interrupted apply to resume for 'kb', and no apply") as exc:
        commands.apply_from(ws, resume="kb")
    assert exc.value.exit_code == 3 and ws.store.resolve("kb") == "kb"
    commands.plan(ws, "fresh", model_path=str(world.minilm_path), estimate=False,
                  source=SourceSpec(kind="jsonl", location=str(world.corpus)))
    with pytest.raises(NotFoundError, match="no apply of it ever finished") as exc:  # planned, never applied
        commands.apply_from(ws, resume="fresh")
    assert exc.value.exit_code == 3 and "reindex apply PLAN_FILE" in exc.value.hint
    assert not ws.store.collection_exists("fresh__v1")


# -- who may record a repair -------------------------------------------------------------------
def test_status_only_reports_while_a_running_command_holds_the_lease(world, ws):
    with dies_at("after-alias-swap"):
        commands.cutover(ws, "docs")
    lease = ws.state.acquire_lease(ws.lease_name("docs"), LEASE_TTL)  # held by this live process
    try:
        [row] = commands.status(ws, "docs")
        assert row["live"]["physical"] == "docs__v2"  # the truth, shown as the store has it
        assert [r["physical"] for r in row["retired"]] == ["docs__v1"] and row["shadows"] == []
        [repair] = row["repairs"]
        assert not repair["recorded"] and "is locked by" in repair["message"]
        assert statuses(ws) == {1: "live", 2: "verified"}  # nothing written under someone else's lease
    finally:
        ws.state.release_lease(lease)
    [row] = commands.status(ws, "docs")
    assert row["repairs"][0]["recorded"]
    _assert_cut_over_recorded(ws)


def test_an_alias_moved_by_hand_is_adopted_as_a_cutover(world, ws):
    ws.store.set_alias("docs", "docs__v2")
    [row] = commands.status(ws, "docs")
    assert [r["kind"] for r in row["repairs"]] == ["adopted-alias"]
    assert statuses(ws) == {1: "retired", 2: "live"} and _version(ws, 2).previous_id == _version(ws, 1).id
    assert commands.rollback(ws, "docs")["live"] == "docs__v1"


def test_an_alias_dropped_by_hand_leaves_nothing_recorded_live(world, ws):
    ws.store.drop_alias("docs")
    [row] = commands.status(ws, "docs")
    assert row["live"] is None and [r["kind"] for r in row["repairs"]] == ["no-alias"]
    assert "reindex cutover docs --to v1" in row["repairs"][0]["message"]
    assert statuses(ws) == {1: "retired", 2: "verified"}
    assert commands.cutover(ws, "docs", to="v1")["live"] == "docs__v1"


def test_a_consistent_collection_needs_no_repair_and_no_audit(world, ws):
    before = len(_events(ws))
    [row] = commands.status(ws, "docs")
    assert row["repairs"] == [] and len(_events(ws)) == before


# -- a plan is applied once --------------------------------------------------------------------
def test_reapplying_an_old_plan_never_moves_the_alias(world, ws):
    assert commands.apply(ws, load_plan_file(world.plan_v2)).live == "docs__v2"
    with pytest.raises(ConflictError, match="applied once") as exc:
        commands.apply(ws, load_plan_file(world.plan_v1))
    assert exc.value.exit_code == 4 and "superseded by v2" in exc.value.message
    assert exc.value.hint == "`reindex cutover docs --to v1` points docs at v1 again"
    assert ws.store.resolve("docs") == "docs__v2" and statuses(ws) == {1: "retired", 2: "live"}
    assert "already applied" in commands.apply(ws, load_plan_file(world.plan_v1), cutover=False).message


def test_after_a_rollback_cutover_names_the_version_to_go_forward_to(world, ws):
    plan = load_plan_file(world.plan_v2)
    commands.apply(ws, plan)
    commands.rollback(ws, "docs")
    with pytest.raises(NotFoundError) as exc:
        commands.cutover(ws, "docs")
    assert exc.value.exit_code == 3 and "reindex cutover docs --to v2" in exc.value.hint
    with pytest.raises(ConflictError, match="rolled back to v1") as exc:
        commands.apply(ws, plan)
    assert "reindex cutover docs --to v2" in exc.value.hint and ws.store.resolve("docs") == "docs__v1"
    assert commands.cutover(ws, "docs", to="v2")["live"] == "docs__v2"


def test_a_built_plan_does_not_cut_over_once_the_live_version_moved(world, ws):
    p3 = commands.plan(ws, "docs", model_path=str(world.minilm_path), settings=ModelSettings(truncate_dim=128),
                       estimate=False)
    assert commands.apply(ws, p3).live == "docs__v3"
    with pytest.raises(DriftError, match="pointed at docs__v1") as exc:
        commands.apply(ws, load_plan_file(world.plan_v2))  # v2 is built, but from v1, and v3 is live now
    assert exc.value.exit_code == 4 and "reindex cutover docs --to v2" in exc.value.hint
    assert ws.store.resolve("docs") == "docs__v3"
