"""One version alone (the baseline before fine-tuning), and search depth apart from the cut-offs."""

from __future__ import annotations

import json

import pytest

from reindexer.errors import UsageError
from reindexer.evaluation import report
from reindexer.evaluation.runner import evaluate

QUERIES = {f"q{i}": f"query {i}" for i in range(20)}
QRELS = {q: {f"{q}-a": 2, f"{q}-b": 1} for q in QUERIES}


def searcher(texts, k):
    """q0..q9 find both relevant documents at the top; the others find one at rank 12, the other never."""
    calls.append(k)
    out = []
    for text in texts:
        q = "q" + text.split()[1]
        if int(q[1:]) < 10:
            docs = [f"{q}-a", f"{q}-b"] + [f"{q}-n{j}" for j in range(k - 2)]
        else:
            docs = [f"{q}-n{j}" for j in range(11)] + [f"{q}-a"] + [f"{q}-n{j}" for j in range(11, k)]
        out.append([(d, 1.0 / (r + 1)) for r, d in enumerate(docs[:k])])
    return out


calls: list[int] = []


def test_one_version_gives_means_intervals_per_query_and_worst_queries():
    r = evaluate({"v1": searcher}, QUERIES, QRELS, k=10, ks=[1, 10, 100], resamples=500)
    assert r.versions == ["v1"] and r.candidates == [] and r.comparisons == {}
    assert r.headline_metric == "ndcg@10" and r.depth == 100 and r.ks == [1, 10, 100]
    assert r.means["v1"]["recall@10"] == pytest.approx(0.5)
    assert r.means["v1"]["recall@100"] == pytest.approx(0.75)
    lo, hi = r.intervals["v1"]["ndcg@10"]
    assert lo <= r.means["v1"]["ndcg@10"] <= hi and lo < hi
    worst = r.worst_queries["v1"]
    assert [w.query_id for w in worst] == [f"q{i}" for i in range(10, 20)]
    assert worst[0].missed_relevant == ["q10-a", "q10-b"]
    assert worst[0].relevant_ranks == {"q10-a": 12, "q10-b": None}

    data = json.loads(report.to_json(r))
    assert data["headline"] == "ndcg@10" and data["depth"] == 100
    assert data["intervals"]["v1"]["ndcg@10"]["low"] == pytest.approx(lo)
    assert len(data["per_query"]["values"]["v1"]["ndcg@10"]) == 20  # on by default for one version
    assert data["worst_queries"]["v1"][0]["relevant_ranks"] == {"q10-a": 12, "q10-b": None}
    md = report.to_markdown(r)
    assert "## Metrics of v1" in md and "95% CI" in md and "q10-a (missed, rank 12)" in md
    assert "q10-b (missed, not in the top 100)" in md and "headline ndcg@10" in md
    assert "Worst queries" in report.to_html(r)


def test_depth_is_apart_from_the_cut_offs():
    calls.clear()
    r = evaluate({"v1": searcher}, QUERIES, QRELS, k=10, ks=[1, 10], depth=50, resamples=100)
    assert set(calls) == {50} and r.depth == 50 and r.ks == [1, 10] and r.headline_metric == "ndcg@10"
    with pytest.raises(UsageError, match="below the largest cut-off 100"):
        evaluate({"v1": searcher}, QUERIES, QRELS, k=10, ks=[100], depth=20)
    # an A/B keeps its headline at k, not at the deepest cut-off
    ab = evaluate({"v1": searcher, "v2": searcher}, QUERIES, QRELS, k=10, ks=[10, 100], resamples=100)
    assert ab.headline_metric == "ndcg@10" and ab.comparisons["v2"].tests["recall@100"].delta == 0
    assert report.to_dict(ab)["per_query"] is None


def test_progress_lines_at_a_steady_interval():
    from reindexer.progress import LineProgress

    now = [0.0]
    lines: list[str] = []
    p = LineProgress("embedding docs__v2", 1000, interval=10, clock=lambda: now[0], write=lines.append)
    for _ in range(10):
        now[0] += 4
        p.advance(100)
    p.finish()
    assert len(lines) == 4  # at 12 s, 24 s, 36 s, and the end
    assert lines[0] == "reindex: embedding docs__v2: 300/1000 documents (30%), 25.0 documents/s, ETA 28s"
    assert lines[-1] == "reindex: embedding docs__v2: done, 1000 documents in 40s (25.0 documents/s)"
