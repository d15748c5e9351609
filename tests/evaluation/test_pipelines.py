"""Pipelines as evaluation arms: names, reciprocal-rank fusion, and the gate clauses that name them."""

from __future__ import annotations

import numpy as np
import pytest

from reindexer.errors import UsageError
from reindexer.evaluation import Gate, evaluate
from reindexer.evaluation.pipelines import arm, parse_pipelines, questions, rrf
from reindexer.lexical import LexicalIndex, LexicalSpec


def test_pipelines_are_canonical_and_dense_always_runs():
    assert parse_pipelines(None) == ("dense",)
    assert parse_pipelines("hybrid, lexical") == ("dense", "lexical", "hybrid")
    assert parse_pipelines(["LEXICAL"]) == ("dense", "lexical")
    with pytest.raises(UsageError, match="unknown pipeline 'splade'"):
        parse_pipelines("dense,splade")
    assert (arm("v2", "dense"), arm("v2", "hybrid"), arm("v2", "lexical")) == ("v2", "v2:hybrid", "lexical")


def test_questions_are_the_operators():
    assert questions("v1", ["v2"], ("dense",)) == []
    assert questions("v1", ["v2"], ("dense", "lexical", "hybrid")) == [
        ("v1:hybrid", "v2"), ("v1:hybrid", "v2:hybrid"), ("lexical", "v2"), ("lexical", "v2:hybrid"),
        ("lexical", "v1"), ("lexical", "v1:hybrid"),
    ]


def test_rrf_by_the_formula():
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    lexical = [("c", 12.0), ("d", 3.0)]
    fused = dict(rrf([dense, lexical], k=60))
    assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [d for d, _ in rrf([dense, lexical], k=60)] == ["c", "a", "d", "b"]  # b and d tie: id descending
    assert rrf([[("x", 1.0)], []]) == [("x", pytest.approx(1 / 61))]


def test_lexical_index_matches_terms_and_leaves_out_non_matches():
    index = LexicalIndex([("d1", "The printers are jammed"), ("d2", "Router firmware update"), ("d3", "nothing")])
    assert [d for d, _ in index.search(["printer jam"], 10)[0]] == ["d1"]  # stemmed: printers -> printer
    assert index.search(["zzz unknown words", "the and of"], 10) == [[], []]  # no term in the vocabulary
    assert LexicalIndex([]).search(["anything"], 5) == [[]]
    assert LexicalSpec().to_metadata()["stemmer"] == "english"
    with pytest.raises(UsageError, match="unknown stemmer"):
        LexicalSpec(stemmer="klingon")
    with pytest.raises(UsageError, match="k1 >= 0"):
        LexicalSpec(b=2)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("hybrid ndcg@10 >= 0", "hybrid ndcg@10 >= 0"),
        ("Dense VS Lexical recall@10 > -0.01", "dense vs lexical recall@10 > -0.01"),
        ("hybrid ndcg@10 >= 0 and hybrid not significantly worse at p < 0.05",
         "hybrid ndcg@10 >= 0 and hybrid not significantly worse at p < 0.05"),
    ],
)
def test_gate_clauses_name_pipelines(text, shown):
    gate = Gate.parse(text)
    assert str(gate) == shown and str(Gate.parse(str(gate))) == shown


def test_gate_pipelines_are_checked():
    assert Gate.parse("ndcg@10 >= 0").pipelines == ["dense"]
    both = Gate.parse("dense vs lexical ndcg@10 >= 0 and hybrid mrr@10 >= 0")
    assert both.pipelines == ["dense", "lexical", "hybrid"]
    with pytest.raises(UsageError, match="does not use the model"):
        Gate.parse("lexical ndcg@10 >= 0")
    with pytest.raises(UsageError, match="names none"):  # the thresholds named are dense's, not hybrid's
        Gate.parse("ndcg@10 >= 0 and hybrid not significantly worse at p < 0.05")


def _searcher(rankings):
    def search(texts, k):
        return [[(d, 1.0 / (i + 1)) for i, d in enumerate(rankings[t])][:k] for t in texts]

    return search


def test_a_pipeline_clause_reads_the_pipelines_comparison():
    queries = {f"q{i}": f"q{i}" for i in range(6)}
    qrels = {q: {"good": 1} for q in queries}
    good, bad = {q: ["good", "x"] for q in queries}, {q: ["x", "good"] for q in queries}
    result = evaluate(
        {"v1": _searcher(bad), "v2": _searcher(bad), "v1:hybrid": _searcher(good), "v2:hybrid": _searcher(bad)},
        queries, qrels, seed=0, resamples=200,
        arms={"v1:hybrid": ("v1", "hybrid"), "v2:hybrid": ("v2", "hybrid")},
    )
    assert result.version_candidates == ["v2"]
    gate = Gate.parse("ndcg@10 >= 0 and hybrid ndcg@10 >= 0")
    decision = gate.evaluate_all(result)["v2"]  # dense ties; hybrid lost everything v1's hybrid had
    assert not decision.passed and decision.reasons[0].startswith("PASS ndcg@10")
    assert decision.reasons[1].startswith("FAIL hybrid ndcg@10 >= 0: delta -0.3691")
    assert np.isclose(result.compare("v1:hybrid", "v2:hybrid")["ndcg@10"].delta, -0.36907, atol=1e-4)
    with pytest.raises(UsageError, match="needs the hybrid and hybrid pipelines evaluated"):
        gate.evaluate(result.comparisons["v2"])  # a bare comparison is dense against dense only
    with pytest.raises(UsageError, match="the lexical pipeline was not evaluated"):
        Gate.parse("dense vs lexical ndcg@10 >= 0").evaluate_all(result)
