"""Effect size and power: the minimum detectable effect (MDE) of a query set, the gate's power
clause, and "not significantly worse" on an under-powered query set (inconclusive, unless allowed).

The MDE is checked against a closed form (the normal approximation for large n, the
noncentral t computed here with scipy for any n) and by simulation: paired differences with a
known standard deviation and a true mean equal to the MDE are detected about 80% of the time,
by the t-test and by the gate's own sign-flip test, within a binomial interval. The end-to-end
test runs a real apply and eval (MiniLM on about 60 documents of the demo corpus, embedded Qdrant).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from reindexer import commands
from reindexer.ab import Judgements
from reindexer.cli import cli
from reindexer.config import Config
from reindexer.errors import EXIT_GATE_REFUSED, GateRefusedError, UsageError
from reindexer.evaluation import report
from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_clauses import Power
from reindexer.evaluation.power import minimum_detectable_effect, power_to_detect, standardized_mde
from reindexer.evaluation.runner import evaluate
from reindexer.evaluation.significance import paired_tests, sign_flip_p_values
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl


def t_power(d: float, n: int, alpha: float) -> float:
    """Two-sided power of the one-sample t-test at standardised effect d, from scipy's noncentral t."""
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = d * math.sqrt(n)
    return float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))


# --- the minimum detectable effect ----------------------------------------------------------


@pytest.mark.parametrize("n", [6, 10, 30, 100, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_mde_is_the_effect_the_t_test_detects_with_80_percent_power(n, alpha):
    if 2.0 ** (1 - n) >= alpha:
        assert math.isinf(standardized_mde(n, alpha))  # the sign-flip test cannot reach alpha at all
        return
    sd = 0.17
    mde = minimum_detectable_effect(sd, n, alpha)
    assert t_power(mde / sd, n, alpha) == pytest.approx(0.8, abs=1e-4)  # statsmodels' root-finding tolerance
    assert power_to_detect(mde, sd, n, alpha) == pytest.approx(0.8, abs=1e-4)
    normal = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)) * sd / math.sqrt(n)
    # the normal closed form is the large-sample limit; the t-based MDE is larger for small n
    assert mde >= normal * 0.999
    if n >= 1000:
        assert mde == pytest.approx(normal, rel=0.01)


def test_mde_edge_cases():
    assert math.isinf(minimum_detectable_effect(0.1, 5, 0.05))  # min sign-flip p is 2/32 = 0.0625
    assert math.isfinite(minimum_detectable_effect(0.1, 6, 0.05))  # 2/64 = 0.031
    assert math.isinf(minimum_detectable_effect(math.nan, 1, 0.05))  # one query detects nothing
    assert math.isnan(minimum_detectable_effect(math.nan, 40, 0.05))  # unknown variance: unknown
    assert minimum_detectable_effect(0.0, 40, 0.05) == 0.0  # no variance: any change shows
    assert power_to_detect(0.01, 0.0, 40, 0.05) == 1.0 and power_to_detect(0.5, 0.1, 5, 0.05) == 0.0
    for bad in (dict(alpha=0.0), dict(alpha=1.0), dict(power=1.0)):
        with pytest.raises(ValueError):
            standardized_mde(40, **{"alpha": 0.05, "power": 0.8, **bad})
    with pytest.raises(ValueError, match="positive"):
        power_to_detect(0.0, 0.1, 40, 0.05)


def test_paired_tests_report_the_sd_and_mde_of_the_differences():
    rng = np.random.default_rng(3)
    base, cand = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    t = paired_tests({"ndcg@10": base}, {"ndcg@10": cand}, confidence=0.9, resamples=200, permutations=200)["ndcg@10"]
    sd = float(np.std(cand - base, ddof=1))
    assert t.sd_diff == pytest.approx(sd, rel=1e-12)
    assert t.mde == pytest.approx(standardized_mde(40, 0.1) * sd, rel=1e-12)  # alpha = 1 - confidence
    assert t.ci_low < t.delta < t.ci_high  # the effect comes with its bootstrap interval
    assert t.mde_at(0.01) > t.mde  # a stricter level needs a larger effect
    one = paired_tests({"m": [0.5]}, {"m": [0.7]}, resamples=10, permutations=10)["m"]
    assert math.isnan(one.sd_diff) and math.isinf(one.mde)


