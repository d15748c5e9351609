"""Gate clauses over shadow traffic, and the traffic summary they read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reindexer.errors import UsageError
from reindexer.evaluation import Gate
from reindexer.state import TrafficRecord
from reindexer.traffic import parse_since, summarize


def _record(live_ids, shadow_ids, live_ms=10.0, shadow_ms=12.0, text=None):
    return TrafficRecord(store_url="s", collection="docs", live="docs__v1", shadow="docs__v2", live_model="a@1",
                         shadow_model="b@2", k=len(live_ids), query_hash="f" * 64, query_text=text,
                         live_ids=live_ids, shadow_ids=shadow_ids, overlap=0, rbo=0, live_ms=live_ms,
                         shadow_ms=shadow_ms, at=datetime.now(timezone.utc))


def test_parse_and_print_traffic_clauses():
    text = "traffic overlap@10 >= 0.6 and traffic p95 latency <= 1.2x and traffic rbo > 0.5 and traffic queries >= 100"
    gate = Gate.parse(text)
    assert str(gate) == text
    assert gate.needs_traffic and not gate.needs_judgements and gate.ks == []
    mixed = Gate.parse("ndcg@10 >= 0 and traffic overlap@10 >= 0.5")
    assert mixed.needs_judgements and mixed.needs_traffic and mixed.ks == [10]


@pytest.mark.parametrize("bad", ["traffic p95 latency <= 1.2", "traffic foo >= 1", "traffic overlap@10 0.5",
                                 "traffic p0 latency <= 2x", "traffic"])
def test_bad_traffic_clauses_say_what_was_expected(bad):
    with pytest.raises(UsageError, match="invalid gate"):
        Gate.parse(bad)


def test_summary_measures_and_gate_decisions():
    records = [
        _record(["a", "b", "c", "d"], ["a", "b", "c", "d"], 10, 11),
        _record(["a", "b", "c", "d"], ["a", "b", "x", "y"], 10, 12),
        _record(["a", "b", "c", "d"], ["w", "x", "y", "z"], 20, 30, text="what changed most"),
    ]
    s = summarize("docs", records)
    assert s.queries == 3 and s.k == 4
    assert s.overlap_at(4) == pytest.approx((1 + 0.5 + 0) / 3)
    assert s.overlap_at(2) == pytest.approx((1 + 1 + 0) / 3)
    assert s.most_changed[0].query == "what changed most" and s.most_changed[0].overlap == 0
    assert s.latency_ratio(50) == pytest.approx(12 / 10)
    assert sum(s.histogram) == 3
    with pytest.raises(UsageError):
        s.overlap_at(5)
    # Three queries cannot show, at the always-valid test's 0.05, that a mean of 0.667 is above 0.6;
    # three agreeing ones show it is above 0.1.
    assert not Gate.parse("traffic overlap@2 >= 0.6 and traffic queries >= 3").evaluate(traffic=s).passed
    agreeing = summarize("docs", [_record(list("abcd"), list("abcd"), 10, 11) for _ in range(3)])
    assert Gate.parse("traffic overlap@2 >= 0.1 and traffic queries >= 3").evaluate(traffic=agreeing).passed
    refused = Gate.parse("traffic overlap@4 >= 0.6").evaluate(traffic=s)
    assert not refused.passed and "0.5000 (overlap@4), always-valid p = " in refused.reasons[0]
    assert "over 3 mirrored queries" in refused.reasons[0]
    empty = Gate.parse("traffic overlap@4 >= 0").evaluate(traffic=summarize("docs", []))
    assert not empty.passed and "no mirrored queries" in empty.reasons[0]


def test_queries_asking_for_fewer_results_do_not_count_at_a_deeper_cut_off():
    s = summarize("docs", [_record(["a", "b"], ["a", "c"]), _record(list("abcd"), list("abcd")),
                           _record(list("abcd"), list("abxy"))])
    assert s.k == 4 and s.overlap.n == 2  # the headline k is the one most queries asked for
    assert s.overlap_at(4) == pytest.approx(0.75) and s.overlap_at(2) == pytest.approx((0.5 + 1 + 1) / 3)


def test_summary_is_of_the_newest_shadow_only():
    old = _record(["a"], ["b"])
    old.shadow = "docs__v3"
    s = summarize("docs", [old, _record(["a"], ["a"])])
    assert s.shadow == "docs__v2" and s.queries == 1


def test_since_takes_durations_and_times():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-12-01T09:00", now) == datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    assert parse_since(None) is None
    with pytest.raises(UsageError, match="duration"):
        parse_since("yesterday")
