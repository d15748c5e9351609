"""Shadow traffic: sampled live queries mirrored to the newest built shadow, recorded, summarised, gated."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from reindexer import Searcher, commands
from reindexer.cli import cli
from reindexer.errors import GateRefusedError
from tests.plugins.versions import live_is


def _queries(demo_corpus, n):
    return list(demo_corpus.queries.values())[:n]


def _records(ws, shadow="docs__v2"):
    return ws.state.traffic(ws.store_url, "docs", shadow=shadow)


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_mirrored_queries_are_recorded_and_never_change_the_live_answer(two_versions, demo_corpus):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    before = len(_records(ws))
    queries = _queries(demo_corpus, 12)
    with Searcher("docs", workspace=ws) as plain:
        expected = [[h.doc_id for h in plain.search(q, k=5)] for q in queries]
    with Searcher("docs", workspace=ws, shadow_sample=1.0) as searcher:
        searcher.encoder_for(searcher._spec("docs__v2"))  # the shadow's model, as the preload would have it
        got = [[h.doc_id for h in searcher.search(q, k=5)] for q in queries]
        searcher.mirror.flush()
        counts = dict(searcher.mirror.counts)
    assert got == expected
    assert counts["mirrored"] == 12 and counts["dropped"] == 0 and counts["failed"] == 0
    records = _records(ws)[before:]
    assert len(records) == 12
    for r, live_ids in zip(records, expected, strict=False):
        assert (r.live, r.shadow, r.k) == ("docs__v1", "docs__v2", 5)
        assert r.live_ids == live_ids and len(r.shadow_ids) == 5
        assert 0.0 <= r.overlap <= 1.0 and 0.0 <= r.rbo <= 1.0 and r.live_ms > 0 and r.shadow_ms > 0
        assert r.query_text is None and len(r.query_hash) == 64  # text only when the operator asks
    # A 128-dimension truncation ranks differently from the full model, but not unrecognisably.
    assert 0.2 < sum(r.overlap for r in records) / len(records) < 1.0


def test_query_text_is_recorded_only_when_enabled(two_versions, demo_corpus):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    with Searcher("docs", workspace=ws, shadow_sample=1.0, record_query_text=True) as searcher:
        searcher.encoder_for(searcher._spec("docs__v2"))
        searcher.search("printer offline", k=3)
        searcher.mirror.flush()
    assert _records(ws)[-1].query_text == "printer offline"


def test_a_full_queue_drops_and_counts_without_slowing_the_live_answer(two_versions, demo_corpus):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    stuck = threading.Event()
    with Searcher("docs", workspace=ws, shadow_sample=1.0, shadow_queue=1) as searcher:
        # a shadow that does not keep up at all; released below (the bound only outlasts slow searches)
        searcher.mirror._mirror = lambda item: stuck.wait(600)
        for q in _queries(demo_corpus, 10):
            assert searcher.search(q, k=3)  # answered while the mirror is stuck: live never waits on it
        counts = dict(searcher.mirror.counts)
        stuck.set()
    assert counts["offered"] == 10 and counts["dropped"] >= 8


def test_traffic_report_gate_and_apply_gated_on_traffic(two_versions, demo_corpus, tmp_path):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    with Searcher("docs", workspace=ws, shadow_sample=1.0) as searcher:
        searcher.encoder_for(searcher._spec("docs__v2"))
        for q in _queries(demo_corpus, 15):
            searcher.search(q, k=10)
        searcher.mirror.flush()

    summary, _, decision = commands.traffic_report(ws, "docs", gate="traffic queries >= 10 and traffic overlap@5 >= 0")
    assert summary.shadow == "docs__v2" and summary.queries >= 10 and decision.passed
    assert 0 <= summary.overlap_at(3) <= 1 and summary.latency_ratio(95) > 0
    _, _, refused = commands.traffic_report(ws, "docs", gate="traffic rbo >= 0.999")
    assert not refused.passed and any(r.startswith("FAIL traffic rbo") for r in refused.reasons)

    # The CLI reads only the state for this: it runs beside the process that holds the embedded store.
    args = ["--store", ws.config.store_url, "--state", ws.config.state_url]
    res = CliRunner().invoke(cli, [*args, "--json", "eval", "docs", "--from-traffic", "--since", "1h"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["shadow"] == "docs__v2" and data["queries"] == summary.queries
    res = CliRunner().invoke(cli, [*args, "eval", "docs", "--from-traffic", "--gate", "traffic p95 latency <= 0.0001x"])
    assert res.exit_code == 6 and "refused" in res.output

    plan = commands.latest_unfinished_plan(ws, "docs")  # v2's plan: built, verified, not yet live
    with pytest.raises(GateRefusedError):
        commands.apply(ws, plan, gate="traffic rbo >= 0.999")
    assert ws.store.resolve("docs") == "docs__v1"
    result = commands.apply(ws, plan, gate="traffic queries >= 10 and traffic overlap@10 >= 0.2")
    assert result.cut_over and result.gate["passed"] and result.traffic["queries"] >= 10
    live_is(ws, "docs", "docs__v1")


def test_no_shadow_no_mirroring(two_versions, demo_corpus):
    ws, _ = two_versions
    # Last in this module: v2 is live or retired from here on. With v2 live, v1 is retired, not a built shadow.
    live_is(ws, "docs", "docs__v2")
    with Searcher("docs", workspace=ws, shadow_sample=1.0) as searcher:
        searcher.search("printer", k=3)
        searcher.mirror.flush()
        assert searcher.mirror.counts["no_shadow"] == 1 and searcher.mirror.counts["mirrored"] == 0
    live_is(ws, "docs", "docs__v1")
