"""The demo's corpus: deterministic, the right sizes, a clean train/eval split, files that parse back."""

from __future__ import annotations

import csv
import json
import re

import pytest

from reindexer.demo_corpus import DEMO_FINETUNE, SERVICES, build_demo_corpus, write_demo_files


@pytest.fixture(scope="module")
def corpus():
    return build_demo_corpus(seed=0)


def _answer(rels: dict[str, int]) -> str:
    (doc_id,) = [d for d, g in rels.items() if g == 2]
    return doc_id


def test_deterministic_for_a_seed(corpus):
    again = build_demo_corpus(seed=0)
    assert again.documents == corpus.documents
    assert again.queries == corpus.queries
    assert again.qrels == corpus.qrels
    assert again.train_pairs == corpus.train_pairs


def test_another_seed_gives_another_draw(corpus):
    other = build_demo_corpus(seed=1)
    assert other.queries != corpus.queries
    assert {d["id"] for d in other.documents} == {d["id"] for d in corpus.documents}


def test_sizes(corpus):
    assert len(corpus.documents) == 600
    assert len(corpus.queries) == 80
    assert len(corpus.train_pairs) == 300
    assert len(corpus.train_doc_ids) == len(corpus.train_pairs)
    assert set(corpus.qrels) == set(corpus.queries)


def test_documents_have_ids_text_and_payload(corpus):
    ids = [d["id"] for d in corpus.documents]
    assert len(set(ids)) == len(ids)
    for d in corpus.documents:
        assert isinstance(d["id"], str) and d["id"]
        assert 40 <= len(d["text"]) <= 400
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", d["text"])) <= 3, d["text"]
        assert d["title"] and d["lang"] == "en"
        assert d["category"] in {"reference", "runbook", "troubleshooting", "how-to"}
        meta = d["meta"]
        assert isinstance(meta, dict) and meta["service"] and isinstance(meta["tags"], list)
        assert not {"reindex_doc_id", "reindex_model"} & set(d)  # the tool's reserved payload keys


def test_articles_never_use_the_jargon(corpus):
    """The articles speak plainly; code names and error codes live only in queries."""
    jargon = re.compile(r"\b(" + "|".join(s.code for s in SERVICES) + r")\b|\b[A-Z]{3}-\d{3}\b", re.IGNORECASE)
    for d in corpus.documents:
        assert not jargon.search(d["text"]), d["text"]
    assert sum(bool(jargon.search(q)) for q in corpus.queries.values()) >= 0.7 * len(corpus.queries)


def test_every_qrel_points_at_an_existing_document(corpus):
    ids = {d["id"] for d in corpus.documents}
    for _qid, rels in corpus.qrels.items():
        assert rels and set(rels) <= ids
        assert set(rels.values()) <= {1, 2}
        _answer(rels)  # exactly one grade-2 answer
    assert set(corpus.train_doc_ids) <= ids
    texts = corpus.doc_by_id()
    for (_query, positive), doc_id in zip(corpus.train_pairs, corpus.train_doc_ids, strict=False):
        assert texts[doc_id]["text"] == positive


def test_train_and_eval_are_disjoint(corpus):
    eval_q = {q.lower() for q in corpus.queries.values()}
    train_q = [q.lower() for q, _ in corpus.train_pairs]
    assert len(eval_q) == len(corpus.queries)
    assert len(set(train_q)) == len(train_q)
    assert not eval_q & set(train_q)
    # held-out answers are never training positives: a gain on them is generalisation
    answers = {_answer(r) for r in corpus.qrels.values()}
    assert not answers & set(corpus.train_doc_ids)


def test_training_covers_the_jargon_of_the_eval_queries(corpus):
    train_text = " ".join(q.lower() for q, _ in corpus.train_pairs)
    for svc in SERVICES:
        assert svc.code.lower() in train_text
        assert svc.prefix.lower() in train_text
    for number in {m for q in corpus.queries.values() for m in re.findall(r"\b[A-Za-z]{3}-(\d{3})\b", q)}:
        assert f"-{number}" in train_text


def test_write_demo_files_round_trip(corpus, tmp_path):
    paths = write_demo_files(corpus, tmp_path / "demo")
    assert set(paths) == {"corpus", "queries", "qrels", "train"}
    assert all(p.exists() for p in paths.values())

    docs = [json.loads(line) for line in paths["corpus"].read_text(encoding="utf-8").splitlines()]
    assert docs == corpus.documents

    queries = [json.loads(line) for line in paths["queries"].read_text(encoding="utf-8").splitlines()]
    assert {q["_id"]: q["text"] for q in queries} == corpus.queries

    with paths["qrels"].open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["query-id", "corpus-id", "score"]
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc_id, score in rows[1:]:
        qrels.setdefault(qid, {})[doc_id] = int(score)
    assert qrels == corpus.qrels

    train = [json.loads(line) for line in paths["train"].read_text(encoding="utf-8").splitlines()]
    assert [(t["query"], t["positive"]) for t in train] == corpus.train_pairs
    assert [t["positive_id"] for t in train] == corpus.train_doc_ids


def test_demo_finetune_settings_are_finetune_arguments():
    import inspect

    from reindexer.finetune import finetune

    assert set(DEMO_FINETUNE) <= set(inspect.signature(finetune).parameters)