SIMULATIONS, N, SD = 2000, 30, 0.2


def binomial_interval(p: float, trials: int, level: float = 0.999) -> tuple[float, float]:
    low, high = stats.binom.interval(level, trials, p)
    return low / trials, high / trials


def test_power_at_the_mde_is_80_percent_by_simulation():
    """True mean = MDE (from the known sd): the t-test rejects ~80% of the time, the sign-flip test too."""
    rng = np.random.default_rng(20251206)
    mde = minimum_detectable_effect(SD, N, 0.05)
    diffs = rng.normal(mde, SD, size=(N, SIMULATIONS))
    t_rejected = stats.ttest_1samp(diffs, 0.0, axis=0).pvalue < 0.05
    low, high = binomial_interval(0.8, SIMULATIONS)
    assert low <= t_rejected.mean() <= high, t_rejected.mean()
    # the gate's own test, the paired randomisation test, on the first 600 columns at once
    p, _ = sign_flip_p_values(diffs[:, :600], 2000, rng)
    low, high = binomial_interval(0.8, 600)
    assert low - 0.02 <= (p < 0.05).mean() <= high, (p < 0.05).mean()
    # and half the MDE is detected far less often: the MDE is a boundary, not a formality
    assert (stats.ttest_1samp(rng.normal(mde / 2, SD, size=(N, 1000)), 0.0, axis=0).pvalue < 0.05).mean() < 0.4


# --- the power clause ------------------------------------------------------------------------


def test_power_clause_parses_with_its_metric_and_round_trips():
    gate = Gate.parse("ndcg@10 >= -0.005 and not significantly worse at p < 0.05 and NDCG@10 Power For .01 >= 0.8")
    assert gate.clauses[2] == Power("ndcg@10", 0.01, ">=", 0.8)
    assert str(gate.clauses[2]) == "ndcg@10 power for 0.01 >= 0.8"
    assert Gate.parse(str(gate)).clauses == gate.clauses
    explicit = Gate.parse("hybrid recall@5 power for 0.02 at p <= 0.01 > 0.9")
    assert explicit.clauses == (Power("recall@5", 0.02, ">", 0.9, 0.01, True, pipeline="hybrid"),)
    assert str(explicit) == "hybrid recall@5 power for 0.02 at p <= 0.01 > 0.9"
    assert explicit.metrics == ["recall@5"] and explicit.pipelines == ["dense", "hybrid"] and explicit.ks == [5]


def _tests(n: int, sd: float, delta: float = 0.0, seed: int = 0, metric: str = "ndcg@10"):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, n)
    diff = rng.normal(0, sd, n)
    diff = diff - diff.mean() + delta  # the observed mean difference is exactly delta
    return paired_tests({metric: base}, {metric: base + diff}, seed=seed, resamples=200, permutations=2000)


def test_power_clause_passes_on_a_large_set_and_is_inconclusive_on_a_small_one():
    gate = Gate.parse("ndcg@10 >= -0.05 and ndcg@10 power for 0.01 >= 0.8")
    big = gate.evaluate(_tests(400, 0.05))
    assert big.passed and big.verdict == "pass", big.reasons
    assert big.reasons[1].startswith("PASS ndcg@10 power for 0.01 >= 0.8: power ")
    assert "at p < 0.05 (two-sided) over 400 queries" in big.reasons[1]
    small = gate.evaluate(_tests(20, 0.05))
    assert not small.passed and small.verdict == "inconclusive"
    assert small.reasons[1].startswith("INCONCLUSIVE ndcg@10 power for 0.01 >= 0.8")
    assert "judge on more queries" in small.reasons[1]
    # a failed threshold outweighs an inconclusive power clause
    assert gate.evaluate(_tests(20, 0.05, delta=-0.2)).verdict == "fail"
    # the level is the significance clause's on that metric when the power clause names none
    strict = Gate.parse("ndcg@10 not significantly worse at p < 0.01 and ndcg@10 power for 0.01 >= 0.8")
    assert "at p < 0.01 (two-sided)" in strict.evaluate(_tests(400, 0.05)).reasons[1]


