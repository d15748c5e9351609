"""The catch-up before every alias swap reads what changed, not the collection (reindexer.build.catchup).

On each embedded store, with two real model versions (MiniLM, and its 128-dimension
truncation built from the live payload): an application's writes (new points, a rewrite
of a tool-written point) and the tool's own sync of the live version are found without
reading every point, and reach the version the alias moves to; a deletion, which leaves
no trace, is caught by the count check and the full pass, which the result names; a pair
of versions never caught up one from the other starts with the full pass.
"""

from __future__ import annotations

from collections import Counter

import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.commands import sync, verify
from reindexer.config import Config
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

pytestmark = pytest.mark.slow  # real embeddings, two model versions

N = 24


def _vector(dim: int, i: int) -> list[float]:
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


def _ids(ws: Workspace, physical: str) -> Counter:
    return Counter(p.doc_id for page in ws.store.scroll(physical, batch_size=64) for p in page)


def _one_tag(ws: Workspace, physical: str) -> bool:
    """Every point of ``physical`` carries its own model's tag."""
    tags = {p.payload.get(MODEL_KEY) for page in ws.store.scroll(physical, batch_size=64) for p in page}
    return tags == {ws.store.describe(physical).metadata["reindex.fingerprint"][:12]}


@pytest.fixture
def world(embedded_store_url, tmp_path, minilm_path, demo_corpus):
    """v1 live (from a JSONL file), v2 built from v1's payload (128 dimensions), not cut over."""
    corpus = write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:N])
    config = Config(base_dir=tmp_path, store_url=embedded_store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=8)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                             settings=ModelSettings(truncate_dim=128))
        commands.apply(ws, plan, cutover=False)
        yield ws


def _app_writes(ws: Workspace, physical: str, dim: int, texts: dict[str, str]) -> None:
    """What an application writes through its own client: its payload, without the tool's tag."""
    ws.store.upsert(physical, [Point(d, _vector(dim, i), {"text": t, "source": "app"})
                               for i, (d, t) in enumerate(texts.items())])


def test_cutover_and_rollback_read_only_what_changed(world):
    ws = world
    some = next(iter(_ids(ws, "docs__v1")))
    _app_writes(ws, "docs", 384, {"app-1": "Zebras cross the Mara river.", some: "A rewritten text."})

    moved = commands.cutover(ws, "docs")
    assert moved["live"] == "docs__v2" and moved["caught_up"] == {"embedded": 2, "deleted": 0}
    assert moved["catch_up"].startswith("changes only: 2 points without v1's model tag, 0 re-read")
    assert _ids(ws, "docs__v2") == _ids(ws, "docs__v1") and len(_ids(ws, "docs__v2")) == N + 1
    assert ws.store.retrieve("docs__v2", [some])[0].payload["text"] == "A rewritten text."
    assert _one_tag(ws, "docs__v2")  # every point embedded by v2's model
    assert verify(ws, "docs").ok

    # Into v2: one write the tool then syncs (tagged by v2's model, so only v2's ledger tells), one after.
    _app_writes(ws, "docs", 128, {"app-2": "Lighthouses once burned whale oil."})
    assert sync(ws, "docs").versions["v2"]["embedded"] == 1
    _app_writes(ws, "docs", 128, {"app-3": "A sourdough starter needs flour."})

    # v1's ledger never saw the application's two writes into it (they reached v2 by the catch-up), so
    # they are re-read from v2's ledger with the synced one: four, as the full pass would re-embed.
    back = commands.rollback(ws, "docs")
    assert back["live"] == "docs__v1" and (back["re_embedded"], back["deleted"]) == (4, 0)
    assert back["catch_up"].startswith("changes only: 1 points without v2's model tag, 3 re-read")
    live_ids = _ids(ws, "docs__v1")
    assert live_ids == _ids(ws, "docs__v2") and set(live_ids.values()) == {1} and len(live_ids) == N + 3
    assert _one_tag(ws, "docs__v1")  # (v1 verifies against its JSONL file, which lacks the app's writes)

    # Forward again: nothing written since, but v2 still holds app-3 as the application wrote it (not
    # in its ledger), which v1's ledger now names: that one point is embedded by v2's model, no other.
    again = commands.cutover(ws, "docs", to="v2")
    assert again["caught_up"] == {"embedded": 1, "deleted": 0}
    assert again["catch_up"].startswith("changes only: 0 points without v1's model tag, 1 re-read")
    assert _one_tag(ws, "docs__v2") and _ids(ws, "docs__v2") == live_ids


