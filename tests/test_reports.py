"""Report files and people's output of apply and eval, from the library (reindexer.report_files, reindexer.render).

No model and no store: the evaluations run on synthetic searchers, the results are the
library's own dataclasses. The end-to-end paths (the CLI writing the same files after a real
gated apply) are in tests/test_gate.py and tests/test_beir_cli.py.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from reindexer import render
from reindexer.commands import ApplyResult, EvalOutcome, EvalRequest
from reindexer.errors import UsageError
from reindexer.evaluation import Gate, evaluate
from reindexer.evaluation import report as report_formats
from reindexer.report_files import (
    NO_JUDGED_EVALUATION,
    ReportFiles,
    report_gate,
    write_apply_reports,
    write_reports,
)

GATE = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
N = 30


def _searcher(first_rank):
    def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        out = []
        for t in texts:
            i = int(t.split()[-1])
            docs = [f"filler-{i}-{j}" for j in range(k)]
            rank = first_rank(i)
            if rank is not None and rank <= k:
                docs[rank - 1] = f"d{i}"
            out.append([(d, 1.0 - j / 100) for j, d in enumerate(docs)])
        return out

    return search


@pytest.fixture(scope="module")
def comparison():
    queries = {f"q{i}": f"question {i}" for i in range(N)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(N)}
    searchers = {"v1": _searcher(lambda i: i % 5 + 1), "v2": _searcher(lambda i: None if i % 2 else 1)}
    return evaluate(searchers, queries, qrels, k=10, seed=0, resamples=500)


def _gated_result(comparison, gate_text: str = GATE) -> ApplyResult:
    decision = Gate.parse(gate_text).evaluate(comparison.comparisons["v2"]) if "traffic" not in gate_text else None
    result = ApplyResult("p" * 64, "docs", "full", 2, "docs__v2", evaluation={"queries": N, "versions": {}})
    result.gate = {"gate": gate_text, "passed": bool(decision and decision.passed), "forced": False,
                   "reasons": decision.reasons if decision else []}
    result.evaluation_result = comparison
    return result


def test_apply_reports_are_the_eval_formats_of_the_gate_evaluation(comparison, tmp_path):
    result = _gated_result(comparison)
    files = ReportFiles(tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.html")
    assert write_apply_reports(result, files) is None
    gate = Gate.parse(GATE)
    assert files.json.read_text() == report_formats.to_json(comparison, gate)
    assert json.loads(files.json.read_text())["gate"]["passed"] is result.gate["passed"] is False  # v2 loses half
    assert files.md.read_text() == report_formats.to_markdown(comparison, gate) and "## Gate" in files.md.read_text()
    assert "<title>docs: gate evaluation</title>" in files.html.read_text()


def test_no_evaluation_writes_nothing_and_says_so(tmp_path):
    result = ApplyResult("p" * 64, "docs", "full", 1, "docs__v1")
    asked = ReportFiles.of(json=tmp_path / "r.json", md=str(tmp_path / "r.md"))
    assert write_apply_reports(result, asked) == NO_JUDGED_EVALUATION
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.md").exists()
    assert write_apply_reports(result, ReportFiles()) is None  # nothing asked, nothing to say


def test_a_gate_with_traffic_clauses_is_left_out_of_the_report(comparison, tmp_path):
    assert report_gate(None) is None
    assert report_gate({"gate": "traffic rbo >= 0.5 and ndcg@10 >= 0"}) is None
    assert str(report_gate({"gate": GATE})) == str(Gate.parse(GATE))
    write_reports(comparison, None, ReportFiles(json=tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["gate"] is None


def test_apply_result_json_carries_the_report_not_the_python_object(comparison):
    data = _gated_result(comparison).to_dict()
    assert "evaluation_result" not in data and "report_notice" not in data
    assert data["report"]["schema"] == report_formats.SCHEMA and data["evaluation"]["queries"] == N
    json.dumps(data)  # plain data all through
    assert "report" not in ApplyResult("p", "docs", "noop", None, None).to_dict()


@pytest.mark.parametrize(("options", "message"), [
    ({"queries": "q", "qrels": "r", "since": "1h"}, "--since and --shadow go with --from-traffic"),
    ({"from_traffic": True, "versions": "v1,v2"}, "--from-traffic reads mirrored live queries"),
    ({"log": "log.txt", "gate": GATE}, "--log compares without labels"),
    ({"queries": "q"}, "pass --queries and --qrels (judged), or --log (label-free)"),
    ({}, "pass --queries and --qrels"),
])
def test_an_eval_request_is_checked_when_made(options, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalRequest(**options)
    assert EvalRequest(queries="q", qrels="r").k == 10  # a complete one is accepted


def _printed(fn, *args, **kw) -> str:
    console = Console(record=True, width=200, color_system=None)
    fn(console, *args, **kw)
    return console.export_text()


def test_rendered_apply_says_what_was_measured_and_decided(comparison):
    result = _gated_result(comparison)
    result.verification = {"store_count": 30, "ledger_count": 30, "sample_size": 8, "sample_min_cosine": 0.99999}
    text = _printed(render.apply_result, result)
    assert "verified: 30 points = ledger 30, sample of 8 re-embedded" in text
    assert report_formats.headline_line(comparison) in text
    assert f"gate {'passed' if result.gate['passed'] else 'refused'}: {GATE}" in text
    assert "shadow docs__v2 is built; `reindex cutover docs` promotes it" in text


def test_rendered_evaluation_of_one_version_points_at_its_per_query_values(comparison):
    single = evaluate({"v1": _searcher(lambda i: i % 5 + 1)}, {"q1": "question 1"}, {"q1": {"d1": 1}}, k=10)
    outcome = EvalOutcome(report_formats.to_dict(single), judged=single)
    assert "per-query values: --report-json FILE" in _printed(render.evaluation, outcome)
    assert "per-query values" not in _printed(render.evaluation, outcome, per_query_hint=False)
    decisions = Gate.parse(GATE).evaluate_all(comparison)
    both = EvalOutcome(report_formats.to_dict(comparison), judged=comparison, decisions=decisions)
    assert f"gate for v2: {'passed' if decisions['v2'].passed else 'refused'}" in _printed(render.evaluation, both)
    assert both.refused == (not decisions["v2"].passed)