def test_power_clause_measures_the_power_of_the_comparison():
    tests = _tests(60, 0.1)
    t = tests["ndcg@10"]
    decision = Gate.parse("ndcg@10 power for 0.03 >= 0.5").evaluate(tests)
    expected = t_power(0.03 / t.sd_diff, 60, 0.05)
    assert f"power {expected:.3f} to detect a change of 0.03" in decision.reasons[0]
    assert decision.passed is (expected >= 0.5)


# --- "not significantly worse" on an under-powered query set ---------------------------------

NOT_WORSE = "ndcg@10 >= -0.01 and not significantly worse at p < 0.05"


def test_not_significantly_worse_on_a_tiny_query_set_is_inconclusive():
    tiny = _tests(12, 0.3, delta=-0.005)
    decision = Gate.parse(NOT_WORSE).evaluate(tiny)
    assert decision.verdict == "inconclusive" and not decision.passed
    (v,) = decision.significance
    assert v.inconclusive and v.underpowered and not v.holds and v.margin == 0.01
    assert v.mde == pytest.approx(tiny["ndcg@10"].mde)  # the clause's level is the report's 0.05 here
    assert decision.reasons[0].startswith("PASS ndcg@10 >= -0.01")
    reason = decision.reasons[1]
    assert reason.startswith("INCONCLUSIVE not significantly worse at p < 0.05: ndcg@10 delta -0.0050")
    assert f"detects with 80% power at the clause's level is {v.mde:.4f}, more than the 0.01 that matters" in reason
    assert "--allow-underpowered" in reason
    assert decision.as_dict()["verdict"] == "inconclusive"
    assert decision.as_dict()["significance"][0]["underpowered"] is True
    # the same clause on enough queries (low variance) passes, and says how small a drop it could see
    powered = Gate.parse(NOT_WORSE).evaluate(_tests(800, 0.05, delta=-0.001))
    assert powered.passed and powered.verdict == "pass"
    assert f"(not significantly worse), MDE {powered.significance[0].mde:.4f} at 80% power" in powered.reasons[1]


def test_the_drop_that_matters_is_the_power_clause_s_else_the_threshold_s():
    tests = _tests(60, 0.1, delta=-0.001)
    mde = tests["ndcg@10"].mde  # about 0.037
    assert Gate.parse("ndcg@10 >= -0.05 and not significantly worse at p < 0.05").evaluate(tests).passed
    assert not Gate.parse("ndcg@10 >= -0.02 and not significantly worse at p < 0.05").evaluate(tests).passed
    # a power clause's change is the drop that matters, whatever the threshold
    both = Gate.parse(
        "ndcg@10 >= -0.5 and ndcg@10 not significantly worse at p < 0.05 and ndcg@10 power for 0.02 > 0.5"
    )
    assert both.evaluate(tests).significance[0].margin == 0.02 < mde
    assert both.evaluate(tests).verdict == "inconclusive"
    # no margin declared (>= 0): judged as before, with the MDE stated
    plain = Gate.parse("ndcg@10 >= -0.002 and recall@10 >= 0 and recall@10 not significantly worse at p < 0.05")
    decision = plain.evaluate({**tests, **_tests(60, 0.1, delta=0.001, metric="recall@10")})
    assert decision.passed and "MDE" in decision.reasons[-1]


def test_a_significant_gain_is_never_inconclusive():
    gained = _tests(12, 0.05, delta=0.2)
    assert gained["ndcg@10"].p_value < 0.05
    assert Gate.parse(NOT_WORSE).evaluate(gained).verdict == "pass"


def test_the_opt_out_passes_an_under_powered_clause_and_says_so():
    tiny = _tests(12, 0.3, delta=-0.005)
    allowed = Gate.parse(NOT_WORSE, allow_underpowered=True).evaluate(tiny)
    assert allowed.passed and allowed.verdict == "pass"
    assert allowed.significance[0].underpowered and not allowed.significance[0].inconclusive
    mde = allowed.significance[0].mde
    assert (
        f"(not significantly worse (under-powered, allowed)), MDE {mde:.4f} at 80% power, more than the 0.01"
        in (allowed.reasons[1])
    )
    # without the opt-out, a significant drop on an under-powered set is a plain fail, its MDE stated
    failed = Gate.parse("ndcg@10 >= -0.01 and not significantly worse at p < 0.05").evaluate(_tests(20, 0.05, -0.04))
    assert failed.verdict == "fail" and "(significantly worse), MDE " in failed.reasons[1]
    assert "allowed" not in failed.reasons[1]
    # the opt-out never turns a significant drop into a pass, nor an unmet power clause
    worse = _tests(40, 0.05, delta=-0.05)
    assert Gate.parse(NOT_WORSE, allow_underpowered=True).evaluate(worse).verdict == "fail"
    required = Gate.parse("ndcg@10 power for 0.01 >= 0.8", allow_underpowered=True)
    assert required.evaluate(tiny).verdict == "inconclusive"
    assert commands.EvalRequest(queries="q", qrels="r", gate=NOT_WORSE, allow_underpowered=True).allow_underpowered


