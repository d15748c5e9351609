from __future__ import annotations

import random

import numpy as np
import pytest

from reindexer.errors import ReindexError, UsageError
from reindexer.evaluation.metrics import evaluate_run
from reindexer.evaluation.overlap import overlap_at_k, rbo_ext
from reindexer.evaluation.runner import compare_unlabelled, evaluate

QUERIES = {f"q{i}": f"text {i}" for i in range(40)}
QRELS = {qid: {f"{qid}-rel": 2, f"{qid}-also": 1, f"{qid}-no": 0} for qid in QUERIES}


def table_searcher(table):
    """A searcher backed by {query text: ranked doc ids}; records its calls."""

    def search(texts, k):
        search.calls.append((len(texts), k))
        return [[(doc, 1.0 - r / 100) for r, doc in enumerate(table.get(t, [])[:k])] for t in texts]

    search.calls = []
    return search


def rankings(good: set[str]):
    """Relevant docs first for queries in ``good``, buried below k for the others."""
    out = {}
    for qid, text in QUERIES.items():
        noise = [f"{qid}-n{j}" for j in range(12)]
        rel = [f"{qid}-rel", f"{qid}-also"]
        out[text] = rel + noise if qid in good else noise[:10] + rel
    return out


def test_identical_versions_have_no_difference():
    table = rankings(set(list(QUERIES)[:20]))
    result = evaluate({"old": table_searcher(table), "new": table_searcher(table)}, QUERIES, QRELS, resamples=500)
    comparison = result.comparisons["new"]
    for test in comparison.tests.values():
        assert test.delta == 0.0
        assert test.p_value == 1.0
    assert comparison.worst_regressions == []
    assert result.means["old"] == result.means["new"]


def test_candidate_better_on_most_queries_and_worse_on_one():
    ids = list(QUERIES)
    base = table_searcher(rankings(set(ids[:10])))
    cand = table_searcher(rankings(set(ids[1:35])))  # loses q0, wins 25 others
    result = evaluate({"base": base, "cand": cand}, QUERIES, QRELS, k=10, resamples=2000)
    assert result.versions == ["base", "cand"]
    assert result.ks == [1, 3, 5, 10]
    t = result.comparisons["cand"].tests["ndcg@10"]
    assert t.delta > 0 and t.ci_low > 0 and t.p_value < 0.001
    assert (t.wins, t.losses, t.ties) == (25, 1, 14)
    (worst,) = result.comparisons["cand"].worst_regressions
    assert worst.query_id == "q0" and worst.query_text == "text 0"
    assert worst.metric == "ndcg@10" and worst.delta < 0
    assert worst.missed_relevant == ["q0-rel", "q0-also"]
    # searchers were asked for max(ks) results, in batches
    assert base.calls == [(40, 10)]


def test_means_equal_the_metrics_module():
    table = rankings({"q1", "q2", "q3"})
    searcher = table_searcher(table)
    result = evaluate({"only": searcher}, QUERIES, QRELS, k=5)
    run = {qid: [(d, 1.0 - r / 100) for r, d in enumerate(table[text][:5])] for qid, text in QUERIES.items()}
    expected = evaluate_run(run, QRELS, (1, 3, 5)).mean()
    assert result.means["only"] == pytest.approx(expected)
    assert result.comparisons == {}


def test_baseline_choice_and_order():
    table = rankings(set())
    searchers = {"a": table_searcher(table), "b": table_searcher(table), "c": table_searcher(table)}
    result = evaluate(searchers, QUERIES, QRELS, baseline="b", resamples=100)
    assert result.versions == ["b", "a", "c"]
    assert set(result.comparisons) == {"a", "c"}
    with pytest.raises(UsageError, match="baseline 'z' is not among the versions"):
        evaluate(searchers, QUERIES, QRELS, baseline="z")


def test_cutoffs_and_batches():
    searcher = table_searcher(rankings(set(QUERIES)))
    result = evaluate({"a": searcher}, QUERIES, QRELS, k=10, ks=(20, 1), batch_size=16)
    assert result.ks == [1, 10, 20]
    assert "ndcg@20" in result.metrics
    assert searcher.calls == [(16, 20), (16, 20), (8, 20)]


