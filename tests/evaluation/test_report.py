from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from reindexer.evaluation import report
from reindexer.evaluation.gate import Gate
from reindexer.evaluation.runner import compare_unlabelled, evaluate

QUERIES = {f"q{i}": f"query {i} | with a pipe & <tag>" for i in range(30)}
QRELS = {qid: {f"{qid}-r": 1, f"{qid}-r2": 3} for qid in QUERIES}
QRELS["ghost"] = {"x": 1}


def searcher(good):
    def search(texts, k):
        out = []
        for text in texts:
            qid = "q" + text.split()[1]
            docs = [f"{qid}-r2", f"{qid}-r"] if qid in good else [f"{qid}-n{j}" for j in range(k)]
            out.append([(d, 1.0 / (r + 1)) for r, d in enumerate(docs)])
        return out

    return search


@pytest.fixture(scope="module")
def result():
    ids = list(QUERIES)
    searchers = {
        "docs__v1": searcher(set(ids[:12])),
        "docs__v2": searcher(set(ids[2:26])),
        "docs__v3": searcher(set(ids[:3])),  # clearly worse
    }
    return evaluate(searchers, QUERIES, QRELS, k=10, resamples=1000)


GATE = Gate.parse("ndcg@10 >= -0.005 and not significantly worse at p < 0.05")

TOP_LEVEL_KEYS = set(
    "schema versions baseline k headline depth ks metric_names num_queries skipped significance metrics intervals"
    " worst_queries comparisons pipelines pairs gate per_query".split()
)
METRIC_KEYS = {"baseline", "candidate", "delta", "ci_low", "ci_high", "p_value", "p_method", "wins", "losses", "ties"}


def test_json_schema_is_stable_and_round_trips(result):
    text = report.to_json(result, GATE)
    data = json.loads(text)
    assert set(data) == TOP_LEVEL_KEYS
    assert data["schema"] == "reindexer.evaluation/v1"
    assert data["versions"] == ["docs__v1", "docs__v2", "docs__v3"]
    assert data["k"] == 10 and data["ks"] == [1, 3, 5, 10]
    assert data["skipped"] == {"queries_without_relevant": 0, "qrels_unknown_queries": 1, "qrels_unknown_judgements": 1}
    assert set(data["metrics"]["docs__v2"]) == set(data["metric_names"])
    comparison = data["comparisons"]["docs__v2"]
    assert set(comparison) == {"baseline", "candidate", "metrics", "worst_regressions"}
    assert set(comparison["metrics"]["ndcg@10"]) == METRIC_KEYS
    regression_keys = {"query_id", "query_text", "metric", "baseline", "candidate", "delta", "missed_relevant"}
    assert set(comparison["worst_regressions"][0]) == regression_keys
    assert data["gate"]["expression"] == GATE.text
    assert set(data["gate"]["decisions"]) == {"docs__v2", "docs__v3"}
    assert data["per_query"] is None
    # round trip: what was written is exactly what is read back
    assert json.loads(json.dumps(data)) == data
    assert json.loads(report.to_json(result, GATE)) == data  # deterministic


def test_json_without_gate_and_with_per_query(result):
    data = report.to_dict(result, per_query=True)
    assert set(data) == TOP_LEVEL_KEYS
    assert data["gate"] is None
    assert data["per_query"]["query_ids"] == result.query_ids
    assert len(data["per_query"]["values"]["docs__v1"]["ndcg@10"]) == 30


def test_markdown_has_the_tables(result):
    md = report.to_markdown(result, GATE)
    assert "| metric | docs__v1 (baseline) | docs__v2 | docs__v3 |" in md
    assert re.search(r"^\| ndcg@10 \| [0-9.]+ \| [0-9.]+ \([+-][0-9.]+\) \|", md, re.M)
    assert "| metric | docs__v1 | docs__v2 | delta | 95% CI | p | wins / losses / ties |" in md
    assert "## docs__v2 vs docs__v1" in md
    assert "### Worst regressions (ndcg@10)" in md
    assert "query 0 \\| with a pipe" in md  # pipes in text cannot break the table
    assert "## Gate" in md and "**docs__v2: PASS**" in md and "**docs__v3: FAIL**" in md
    assert "FAIL not significantly worse at p < 0.05: ndcg@10 delta" in md


def test_html_is_one_self_contained_file(result):
    html = report.to_html(result, GATE)
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 4  # an interval plot and a histogram per candidate
    assert not re.search(r"https?:", html, re.I)
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert "&lt;tag&gt;" in html and "<tag>" not in html  # query text is escaped
    # every SVG is well-formed XML
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        ET.fromstring(svg)


def test_rich_table(result):
    table = report.rich_table(result)
    assert table.row_count == len(result.metrics)
    assert [c.header for c in table.columns][:3] == ["metric", "docs__v1", "docs__v2"]


def test_unlabelled_reports():
    ids = list(QUERIES)
    result = compare_unlabelled({"a": searcher(set(ids[:10])), "b": searcher(set(ids[5:]))}, QUERIES, k=5)
    data = json.loads(report.unlabelled_to_json(result))
    assert data["schema"] == "reindexer.evaluation.unlabelled/v1"
    keys = {"baseline", "candidate", "mean_overlap", "mean_rbo", "unchanged", "most_changed"}
    assert set(data["comparisons"]["b"]) == keys
    assert data["comparisons"]["b"]["unchanged"] == 5
    md = report.unlabelled_to_markdown(result)
    assert "| candidate | overlap@5 | RBO |" in md