def test_reports_show_the_mde_and_the_inconclusive_verdict():
    queries = {f"q{i}": f"query {i}" for i in range(12)}
    qrels = {q: {f"{q}-r": 1} for q in queries}

    def searcher(good):
        def search(texts, k):
            return [
                [(f"q{t.split()[1]}-r" if int(t.split()[1]) in good else f"x{j}", 1.0 / (j + 1)) for j in range(3)]
                for t in texts
            ]

        return search

    result = evaluate({"v1": searcher({0, 1, 2, 3, 4, 5}), "v2": searcher({0, 1, 2, 3, 4, 6})}, queries, qrels, k=10,
                      resamples=300)  # fmt: skip
    gate = Gate.parse(NOT_WORSE)
    data = json.loads(report.to_json(result, gate))
    power = data["significance"]["power"]
    assert power["power"] == 0.8 and power["alpha"] == pytest.approx(0.05)
    t = result.comparisons["v2"].tests["ndcg@10"]
    assert power["comparisons"]["v2"]["ndcg@10"] == {"sd_diff": pytest.approx(t.sd_diff), "mde": pytest.approx(t.mde)}
    assert data["gate"]["verdict"] == "inconclusive" and data["gate"]["passed"] is False
    assert data["gate"]["decisions"]["v2"]["significance"][0]["mde"] == pytest.approx(t.mde)
    md = report.to_markdown(result, gate)
    assert "**v2: INCONCLUSIVE**" in md and "| wins / losses / ties | MDE (80%) |" in md
    assert f"| {t.mde:.4f} |" in md and "MDE: the smallest true delta this query set detects" in md
    assert "| verdict | MDE (80% power) |" in md
    html = report.to_html(result, gate)
    assert "v2: INCONCLUSIVE" in html and "<th>MDE (80%)</th>" in html


# --- bad input: exit 2, naming the fix -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ndcg@10 >= 0 and power for 0.01 >= 0.8", "a power clause needs the metric it is about in front"),
        ("ndcg@10 power for 0 >= 0.8", "the change to detect must be positive"),
        ("ndcg@10 power for -0.01 >= 0.8", "the change to detect must be positive"),
        ("ndcg@10 power for 0.01 >= 1", "the power required must be in (0, 1)"),
        ("ndcg@10 power for 0.01 >= 0", "the power required must be in (0, 1)"),
        ("ndcg@10 power for 0.01 at p < 1.5 >= 0.8", "significance level must be in (0, 1)"),
        ("ndcg@10 power for 0.01 at p < 0 >= 0.8", "significance level must be in (0, 1)"),
        ("ndcg@10 power for 0.01 <= 0.8", "'>=' or '>' and the power required"),
        ("ndcg@10 power 0.01 >= 0.8", "expected 'for'"),
    ],
)
def test_bad_power_clauses_are_usage_errors(text, fragment):
    with pytest.raises(UsageError) as info:
        Gate.parse(text)
    assert info.value.exit_code == 2 and fragment in info.value.message
    assert "power        := METRIC" in info.value.hint  # the grammar, with the power clause


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REINDEX_STORE", f"qdrant+local:{tmp_path}/q")
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    (tmp_path / "q.jsonl").write_text("")
    (tmp_path / "r.tsv").write_text("")
    (tmp_path / "plan.json").write_text("{}")
    return tmp_path


