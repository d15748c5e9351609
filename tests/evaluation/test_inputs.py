from __future__ import annotations

import json

import pytest

from reindexer.errors import EXIT_NOT_FOUND, EXIT_USAGE, NotFoundError, UsageError
from reindexer.evaluation.inputs import (
    align,
    check_doc_ids,
    detect_qrels_format,
    load_qrels,
    load_queries,
    load_query_log,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*objects):
    return "\n".join(json.dumps(o) for o in objects) + "\n"


# --- queries ---------------------------------------------------------------


def test_beir_queries_keep_order_and_ignore_extra_keys(tmp_path):
    path = write(
        tmp_path,
        "queries.jsonl",
        jsonl({"_id": "q2", "text": "second", "metadata": {}}, {"_id": 7, "text": "numeric id"}) + "\n\n",
    )
    assert load_queries(path) == {"q2": "second", "7": "numeric id"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": \n', "queries.jsonl:2: not valid JSON"),
        ('{"_id": "q1", "text": "a"}\n["q2", "b"]\n', "queries.jsonl:2: expected a JSON object"),
        ('{"text": "a"}\n', "queries.jsonl:1: missing or empty '_id'"),
        ('{"_id": "q1"}\n', "queries.jsonl:1: query 'q1' has no 'text'"),
        (
            '{"_id": "q1", "text": "a"}\n\n{"_id": "q1", "text": "b"}\n',
            "queries.jsonl:3: duplicate query id 'q1' (first on line 1)",
        ),
        ("\n  \n", "the queries file is empty"),
    ],
)
def test_malformed_queries_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path, "queries.jsonl", content)
    with pytest.raises(UsageError) as info:
        load_queries(path)
    assert message in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFoundError) as info:
        load_queries(tmp_path / "nope.jsonl")
    assert info.value.exit_code == EXIT_NOT_FOUND


# --- qrels -----------------------------------------------------------------


def test_beir_tsv_qrels(tmp_path):
    path = write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td 2\t0\nq2\td3\t1\n")
    assert load_qrels(path) == {"q1": {"d1": 2, "d 2": 0}, "q2": {"d3": 1}}


def test_trec_qrels(tmp_path):
    path = write(tmp_path, "qrels.txt", "q1 0 d1 2\nq1 0 d2 0\n\nq2  Q0  d3  1\n")
    assert load_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


def test_format_detection():
    assert detect_qrels_format("query-id\tcorpus-id\tscore") == "beir"
    assert detect_qrels_format("301 0 FBIS3-10082 1") == "trec"
    assert detect_qrels_format("q1 d1 1") == "unknown"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", "test.tsv:3: expected 3 fields"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "test.tsv:2: relevance 'high' is not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1.5\n", "test.tsv:2: relevance '1.5' is not an integer"),
        ("q1 0 d1 1\nq1 0 d2\n", "test.tsv:2: expected 4 fields"),
        ("q1 0 d1 1\nq1 0 d1 2\n", "test.tsv:2: query 'q1' judges document 'd1' 2, but line 1 judged it 1"),
        ("q1 d1 1\n", "test.tsv:1: cannot tell the qrels format"),
        ("qid\tdocid\trel\nq1\td1\t1\n", "test.tsv:1: unexpected qrels header"),
        ("query-id\tcorpus-id\tscore\n", "has a header but no judgements"),
        ("", "the qrels file is empty"),
    ],
)
def test_malformed_qrels_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path, "test.tsv", content)
    with pytest.raises(UsageError) as info:
        load_qrels(path)
    assert message in str(info.value)


def test_repeated_identical_judgement_is_harmless(tmp_path):
    path = write(tmp_path, "qrels.txt", "q1 0 d1 1\nq1 0 d1 1\n")
    assert load_qrels(path) == {"q1": {"d1": 1}}


# --- query logs -------------------------------------------------------------


def test_plain_query_log_ids_are_line_numbers(tmp_path):
    path = write(tmp_path, "log.txt", "how to reset a password\n\nrefund policy\nrefund policy\n")
    assert load_query_log(path) == {
        "line-1": "how to reset a password",
        "line-3": "refund policy",
        "line-4": "refund policy",
    }


def test_jsonl_query_log(tmp_path):
    path = write(tmp_path, "log.jsonl", jsonl({"text": "a", "_id": "x"}, {"text": "b", "id": 5}, {"text": "c"}))
    assert load_query_log(path) == {"x": "a", "5": "b", "line-3": "c"}


def test_jsonl_query_log_errors(tmp_path):
    path = write(tmp_path, "log.jsonl", jsonl({"text": "a", "id": "x"}, {"text": "b", "id": "x"}))
    with pytest.raises(UsageError, match=r"log.jsonl:2: duplicate query id 'x'"):
        load_query_log(path)
    path = write(tmp_path, "log2.jsonl", jsonl({"text": "a"}, {"query": "b"}))
    with pytest.raises(UsageError, match=r"log2.jsonl:2: no 'text'"):
        load_query_log(path)
    with pytest.raises(UsageError, match="empty"):
        load_query_log(write(tmp_path, "empty.txt", ""))


# --- aligning queries and qrels -------------------------------------------------


def test_align_skips_and_counts():
    queries = {"q1": "a", "q2": "b", "q3": "c"}
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 0}, "ghost": {"d1": 1, "d2": 2}}
    labelled = align(queries, qrels)
    assert labelled.queries == {"q1": "a"}
    assert labelled.qrels == {"q1": {"d1": 1}}
    assert labelled.skipped.as_dict() == {
        "queries_without_relevant": 2,  # q2 (grade 0 only) and q3 (no judgement)
        "qrels_unknown_queries": 1,
        "qrels_unknown_judgements": 2,
    }


def test_align_with_disjoint_ids_is_an_error():
    with pytest.raises(UsageError, match="none of the 2 query ids in the qrels is in the queries"):
        align({"q1": "a"}, {"x": {"d": 1}, "y": {"d": 1}})


def test_align_with_nothing_relevant_is_an_error():
    with pytest.raises(UsageError, match="no query has a relevant judgement"):
        align({"q1": "a"}, {"q1": {"d": 0}})


# --- doc ids ------------------------------------------------------------------


def test_check_doc_ids_counts_unknown():
    qrels = {"q1": {"d1": 1, "gone": 2}, "q2": {"d2": 0, "old": 0}}
    check = check_doc_ids(qrels, ["d1", "d2", "d3"])
    assert (check.judged, check.unknown, check.unknown_relevant) == (4, 2, 1)
    assert check.examples == ("gone", "old")


def test_check_doc_ids_with_no_match_is_an_error():
    with pytest.raises(UsageError, match="none of the 2 judged document ids is in the collection"):
        check_doc_ids({"q1": {"a": 1, "b": 0}}, {"x", "y"})
