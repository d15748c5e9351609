"""Issue 25: the gate's significance tests are one family, corrected for multiplicity.

Every test the significance clauses read, over metrics, pipelines and candidates, is
adjusted together (Holm by default, Benjamini-Hochberg or none), then each clause is
judged by the adjusted p-value. The corrections are checked against statsmodels'
``multipletests`` on fixed p-values, and a seeded A/A simulation checks the family-wise
false alarm rate of a "not significantly worse" gate.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from statsmodels.stats.multitest import multipletests

from reindexer.cli import cli
from reindexer.commands import EvalRequest, apply_from
from reindexer.errors import EXIT_USAGE, UsageError
from reindexer.evaluation import report
from reindexer.evaluation.gate import CORRECTIONS, Gate, GateInput
from reindexer.evaluation.runner import evaluate
from reindexer.evaluation.significance import CORRECTION_METHODS, PairedTest, adjusted_p_values, paired_tests

METRICS = ["ndcg@10", "recall@10", "mrr@10", "map@10"]
THRESHOLDS = " and ".join(f"{m} >= -1" for m in METRICS)  # always hold: only significance decides
NOT_WORSE = f"{THRESHOLDS} and not significantly worse at p < 0.05"
BETTER = f"{THRESHOLDS} and significantly better at p < 0.05"
STATSMODELS = {"holm": "holm", "bh": "fdr_bh"}
P_SETS = [
    [0.001, 0.008, 0.012, 0.02, 0.03, 0.04, 0.2, 0.6, 0.011, 0.049, 0.0125, 0.9],
    [0.04, 0.041, 0.042, 0.043, 0.2, 0.3, 0.01, 0.0125, 0.5, 0.6, 0.7, 0.02],
    list(np.round(np.random.default_rng(7).uniform(0, 0.08, 12), 5)),
]


def paired(delta: float, p: float) -> PairedTest:
    return PairedTest(n=40, baseline_mean=0.5, candidate_mean=0.5 + delta, delta=delta, ci_low=delta - 0.01,
                      ci_high=delta + 0.01, p_value=p, wins=10, losses=20, ties=10, confidence=0.95,
                      p_method="monte-carlo")


class Result:
    """What ``Gate.evaluate_all`` reads of a ``runner.EvaluationResult``: comparisons by candidate and pipelines."""

    def __init__(self, comparisons, pipelines=None):
        self.comparisons = comparisons
        self.version_candidates = list(comparisons)
        self.by_pipelines = pipelines or {}

    def comparison_for(self, name, candidate_pipeline, baseline_pipeline):
        if (candidate_pipeline, baseline_pipeline) == ("dense", "dense"):
            return self.comparisons[name]
        return self.by_pipelines[(name, candidate_pipeline, baseline_pipeline)]


def three_candidates(p_values, delta: float) -> Result:
    """Candidates v2, v3, v4, each with the four metrics: 12 tests, p-values in that order."""
    it = iter(p_values)
    return Result({v: {m: paired(delta, next(it)) for m in METRICS} for v in ("v2", "v3", "v4")})


@pytest.mark.parametrize("p_values", P_SETS)
@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_the_family_of_every_candidate_is_adjusted_as_statsmodels_does(p_values, correction):
    expected = multipletests(p_values, alpha=0.05, method=STATSMODELS[correction])[1]
    decisions = Gate.parse(NOT_WORSE, correction=correction).evaluate_all(three_candidates(p_values, -0.01))
    verdicts = [v for d in decisions.values() for v in d.significance]
    assert [v.p_value for v in verdicts] == p_values
    assert [v.p_adjusted for v in verdicts] == pytest.approx(list(expected), rel=1e-12, abs=0)
    for name, d in decisions.items():
        assert d.correction == correction and d.family_size == 12
        # a drop is "significantly worse" exactly where the adjusted p is below alpha
        assert [v.holds for v in d.significance] == [not p < 0.05 for p in (v.p_adjusted for v in d.significance)]
        assert d.passed == all(v.holds for v in d.significance), name
    # the same p-values, uncorrected, are today's rule: each test at its own level
    plain = Gate.parse(NOT_WORSE, correction="none").evaluate_all(three_candidates(p_values, -0.01))
    for d in plain.values():
        assert [v.holds for v in d.significance] == [not v.p_value < 0.05 for v in d.significance]
        assert all(v.p_adjusted == v.p_value for v in d.significance)


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_the_verdict_flips_exactly_where_the_adjusted_p_crosses_alpha(correction):
    gate = Gate.parse("ndcg@10 >= -1 and recall@10 >= -1 and mrr@10 >= -1 and not significantly worse at p < 0.05",
                      correction=correction)
    # three tests; the others' p-values are large, so the smallest is adjusted by x 3 (Holm and BH alike)
    edge = 0.05 / 3
    for p, worse in [(edge * (1 - 1e-9), True), (edge * (1 + 1e-9), False), (0.03, False), (0.001, True)]:
        tests = {"ndcg@10": paired(-0.01, p), "recall@10": paired(-0.01, 0.7), "mrr@10": paired(-0.01, 0.9)}
        decision = gate.evaluate(tests)
        adjusted = multipletests([p, 0.7, 0.9], method=STATSMODELS[correction])[1][0]
        assert decision.significance[0].p_adjusted == pytest.approx(adjusted, rel=1e-12)
        assert bool(adjusted < 0.05) is worse and decision.passed is (not worse), (p, adjusted)
        # uncorrected, every p below 0.05 is a significant drop
        assert Gate.parse(gate.text, correction="none").evaluate(tests).passed is (not p < 0.05)


def test_significantly_better_needs_the_adjusted_p_below_alpha():
    tests = {"ndcg@10": paired(0.02, 0.03), "recall@10": paired(0.02, 0.01)}
    text = "ndcg@10 >= 0 and recall@10 >= 0 and significantly better at p < 0.05"
    assert Gate.parse(text, correction="none").evaluate(tests).passed  # 0.03 and 0.01, each below 0.05
    holm = Gate.parse(text).evaluate(tests)  # Holm: 0.01 x 2 = 0.02, then max(0.02, 0.03 x 1) = 0.03: both hold
    assert holm.passed and [v.p_adjusted for v in holm.significance] == pytest.approx([0.03, 0.02])
    tests["ndcg@10"] = paired(0.02, 0.04)
    assert Gate.parse(text, correction="none").evaluate(tests).passed
    assert Gate.parse(text, correction="holm").evaluate(tests).passed  # max(0.02, 0.04) = 0.04 < 0.05
    tests["recall@10"] = paired(0.02, 0.026)  # Holm: 0.026 x 2 = 0.052: neither is significant any more
    failed = Gate.parse(text).evaluate(tests)
    assert not failed.passed and all(v.verdict == "not significantly better" for v in failed.significance)
    assert Gate.parse(text, correction="bh").evaluate(tests).passed  # BH: 0.052 and 0.04 -> both 0.04


@pytest.mark.parametrize("p", [0.0001, 0.01, 0.049999, 0.05, 0.050001, 0.3, 1.0])
@pytest.mark.parametrize("delta", [-0.02, 0.0, 0.02])
def test_a_family_of_one_test_is_todays_gate(p, delta):
    tests = {"ndcg@10": paired(delta, p)}
    decisions = {c: Gate.parse("ndcg@10 not significantly worse at p < 0.05", correction=c).evaluate(tests)
                 for c in ("holm", "bh", "none")}
    for c, d in decisions.items():
        assert d.family_size == 1 and d.significance[0].p_adjusted == p, c
        assert d.passed is (not (delta < 0 and p < 0.05)), c
    better = Gate.parse("ndcg@10 significantly better at p <= 0.05").evaluate(tests)
    assert better.passed is (delta > 0 and p <= 0.05)


def test_the_family_spans_pipelines_and_candidates_and_counts_each_test_once():
    gate = Gate.parse("ndcg@10 >= -1 and hybrid ndcg@10 >= -1 and not significantly worse at p < 0.05 and "
                      "hybrid not significantly worse at p < 0.05 and ndcg@10 significantly better at p < 0.05")
    dense = {v: {"ndcg@10": paired(-0.01, p)} for v, p in (("v2", 0.02), ("v3", 0.3))}
    hybrid = {(v, "hybrid", "hybrid"): {"ndcg@10": paired(-0.01, p)} for v, p in (("v2", 0.01), ("v3", 0.4))}
    decisions = gate.evaluate_all(Result(dense, hybrid))
    # 2 candidates x (dense, hybrid); dense ndcg@10 is read by two clauses but is one test
    assert {d.family_size for d in decisions.values()} == {4}
    holm = multipletests([0.02, 0.01, 0.3, 0.4], method="holm")[1]
    v2 = decisions["v2"].significance
    assert [(v.pipeline, v.p_value) for v in v2] == [("dense", 0.02), ("hybrid", 0.01), ("dense", 0.02)]
    assert [v.p_adjusted for v in v2] == pytest.approx([holm[0], holm[1], holm[0]])
    assert decisions["v2"].reasons[2] == (
        "PASS not significantly worse at p < 0.05: ndcg@10 delta -0.0100, p = 0.02, Holm-adjusted 0.06 over 4 tests "
        "(not significantly worse)"
    )
    assert decisions["v2"].reasons[3].startswith("FAIL hybrid not significantly worse at p < 0.05: ndcg@10 delta "
                                                 "-0.0100, p = 0.01, Holm-adjusted 0.04 over 4 tests")
    # candidate by candidate, each family would be smaller, and v2's dense drop significant
    alone = gate.evaluate(pipelines=lambda c, b: dense["v2"] if c == "dense" else hybrid[("v2", c, b)])
    assert alone.family_size == 2 and alone.significance[0].p_adjusted == pytest.approx(0.02)
    # evaluate_candidates is the same family as evaluate_all
    inputs = {v: GateInput(dense[v], None, lambda c, b, v=v: dense[v] if c == "dense" else hybrid[(v, c, b)])
              for v in ("v2", "v3")}
    assert gate.evaluate_candidates(inputs) == decisions


def test_reasons_name_the_correction():
    tests = {"ndcg@10": paired(-0.01, 0.012), "recall@10": paired(0.01, 0.5)}
    text = "ndcg@10 >= -1 and recall@10 >= -1 and not significantly worse at p < 0.05"
    reasons = {c: Gate.parse(text, correction=c).evaluate(tests).reasons[-1] for c in ("holm", "bh", "none")}
    assert "ndcg@10 delta -0.0100, p = 0.012, Holm-adjusted 0.024 over 2 tests (significantly worse)" in reasons["holm"]
    assert "p = 0.012, BH-adjusted 0.024 over 2 tests" in reasons["bh"]
    assert "p = 0.012, uncorrected over 2 tests (significantly worse)" in reasons["none"]
    one = Gate.parse("ndcg@10 not significantly worse at p < 0.05").evaluate(tests).reasons[0]
    assert one.endswith("ndcg@10 delta -0.0100, p = 0.012, Holm-adjusted 0.012 over 1 test (significantly worse)")


def test_a_non_finite_p_value_is_left_out_of_the_family():
    adjusted = adjusted_p_values([0.01, float("nan"), 0.02], "holm")
    assert math.isnan(adjusted[1]) and list(adjusted[[0, 2]]) == pytest.approx([0.02, 0.02])
    assert list(adjusted_p_values([0.01, 0.02], "none")) == [0.01, 0.02]
    with pytest.raises(ValueError, match="unknown correction"):
        adjusted_p_values([0.01], "sidak")
    assert set(CORRECTIONS) == set(CORRECTION_METHODS)


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("correction", ["sidak", "bonferroni", ""])
def test_an_unknown_correction_is_a_usage_error_naming_the_choices(correction):
    with pytest.raises(UsageError) as info:
        Gate.parse(NOT_WORSE, correction=correction)
    assert info.value.exit_code == EXIT_USAGE == 2
    assert "unknown multiplicity correction" in info.value.message and "--correction holm" in info.value.hint
    with pytest.raises(UsageError, match="unknown multiplicity correction"):
        EvalRequest(queries="q", qrels="r", gate=NOT_WORSE, correction=correction)
    with pytest.raises(UsageError, match="unknown multiplicity correction"):
        apply_from(None, "no-such-plan.json", correction=correction)  # refused before the plan is read
    assert Gate.parse(NOT_WORSE, correction=" BH ").correction == "bh"
    with pytest.raises(UsageError):
        replace(Gate.parse(NOT_WORSE), correction=correction)


@pytest.mark.parametrize("level", ["1", "1.0", "0", "-0.05", "2"])
def test_a_significance_level_outside_0_1_is_refused(level):
    for op in ("<", "<="):
        with pytest.raises(UsageError, match=r"significance level must be in \(0, 1\)") as info:
            Gate.parse(f"ndcg@10 not significantly worse at p {op} {level}")
        assert info.value.exit_code == 2
    assert Gate.parse("ndcg@10 not significantly worse at p < 0.999").clauses[0].alpha == 0.999


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REINDEX_STORE", f"qdrant+local:{tmp_path}/q")
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    (tmp_path / "q.jsonl").write_text("")
    (tmp_path / "r.tsv").write_text("")
    (tmp_path / "plan.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "docs", "--queries", "q.jsonl", "--qrels", "r.tsv", "--gate", NOT_WORSE, "--correction", "sidak"],
         "unknown multiplicity correction 'sidak'"),
        (["apply", "plan.json", "--no-cutover", "--correction", "sidak"], "unknown multiplicity correction 'sidak'"),
        (["eval", "docs", "--queries", "q.jsonl", "--qrels", "r.tsv", "--gate",
          "ndcg@10 not significantly worse at p <= 1"], "significance level must be in (0, 1)"),
    ],
)
def test_the_cli_refuses_bad_input_with_exit_2(empty_workspace, args, message):
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "hint:" in r.stderr
    assert not (empty_workspace / "state.db").exists()  # refused before any work


def test_the_cli_names_the_option():
    for command in ("eval", "apply"):
        r = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
        assert "--correction holm|bh|none" in r.output and "[default: holm]" in r.output


# --- reports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation():
    queries = {f"q{i}": f"query {i}" for i in range(30)}
    qrels = {q: {f"{q}-r": 1} for q in queries}

    def searcher(good):
        def search(texts, k):
            return [[(f"q{t.split()[1]}-r" if int(t.split()[1]) in good else f"x{j}", 1.0 / (j + 1))
                     for j in range(3)] for t in texts]
        return search

    return evaluate({"v1": searcher(set(range(20))), "v2": searcher(set(range(12))), "v3": searcher(set(range(21)))},
                    queries, qrels, k=10, resamples=300)


def test_reports_show_the_correction_and_both_p_values(evaluation):
    gate = Gate.parse("ndcg@10 >= -1 and recall@10 >= -1 and not significantly worse at p < 0.05", correction="bh")
    data = json.loads(report.to_json(evaluation, gate))["gate"]
    assert data["correction"] == "bh" and data["family_size"] == 4
    v2 = data["decisions"]["v2"]
    assert v2["correction"] == "bh" and v2["family_size"] == 4
    assert [(t["metric"], t["pipeline"], t["versus"]) for t in v2["significance"]] == [
        ("ndcg@10", "dense", "dense"), ("recall@10", "dense", "dense")]
    raw = [t["p_value"] for d in data["decisions"].values() for t in d["significance"]]
    adjusted = [t["p_adjusted"] for d in data["decisions"].values() for t in d["significance"]]
    assert raw == [evaluation.comparisons[v].tests[m].p_value for v in ("v2", "v3") for m in ("ndcg@10", "recall@10")]
    assert adjusted == pytest.approx(list(multipletests(raw, method="fdr_bh")[1]))
    assert "BH-adjusted" in v2["reasons"][-1]

    md = report.to_markdown(evaluation, gate)
    assert "| candidate | clause | metric | delta | p | BH-adjusted p | verdict |" in md
    assert "4 significance tests, over every metric, pipeline and candidate, are corrected together by " \
           "Benjamini-Hochberg" in md
    html = report.to_html(evaluation, gate)
    assert "<th>p</th><th>BH-adjusted p</th>" in html
    none = report.to_markdown(evaluation, Gate.parse(gate.text, correction="none"))
    assert "| p | p (uncorrected) |" in none and "not corrected for multiplicity" in none
    assert "## Gate" in report.to_markdown(evaluation, Gate.parse("ndcg@10 >= -1"))  # no significance: no table


# --- A/A simulation -----------------------------------------------------------

SIMULATIONS, QUERIES, ALPHA = 200, 40, 0.05


def binomial_upper(n: int, p: float, tail: float = 0.01) -> int:
    """The smallest count c with P(X > c) <= tail for X ~ Binomial(n, p)."""
    cumulative = 0.0
    for c in range(n + 1):
        cumulative += math.comb(n, c) * p**c * (1 - p) ** (n - c)
        if 1 - cumulative <= tail:
            return c
    return n


def test_a_a_false_alarms_of_a_four_metric_gate_stay_within_alpha_with_holm():
    """Baseline and candidate from one distribution: every "significantly worse" is a false alarm.

    Four metrics (independent here, the worst case for multiplicity) at p < 0.05: uncorrected,
    the gate refuses an equal candidate about 1 - 0.975^4 ~ 10% of the time; with Holm (and BH,
    which under the global null is the same guarantee) at most 5%.
    """
    rng = np.random.default_rng(20250525)
    gates = {c: Gate.parse(NOT_WORSE, correction=c) for c in ("holm", "bh", "none")}
    refused = dict.fromkeys(gates, 0)
    for i in range(SIMULATIONS):
        baseline = {m: rng.beta(2, 2, QUERIES) for m in METRICS}
        candidate = {m: rng.beta(2, 2, QUERIES) for m in METRICS}
        tests = paired_tests(baseline, candidate, seed=i, resamples=1, permutations=999)
        for c, gate in gates.items():
            refused[c] += not gate.evaluate(tests).passed
    bound = binomial_upper(SIMULATIONS, ALPHA)  # 18 of 200
    assert refused["holm"] <= bound and refused["bh"] <= bound, refused
    assert refused["none"] > SIMULATIONS * ALPHA and refused["none"] >= 2 * refused["holm"], refused
