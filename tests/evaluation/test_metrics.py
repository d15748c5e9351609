"""Metrics must equal trec_eval's (through pytrec_eval) on every awkward case."""

from __future__ import annotations

import random

import numpy as np
import pytest

from reindexer.evaluation.metrics import METRICS, compute, evaluate_run, metric_names, parse_metric, rank

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec-eval-terrier (the test extra)")

KS = (1, 3, 5, 10)
# our family -> trec_eval measure; mrr is checked apart (recip_rank is not cut at k)
TREC_MEASURES = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "map": "map_cut", "hit_rate": "success"}


def _trec_order(results):
    """An independent statement of trec_eval's order: score desc, then doc id desc."""
    best = {}
    for doc, score in results:
        best[doc] = max(score, best.get(doc, float("-inf")))
    by_doc_desc = sorted(best.items(), key=lambda item: item[0], reverse=True)
    return sorted(by_doc_desc, key=lambda item: -item[1])  # stable: ties keep doc id descending


def _pytrec(run, qrels, ks=KS):
    cut = ",".join(str(k) for k in ks)
    measures = {f"{m}.{cut}" for m in TREC_MEASURES.values()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
    as_dicts = {qid: dict(_trec_order(r)) for qid, r in run.items() if r}
    return evaluator.evaluate(as_dicts)


def _pytrec_mrr(results, judged, k):
    top = dict(_trec_order(results)[:k])
    if not top:
        return 0.0
    return pytrec_eval.RelevanceEvaluator({"q": judged}, {"recip_rank"}).evaluate({"q": top})["q"]["recip_rank"]


def assert_matches_trec_eval(run, qrels, ks=KS):
    ours = evaluate_run(run, qrels, ks)
    theirs = _pytrec(run, qrels, ks)
    assert ours.query_ids, "fixture has no scorable query"
    for i, qid in enumerate(ours.query_ids):
        for family, measure in TREC_MEASURES.items():
            for k in ks:
                # a query absent from the run: pytrec_eval leaves it out, trec_eval -c gives 0
                expected = theirs.get(qid, {}).get(f"{measure}_{k}", 0.0)
                assert ours.values[f"{family}@{k}"][i] == pytest.approx(expected, abs=1e-6), (qid, family, k)
        for k in ks:
            expected = _pytrec_mrr(run.get(qid, []), qrels[qid], k)
            assert ours.values[f"mrr@{k}"][i] == pytest.approx(expected, abs=1e-6), (qid, "mrr", k)


QRELS = {
    # graded, with a relevant document (d9) that no run retrieves
    "graded": {"d1": 3, "d2": 2, "d3": 1, "d4": 0, "d9": 2},
    # one relevant document
    "single": {"a": 1, "b": 0},
    # grade 1 only, many relevant
    "many": {f"m{i}": 1 for i in range(12)},
    # a negative grade: counts as not relevant and as zero gain
    "negative": {"x": -1, "y": 2, "z": 1},
}

RUN = {
    # every score tied: order is by doc id descending only
    "graded": [("d1", 1.0), ("d4", 1.0), ("d2", 1.0), ("d3", 1.0), ("d7", 1.0)],
    # fewer than k results, partly tied
    "single": [("b", 0.5), ("a", 0.5)],
    # more than k results, ties in the middle, returned in no particular order
    "many": [(f"m{i}", float(i % 3)) for i in range(15)] + [("junk", 1.0), ("zzz", 2.0)],
    "negative": [("x", 3.0), ("n1", 2.0), ("y", 1.0)],
}


def test_fixture_with_ties_grades_short_lists_and_unretrieved_relevant():
    assert_matches_trec_eval(RUN, QRELS)


def test_ties_are_broken_by_doc_id_descending():
    assert [d for d, _ in rank([("a", 1.0), ("c", 1.0), ("b", 1.0)])] == ["c", "b", "a"]
    # string order, not numeric: "d9" > "d10" > "d1"
    assert [d for d, _ in rank([("d1", 0.3), ("d10", 0.3), ("d9", 0.3), ("top", 0.9)])] == ["top", "d9", "d10", "d1"]


def test_order_of_the_searcher_output_is_ignored():
    forward = evaluate_run({"graded": RUN["graded"]}, QRELS, KS)
    backward = evaluate_run({"graded": RUN["graded"][::-1]}, QRELS, KS)
    for name in forward.values:
        assert forward.values[name] == pytest.approx(backward.values[name])


def test_duplicate_documents_keep_their_best_score_and_count_once():
    qrels = {"q": {"a": 1, "b": 1}}
    ours = evaluate_run({"q": [("a", 0.2), ("a", 0.9), ("x", 0.5)]}, qrels, (3,))
    assert ours.values["precision@3"][0] == pytest.approx(1 / 3)
    assert ours.values["mrr@3"][0] == 1.0


def test_query_missing_from_run_scores_zero_and_is_counted():
    metrics = evaluate_run({}, {"q": {"a": 1}}, (1, 5))
    assert metrics.query_ids == ["q"]
    assert all(values[0] == 0.0 for values in metrics.values.values())


def test_queries_without_relevant_documents_are_skipped():
    metrics = evaluate_run({"q": [("a", 1.0)]}, {"q": {"a": 1}, "none": {"a": 0}}, (1,))
    assert metrics.query_ids == ["q"]


def test_hand_computed_values():
    # relevant at ranks 2 (grade 2) and 4 (grade 1); 3 relevant judged in total
    qrels = {"q": {"r1": 2, "r2": 1, "r3": 1, "n": 0}}
    run = {"q": [("n", 4.0), ("r1", 3.0), ("x", 2.0), ("r2", 1.0)]}
    v = evaluate_run(run, qrels, (4,)).for_query("q")
    assert v["precision@4"] == pytest.approx(0.5)
    assert v["recall@4"] == pytest.approx(2 / 3)
    assert v["mrr@4"] == pytest.approx(0.5)
    assert v["hit_rate@4"] == 1.0
    assert v["map@4"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 2 / np.log2(3) + 1 / np.log2(5)
    idcg = 2 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(4)
    assert v["ndcg@4"] == pytest.approx(dcg / idcg)


@pytest.mark.parametrize("seed", range(6))
def test_random_runs_match_trec_eval(seed):
    """Property test: seeded random runs with heavy ties, graded labels, short and long lists."""
    rnd = random.Random(seed)
    docs = [f"d{i}" for i in range(30)]
    qrels, run = {}, {}
    for q in range(60):
        qid = f"q{q}"
        judged = rnd.sample(docs, rnd.randint(1, 10))
        qrels[qid] = {d: rnd.choice([0, 0, 1, 2, 3]) for d in judged}
        qrels[qid][rnd.choice(judged)] = rnd.choice([1, 2, 3])  # at least one relevant
        if rnd.random() < 0.1:
            continue  # a query the searcher never answered
        scores = [0.1, 0.5, 0.5, 1.0] if rnd.random() < 0.5 else None
        run[qid] = [
            (rnd.choice(docs), rnd.choice(scores) if scores else rnd.random()) for _ in range(rnd.randint(0, 14))
        ]
    ks = tuple(sorted(rnd.sample(range(1, 16), 4)))
    assert_matches_trec_eval(run, qrels, ks)


def test_compute_is_consistent_across_cutoffs():
    rnd = np.random.default_rng(0)
    ranked = [[f"d{j}" for j in rnd.permutation(20)[:15]] for _ in range(40)]
    qrels = [{f"d{j}": int(rnd.integers(0, 4)) for j in range(20)} for _ in range(40)]
    values = compute(ranked, qrels, (1, 5, 10, 15))
    for family in ("recall", "hit_rate", "map"):  # non-decreasing in k
        stacked = np.stack([values[f"{family}@{k}"] for k in (1, 5, 10, 15)])
        assert (np.diff(stacked, axis=0) >= -1e-12).all()
    for v in values.values():
        assert ((v >= 0) & (v <= 1 + 1e-12)).all()


def test_metric_names_and_aliases():
    assert parse_metric("nDCG@10") == ("ndcg", 10)
    assert parse_metric("P@5") == ("precision", 5)
    assert parse_metric("success@3") == ("hit_rate", 3)
    assert parse_metric("MRR@10") == ("mrr", 10)
    for bad in ("ndcg", "ndcg@0", "bleu@10", "ndcg@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)
    assert metric_names((10, 1), ("ndcg", "recall")) == ["ndcg@1", "ndcg@10", "recall@1", "recall@10"]
    assert len(metric_names((1,))) == len(METRICS)


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN score"):
        rank([("a", float("nan"))])
