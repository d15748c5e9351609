"""Issue 25.3: A/A calibration of the gate (reindexer.evaluation.calibrate, `reindex eval --calibrate`).

The gate runs on split-half A/A comparisons, where nothing changed: every significance alarm is a
false positive. Seeded, on arrays (fast), then end to end on real versions in Qdrant local and Milvus Lite.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from statsmodels.stats.proportion import proportion_confint

from reindexer import commands
from reindexer.cli import cli
from reindexer.errors import EXIT_USAGE, UsageError
from reindexer.evaluation import Gate
from reindexer.evaluation.calibrate import calibratable, calibrate_scores, check_resamples, render
from tests.plugins.corpus import write_jsonl
from tests.plugins.versions import embedded_two_versions, live_is

METRICS = ["ndcg@10", "recall@10", "mrr@10", "map@10"]
ANY = " and ".join(f"{m} >= -1" for m in METRICS)  # thresholds that always hold: only significance decides
NOT_WORSE = f"{ANY} and not significantly worse at p < 0.05"


def pytest_generate_tests(metafunc):
    embedded_two_versions(metafunc)


def scores(seed: int, n: int = 80, metrics=METRICS) -> dict[str, dict[str, np.ndarray]]:
    """Per-query scores of one version: independent metrics (the worst case for multiplicity)."""
    rng = np.random.default_rng(seed)
    return {"dense": {m: rng.beta(2, 2, n) for m in metrics}}


def test_a_two_sided_clause_pair_has_its_nominal_rate_within_the_binomial_interval():
    """One metric, "not significantly worse" and "significantly better" at 0.05: together a two-sided test
    at 0.05, exact under the split-half null, so its A/A rate must sit in a binomial interval around 0.05."""
    text = "ndcg@10 not significantly worse at p < 0.05 and ndcg@10 significantly better at p < 0.05"
    cal = calibrate_scores(Gate.parse(text), scores(1, metrics=["ndcg@10"]), resamples=1000, seed=7)
    low, high = proportion_confint(round(0.05 * 1000), 1000, alpha=0.01, method="beta")  # 99% band around 0.05
    assert low <= cal.false_positive.rate <= high, cal.false_positive
    worse, better = cal.clauses
    # each one-sided clause alone about half of it; a family of one test is not adjusted
    assert worse.kind == better.kind == "significance" and worse.nominal == 0.05
    assert worse.rate.events + better.rate.events == cal.false_positive.events  # never both in one A/A
    assert 0.01 < worse.rate.rate < 0.05 and 0.01 < better.rate.rate < 0.05


def test_holm_keeps_the_family_within_nominal_and_no_correction_does_not():
    holm = calibrate_scores(Gate.parse(NOT_WORSE), scores(2), resamples=600, seed=3)
    none = calibrate_scores(Gate.parse(NOT_WORSE, correction="none"), scores(2), resamples=600, seed=3)
    assert holm.correction == "holm" and none.correction == "none"
    assert holm.false_positive.low <= 0.05 and holm.false_positive.rate <= 0.05 and holm.within_nominal
    assert none.false_positive.low > 0.05 and not none.within_nominal  # four tests each at 0.05: about 0.09
    assert none.false_positive.verdict(0.05) == "above nominal"
    # the interval is statsmodels' Clopper-Pearson
    e = none.false_positive
    assert (e.low, e.high) == pytest.approx(proportion_confint(e.events, 600, alpha=0.05, method="beta"))
    # the same split for both: an uncorrected alarm is a superset of Holm's
    assert none.false_positive.events >= holm.false_positive.events
    data = holm.to_dict()
    assert data["resamples"] == 600 and data["queries"] == 80 and data["pairs_per_resample"] == 40
    assert data["false_positive"]["nominal"] == 0.05 and data["false_positive"]["verdict"].startswith("within")
    assert [c["kind"] for c in data["clauses"]] == ["other"] * 4 + ["significance"]
    assert all(c["events"] == 0 for c in data["clauses"][:4])  # ">= -1" never fails
    text = "\n".join(render(none))
    assert "gate false-positive rate (any significance clause)" in text and "above nominal" in text


def test_a_threshold_inside_the_noise_is_reported_as_failing_often_without_a_nominal_level():
    cal = calibrate_scores(Gate.parse("ndcg@10 >= 0"), scores(4, metrics=["ndcg@10"]), resamples=300, seed=1)
    (clause,) = cal.clauses
    assert clause.kind == "other" and clause.nominal is None and 0.35 < clause.rate.rate < 0.65
    assert cal.nominal is None and cal.false_positive.events == 0 and cal.refused.events == clause.rate.events
    assert "no significance clause" in "\n".join(render(cal))


def test_a_rebuilt_copy_that_scores_lower_shows_as_false_positives_and_an_identical_one_does_not():
    live = scores(5)
    same = calibrate_scores(Gate.parse(NOT_WORSE), live, live, resamples=300, seed=2)
    alone = calibrate_scores(Gate.parse(NOT_WORSE), live, resamples=300, seed=2)
    assert same.false_positive == alone.false_positive and "rebuilt copy" not in alone.design
    worse = {"dense": {m: np.clip(v - 0.12, 0, 1) for m, v in live["dense"].items()}}
    shifted = calibrate_scores(Gate.parse(NOT_WORSE), live, worse, resamples=300, seed=2)
    assert shifted.false_positive.low > 0.05  # the rebuild itself moves the metrics: the gate calls it a change


def test_traffic_and_cross_pipeline_clauses_are_skipped_with_the_reason():
    gate = Gate.parse("ndcg@10 >= -1 and not significantly worse at p < 0.05 and dense vs lexical ndcg@10 >= 0 "
                      "and traffic overlap@10 >= 0.5 at p < 0.05")  # fmt: skip
    judged, skipped = calibratable(gate)
    assert str(judged) == "ndcg@10 >= -1 and not significantly worse at p < 0.05"
    assert ["no A/A null" in s.note for s in skipped] == [True, False]
    cal = calibrate_scores(gate, scores(6, metrics=["ndcg@10"]), resamples=50, seed=0)
    assert [c.kind for c in cal.clauses] == ["other", "significance", "skipped", "skipped"]
    assert cal.configured == str(gate) and cal.gate == str(judged)
    with pytest.raises(UsageError, match="no clause an A/A comparison can judge"):
        calibrate_scores(Gate.parse("traffic rbo >= 0.5"), scores(6), resamples=10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_resamples_below_one_or_not_whole_are_refused(bad):
    with pytest.raises(UsageError, match="--resamples must be a whole number of at least 1") as info:
        check_resamples(bad)
    assert info.value.exit_code == EXIT_USAGE == 2 and "--resamples 1000" in info.value.hint


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibrate", "--resamples", "0"], "--resamples must be a whole number of at least 1"),
        (["--calibrate", "--resamples", "-5"], "--resamples must be a whole number of at least 1"),
        (["--resamples", "10"], "--resamples goes with --calibrate"),
        (["--calibrate", "--report-json", "x.json"], "--calibrate writes no report file"),
    ],
)
def test_the_cli_refuses_bad_calibration_input_with_exit_2(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REINDEX_STORE", f"qdrant+local:{tmp_path}/q")
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    (tmp_path / "q.jsonl").write_text("")
    (tmp_path / "r.tsv").write_text("")
    args = ["eval", "docs", "--queries", "q.jsonl", "--qrels", "r.tsv", "--gate", NOT_WORSE, *extra]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "hint:" in r.stderr
    assert not (tmp_path / "state.db").exists() and not (tmp_path / "q").exists()  # refused before any work


# --- end to end on real versions ---------------------------------------------------------------


@pytest.fixture
def judged_files(tmp_path, demo_corpus, two_versions):
    ws, _ = two_versions
    ids = {p.doc_id for page in ws.store.scroll("docs__v1", with_vectors=False) for p in page}
    qrels = {q: {d: g for d, g in judged.items() if d in ids} for q, judged in demo_corpus.qrels.items()}
    qrels = {q: j for q, j in qrels.items() if j}
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": q, "text": demo_corpus.queries[q]} for q in qrels])
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, j in qrels.items() for d, g in j.items()))  # fmt: skip
    return tmp_path / "queries.jsonl", tmp_path / "qrels.tsv", len(qrels)


def test_reindex_eval_calibrate_end_to_end(two_versions, judged_files, minilm_path):
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    queries, qrels, n = judged_files
    assert n >= 6
    gate = "ndcg@10 >= -1 and recall@10 >= -1 and not significantly worse at p < 0.05"
    args = ["--store", ws.config.store_url, "--state", ws.config.state_url]
    ws.close()  # the CLI opens the embedded store itself
    base = [*args, "eval", "docs", "--queries", str(queries), "--qrels", str(qrels), "--gate", gate, "--calibrate"]
    r = CliRunner().invoke(cli, [*base, "--resamples", "200", "--correction", "none"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "A/A calibration of: ndcg@10 >= -1 and recall@10 >= -1 and not significantly worse at p < 0.05" in r.output
    assert (
        "200 resamples of" in r.output and "correction none" in r.output and "live v1 on two random halves" in r.output
    )
    r = CliRunner().invoke(cli, [*args, "--json", *base[len(args) :], "--resamples", "200"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["correction"] == "holm" and data["resamples"] == 200 and data["queries"] == n
    fp = data["false_positive"]
    assert fp["trials"] == 200 and fp["nominal"] == 0.05 and fp["interval"][0] <= 0.05  # Holm: not above nominal
    assert [c["kind"] for c in data["clauses"]] == ["other", "other", "significance"]
    # a version of another model is not an A/A copy: exit 2, nothing changed
    r = CliRunner().invoke(cli, [*base, "--versions", "live,v2"], catch_exceptions=False)
    assert r.exit_code == 2 and "made by another model" in r.stderr and "not an A/A copy" in r.stderr


def test_calibrate_against_a_rebuilt_copy(two_versions, judged_files, minilm_path):
    """A copy of v1 rebuilt with other index settings (same model): where search is exact, as in Qdrant local
    and Milvus Lite, it ranks as v1 does, so its A/A is v1's own."""
    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    queries, qrels, _ = judged_files
    copy = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, index_params={"hnsw_m": 8})
    assert copy.mode == "copy"
    commands.apply(ws, copy, cutover=False)
    version = f"v{copy.to_version['version']}"
    gate = "ndcg@10 >= -1 and mrr@10 >= -1 and not significantly worse at p < 0.05"
    request = commands.EvalRequest(queries=queries, qrels=qrels, gate=gate, versions=f"live,{version}", seed=4)
    against_copy = commands.calibrate(ws, "docs", request, resamples=150)
    alone = commands.calibrate(ws, "docs", commands.EvalRequest(queries=queries, qrels=qrels, gate=gate, seed=4), 150)
    assert f"its rebuilt copy {version}" in against_copy.design
    assert against_copy.false_positive == alone.false_positive and against_copy.refused == alone.refused
    events = commands.history(ws, "docs", limit=20)["events"]
    assert any(e["action"] == "eval-calibrate" for e in events)
    assert ws.store.resolve("docs") == "docs__v1"  # calibration changes nothing