def test_a_deletion_is_caught_by_the_count_check_and_the_full_pass(world):
    ws = world
    commands.cutover(ws, "docs")
    gone = sorted(_ids(ws, "docs__v2"))[3]
    ws.store.delete("docs", [gone])  # the application deletes through the alias
    _app_writes(ws, "docs", 128, {"app-1": "Zebras cross the Mara river."})

    back = commands.rollback(ws, "docs")
    assert back["catch_up"] == f"full catch-up: store count {N} != ledger {N + 1}"
    assert (back["re_embedded"], back["deleted"]) == (1, 1)
    assert gone not in _ids(ws, "docs__v1") and _ids(ws, "docs__v1") == _ids(ws, "docs__v2")
    assert _one_tag(ws, "docs__v1")


def test_versions_never_caught_up_one_from_the_other_start_with_the_full_pass(world, minilm_path):
    ws = world
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                         settings=ModelSettings(truncate_dim=64))
    commands.apply(ws, plan)  # v3, built from v1 and cut over
    _app_writes(ws, "docs", 64, {"app-1": "Zebras cross the Mara river."})

    moved = commands.cutover(ws, "docs", to="v2")  # v2 was built from v1, never caught up from v3
    assert moved["catch_up"] == "full catch-up: no earlier catch-up of v2 from v3 to start from"
    assert moved["caught_up"] == {"embedded": 1, "deleted": 0}
    assert _ids(ws, "docs__v2") == _ids(ws, "docs__v3")
    back = commands.rollback(ws, "docs")  # now they were: the way back reads only what changed,
    # app-1, which v3 holds as the application wrote it and v2's ledger now names
    assert back["catch_up"].startswith("changes only: 0 points without v2's model tag, 1 re-read")
    assert back["re_embedded"] == 1 and _one_tag(ws, "docs__v3") and _ids(ws, "docs__v3") == _ids(ws, "docs__v2")


# An application writes a row into v1 while v1 is live; the cut-over's catch-up carries it into v2 (v2's ledger
# holds it, v1's never does); the application then deletes it through the alias. Going back to v1 must not
# bring it back: the counts agree (v1's ledger never counted it), so only the catch-up's own deletions see it.


def _carried_then_deleted(ws: Workspace, doc_id: str) -> None:
    """``doc_id`` written by the application into v1 (live), carried into v2 by the cut-over, deleted through the
    alias with v2 live: v1's store still holds it, no ledger of v1 ever did."""
    _app_writes(ws, "docs", 384, {doc_id: "Zebras cross the Mara river."})
    moved = commands.cutover(ws, "docs")
    assert moved["live"] == "docs__v2" and moved["caught_up"] == {"embedded": 1, "deleted": 0}
    ws.store.delete("docs", [doc_id])
    assert doc_id in _ids(ws, "docs__v1") and doc_id not in _ids(ws, "docs__v2")


def test_a_row_the_application_deleted_stays_deleted_on_rollback_changes_only(world):
    ws = world
    tool_ids = _ids(ws, "docs__v1")
    _carried_then_deleted(ws, "app-1")

    # v2's ledger names app-1 since the mark; v2 no longer holds it: the changes pass deletes it from v1.
    back = commands.rollback(ws, "docs")
    assert back["live"] == "docs__v1" and (back["re_embedded"], back["deleted"]) == (0, 1)
    assert back["catch_up"].startswith("changes only: 0 points without v2's model tag, 0 re-read")
    assert _ids(ws, "docs") == _ids(ws, "docs__v2") == tool_ids  # app-1 gone, nothing else lost
    assert _one_tag(ws, "docs__v1")


def test_a_row_the_application_deleted_stays_deleted_through_the_full_pass(world, minilm_path):
    ws = world
    tool_ids = _ids(ws, "docs__v1")
    commands.cutover(ws, "docs")
    _app_writes(ws, "docs", 128, {"app-1": "Zebras cross the Mara river."})  # into v2; no ledger of v2 holds it
    assert commands.rollback(ws, "docs")["re_embedded"] == 1  # carried into v1 (and v1's ledger)
    ws.store.delete("docs", ["app-1"])  # through the alias, v1 live
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                         settings=ModelSettings(truncate_dim=64))
    commands.apply(ws, plan)  # v3, built from v1's payload (without app-1), cut over
    assert "app-1" in _ids(ws, "docs__v2")

    # v2 (built from v1) was never caught up from v3: the full pass alone, no changes pass before it. It must
    # delete app-1 from v2, though no ledger of v2 ever held it and v3's never named it.
    back = commands.cutover(ws, "docs", to="v2")
    assert back["live"] == "docs__v2"
    assert back["catch_up"] == "full catch-up: no earlier catch-up of v2 from v3 to start from"
    assert back["caught_up"] == {"embedded": 0, "deleted": 1}
    assert _ids(ws, "docs") == _ids(ws, "docs__v3") == tool_ids  # app-1 gone, nothing else lost
    assert _one_tag(ws, "docs__v2")
