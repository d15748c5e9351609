from __future__ import annotations

import pytest

from reindexer.errors import EXIT_USAGE, UsageError
from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_clauses import Significance, Threshold
from reindexer.evaluation.significance import PairedTest


def result(delta: float, p: float, base: float = 0.6) -> PairedTest:
    return PairedTest(
        n=100,
        baseline_mean=base,
        candidate_mean=base + delta,
        delta=delta,
        ci_low=delta - 0.01,
        ci_high=delta + 0.01,
        p_value=p,
        wins=50,
        losses=30,
        ties=20,
        confidence=0.95,
        p_method="monte-carlo",
    )


def test_parse_examples_from_the_design():
    gate = Gate.parse("ndcg@10 >= -0.005 and not significantly worse at p < 0.05")
    assert gate.clauses == (
        Threshold("ndcg@10", ">=", -0.005),
        Significance(better=False, alpha=0.05, inclusive=False),
    )
    assert gate.metrics == ["ndcg@10"]
    assert Gate.parse("recall@10 > 0").clauses == (Threshold("recall@10", ">", 0.0),)
    assert Gate.parse("mrr@10 >= 0.01 and map@10 >= 0").metrics == ["mrr@10", "map@10"]


def test_parse_is_case_and_space_insensitive_and_canonicalises_names():
    gate = Gate.parse("  P@5>=0  AND Recall@5 Significantly Better at p<=.01 ")
    assert gate.clauses == (
        Threshold("precision@5", ">=", 0.0),
        Significance(better=True, alpha=0.01, inclusive=True, metric="recall@5"),
    )
    assert gate.ks == [5]
    assert str(gate) == "precision@5 >= 0 and recall@5 significantly better at p <= 0.01"


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("ndcg@10 >= x", 12, "expected a number"),
        ("ndcg@10 => 0", 9, "unexpected character '='"),
        ("ndcg@10 >= 0 or recall@10 > 0", 14, "expected 'and', found 'or'"),
        ("ndcg@10 >= 0 and", 17, "found the end of the gate"),
        ("ndcg@10 >= 0 and not significantly better at p < 0.05", 36, "expected 'worse'"),
        ("bleu@4 > 0", 1, "unknown metric 'bleu@4'"),
        ("ndcg@10 >= 0 and significantly better at p < 1.5", 46, "significance level must be in (0, 1)"),
        ("ndcg@10 >= 0 and significantly better at p <= 1", 47, "significance level must be in (0, 1)"),
        ("ndcg@10 not significantly worse at p < 0", 40, "significance level must be in (0, 1)"),
        ("ndcg@10 >= 0 and not significantly worse at q < 0.05", 45, "expected 'p'"),
        ("ndcg@10 >= 0 and not significantly worse at p > 0.05", 47, "'<' or '<=' after 'p'"),
        ("", 1, "expected a clause"),
    ],
)
def test_parse_errors_give_position_and_grammar(text, column, fragment):
    with pytest.raises(UsageError) as info:
        Gate.parse(text)
    error = info.value
    assert f"at column {column}:" in error.message
    assert fragment in error.message
    assert "gate         := clause" in error.hint
    assert error.exit_code == EXIT_USAGE
    # the caret sits under the offending column
    pointer_line = error.message.splitlines()[-1]
    assert pointer_line.index("^") - 2 == column - 1


def test_significance_clause_without_any_metric_is_rejected():
    with pytest.raises(UsageError, match="names none"):
        Gate.parse("not significantly worse at p < 0.05")
    assert Gate.parse("ndcg@10 not significantly worse at p < 0.05").metrics == ["ndcg@10"]


def test_threshold_pass_and_fail_with_readable_reasons():
    gate = Gate.parse("ndcg@10 >= -0.005")
    ok = gate.evaluate({"ndcg@10": result(-0.003, 0.4)})
    assert ok.passed
    assert ok.reasons == ["PASS ndcg@10 >= -0.005: delta -0.0030 meets >= -0.005 (baseline 0.6000 -> candidate 0.5970)"]
    bad = gate.evaluate({"ndcg@10": result(-0.02, 0.4)})
    assert not bad.passed
    assert bad.reasons[0].startswith("FAIL ndcg@10 >= -0.005: delta -0.0200 misses")


def test_not_significantly_worse():
    gate = Gate.parse("ndcg@10 >= -0.01 and recall@10 >= -0.01 and not significantly worse at p < 0.05")
    # small drop, significant: the threshold passes but the significance clause fails
    decision = gate.evaluate({"ndcg@10": result(-0.004, 0.01), "recall@10": result(0.02, 0.001)})
    assert not decision.passed
    assert [r[:4] for r in decision.reasons] == ["PASS", "PASS", "FAIL"]
    # two tests, Holm: 0.001 * 2 = 0.002, then max(0.002, 0.01 * 1) = 0.01
    worse = "ndcg@10 delta -0.0040, p = 0.01, Holm-adjusted 0.01 over 2 tests (significantly worse)"
    assert worse in decision.reasons[2]
    assert (
        "recall@10 delta +0.0200, p = 0.001, Holm-adjusted 0.002 over 2 tests (not significantly worse)"
        in decision.reasons[2]
    )
    # the same drop, not significant: passes
    assert gate.evaluate({"ndcg@10": result(-0.004, 0.3), "recall@10": result(0.02, 0.001)}).passed
    # significant improvements are never "worse"
    assert gate.evaluate({"ndcg@10": result(0.05, 0.0001), "recall@10": result(0.02, 0.001)}).passed


def test_significantly_better_needs_every_named_metric():
    gate = Gate.parse("ndcg@10 >= 0 and recall@10 >= 0 and significantly better at p < 0.05")
    assert gate.evaluate({"ndcg@10": result(0.05, 0.001), "recall@10": result(0.03, 0.01)}).passed
    decision = gate.evaluate({"ndcg@10": result(0.05, 0.001), "recall@10": result(0.03, 0.2)})
    assert not decision.passed
    assert (
        "recall@10 delta +0.0300, p = 0.2, Holm-adjusted 0.2 over 2 tests (not significantly better)"
        in decision.reasons[-1]
    )


def test_inclusive_significance_level():
    strict = Gate.parse("ndcg@10 significantly better at p < 0.05")
    inclusive = Gate.parse("ndcg@10 significantly better at p <= 0.05")
    tests = {"ndcg@10": result(0.01, 0.05)}
    assert not strict.evaluate(tests).passed
    assert inclusive.evaluate(tests).passed


def test_metric_missing_from_the_evaluation_is_a_usage_error():
    with pytest.raises(UsageError, match="the gate needs ndcg@20"):
        Gate.parse("ndcg@20 >= 0").evaluate({"ndcg@10": result(0.0, 1.0)})


def test_identical_systems_pass_a_non_negative_gate():
    decision = Gate.parse("ndcg@10 >= 0 and not significantly worse at p < 0.05").evaluate(
        {"ndcg@10": result(0.0, 1.0)}
    )
    assert decision.passed
    assert decision.as_dict()["passed"] is True