EVAL = ["eval", "docs", "--queries", "q.jsonl", "--qrels", "r.tsv", "--gate"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*EVAL, NOT_WORSE, "--correction", "sidak"], "unknown multiplicity correction 'sidak'"),
        ([*EVAL, "ndcg@10 >= 0 and power for 0.01 >= 0.8"], "a power clause needs the metric it is about in front"),
        ([*EVAL, "ndcg@10 not significantly worse at p < 1"], "significance level must be in (0, 1)"),
        ([*EVAL, "ndcg@10 power for 0.01 at p <= 1 >= 0.8"], "significance level must be in (0, 1)"),
        ([*EVAL, "ndcg@10 power for 0.01 >= 1.5"], "the power required must be in (0, 1)"),
        ([*EVAL, "ndcg@10 power for 0 >= 0.8"], "the change to detect must be positive"),
        (["apply", "plan.json", "--no-cutover", "--gate", "recall@10 power for -1 >= 0.8"],
         "the change to detect must be positive"),
    ],
)  # fmt: skip
def test_the_cli_refuses_bad_input_with_exit_2(empty_workspace, args, message):
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "hint:" in r.stderr
    assert not (empty_workspace / "state.db").exists()  # refused before any work


def test_the_cli_names_the_opt_out():
    for command in ("eval", "apply"):
        r = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
        assert "--allow-underpowered" in r.output


# --- end to end: a real apply and eval on too few judged queries -----------------------------


@pytest.mark.slow
def test_an_inconclusive_gate_refuses_promotion_and_the_opt_out_promotes(tmp_path, monkeypatch, minilm_path,
                                                                        demo_corpus):  # fmt: skip
    """Five judged queries cannot show that a 128-dimension cut is not worse: apply refuses (exit 6,
    its own message), the alias stays on v1; --allow-underpowered promotes it, audited."""
    judged = list(demo_corpus.qrels)[:5]
    relevant = {d for q in judged for d in demo_corpus.qrels[q]}
    docs = [d for i, d in enumerate(demo_corpus.documents) if i < 60 or d["id"] in relevant]
    queries = {q: demo_corpus.queries[q] for q in judged}
    qrels = {q: dict(demo_corpus.qrels[q]) for q in judged}
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": q, "text": t} for q, t in queries.items()])
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q in judged for d, g in qrels[q].items())
    )
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path / 'q'}",
                    state_url=f"sqlite:///{tmp_path / 'state.db'}", batch_size=64)  # fmt: skip
    gate = "ndcg@10 >= -1 and not significantly worse at p < 0.05"
    with Workspace(config) as ws:
        corpus = SourceSpec(kind="jsonl", location=str(write_jsonl(tmp_path / "c.jsonl", docs)))
        p1 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, source=corpus)
        commands.apply(ws, p1)
        p2 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                           settings=ModelSettings(truncate_dim=128))  # fmt: skip
        judgements = Judgements(queries, qrels, source="five demo queries")
        with pytest.raises(GateRefusedError) as info:
            commands.apply(ws, p2, judgements=judgements, gate=gate)
        error = info.value
        assert error.exit_code == EXIT_GATE_REFUSED == 6
        assert "the gate could not decide on promoting v2 (inconclusive" in error.message
        assert "INCONCLUSIVE not significantly worse at p < 0.05" in error.message
        assert "none (too few queries for the test to reach its level)" in error.message  # 5 queries: min p 1/16
        assert "--allow-underpowered" in error.hint
        assert error.result.gate["verdict"] == "inconclusive"
        assert ws.store.resolve("docs") == "docs__v1"
        events = commands.history(ws, "docs", limit=50)["events"]
        assert any(e["action"] == "gate" and e["result"] == "inconclusive" for e in events)
    # the CLI's eval says the same, exit 6
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REINDEX_STORE", config.store_url)
    monkeypatch.setenv("REINDEX_STATE", config.state_url)
    args = ["eval", "docs", "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2", "--gate", gate]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == EXIT_GATE_REFUSED, r.output
    assert "inconclusive" in r.output and "INCONCLUSIVE not significantly worse" in r.output
    r = CliRunner().invoke(cli, [*args, "--allow-underpowered"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "under-powered, allowed" in r.output
    with Workspace(config) as ws:
        done = commands.apply(ws, p2, judgements=judgements, gate=gate, allow_underpowered=True)
        assert done.gate["verdict"] == "pass" and done.gate["allow_underpowered"] is True
        assert ws.store.resolve("docs") == "docs__v2"