def test_skipped_queries_are_counted():
    queries = dict(QUERIES, unjudged="nothing")
    qrels = dict(QRELS, ghost={"x": 1})
    result = evaluate({"a": table_searcher({})}, queries, qrels, resamples=100)
    assert result.skipped.queries_without_relevant == 1
    assert result.skipped.qrels_unknown_queries == 1
    assert len(result.query_ids) == 40


def test_misbehaving_searcher():
    with pytest.raises(ReindexError, match="returned 0 result lists for 40 queries"):
        evaluate({"a": lambda texts, k: []}, QUERIES, QRELS)


# --- label-free ---------------------------------------------------------------


def _rbo_reference(s, t, p):
    """Eq. 32 of Webber et al. (2010) written out with sets, depth by depth."""
    if len(s) > len(t):
        s, t = t, s
    sl, ll = len(s), len(t)
    x = {d: len(set(s[:d]) & set(t[:d])) for d in range(1, ll + 1)}
    total = sum(x[d] / d * p**d for d in range(1, ll + 1))
    total += sum(x[sl] * (d - sl) / (sl * d) * p**d for d in range(sl + 1, ll + 1))
    return (1 - p) / p * total + ((x[ll] - x[sl]) / ll + x[sl] / sl) * p**ll


def test_rbo_known_values():
    assert rbo_ext(list("abcdefg"), list("abcdefg")) == pytest.approx(1.0)
    assert rbo_ext(list("abc"), list("xyz")) == 0.0
    # a list that is a prefix of the other: the extrapolation agrees completely
    assert rbo_ext(list("abcde"), list("abcdefg")) == pytest.approx(1.0)
    # published example (ragrawal/measures, rankmeasures): 0.828
    assert rbo_ext([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], 0.9) == pytest.approx(0.828, abs=5e-4)
    assert rbo_ext([], []) == 1.0 and rbo_ext([], ["a"]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_rbo_matches_the_formula_on_random_lists(seed):
    rnd = random.Random(seed)
    universe = [f"d{i}" for i in range(25)]
    for _ in range(30):
        a = rnd.sample(universe, rnd.randint(1, 15))
        b = rnd.sample(universe, rnd.randint(1, 15))
        p = rnd.choice([0.5, 0.8, 0.9, 0.98])
        value = rbo_ext(a, b, p)
        assert value == pytest.approx(_rbo_reference(a, b, p), abs=1e-12)
        assert value == pytest.approx(rbo_ext(b, a, p), abs=1e-12)  # symmetric
        assert -1e-12 <= value <= 1 + 1e-12


def test_overlap_at_k():
    assert overlap_at_k(list("abcd"), list("dcba"), 4) == 1.0
    assert overlap_at_k(list("abcdef"), list("abxyzz"), 4) == 0.5
    assert overlap_at_k(list("ab"), list("ab"), 10) == 1.0  # a tiny index: not penalised
    assert overlap_at_k([], [], 10) == 1.0


def test_compare_unlabelled():
    base = {"a": ["1", "2", "3"], "b": ["1", "2", "3"], "c": ["1", "2", "3"]}
    cand = {"a": ["1", "2", "3"], "b": ["2", "1", "3"], "c": ["7", "8", "9"]}
    result = compare_unlabelled(
        {"old": table_searcher(base), "new": table_searcher(cand)}, {"qa": "a", "qb": "b", "qc": "c"}, k=3
    )
    c = result.comparisons["new"]
    assert c.overlap.tolist() == [1.0, 1.0, 0.0]
    assert c.rbo[0] == pytest.approx(1.0) and 0 < c.rbo[1] < 1 and c.rbo[2] == 0.0
    assert c.unchanged == 1
    assert [q.query_id for q in c.most_changed] == ["qc", "qb"]
    assert c.most_changed[0].dropped == ["1", "2", "3"] and c.most_changed[0].added == ["7", "8", "9"]
    assert c.mean_overlap == pytest.approx(2 / 3)


def test_compare_unlabelled_accepts_a_plain_list():
    result = compare_unlabelled({"x": table_searcher({}), "y": table_searcher({})}, ["a", "b"], k=5)
    assert result.query_ids == ["0", "1"]
    assert np.array_equal(result.comparisons["y"].rbo, [1.0, 1.0])
    with pytest.raises(UsageError):
        compare_unlabelled({"x": table_searcher({})}, [], k=5)
