"""Small real corpora for flow tests, drawn from the project's demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reindexer.demo_corpus import build_demo_corpus


@pytest.fixture(scope="session")
def demo_corpus():
    return build_demo_corpus()


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    with path.open("w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return path


def scaled_documents(corpus, n: int) -> list[dict]:
    """``n`` distinct documents: the demo corpus, repeated with a varying sentence and new ids."""
    out = []
    base = corpus.documents
    i = 0
    while len(out) < n:
        d = dict(base[i % len(base)])
        round_ = i // len(base)
        if round_:
            d["id"] = f"{d['id']}-r{round_}"
            d["text"] = f"{d['text']} Revision {round_} of this article."
        out.append(d)
        i += 1
    return out


@pytest.fixture
def small_corpus_file(tmp_path, demo_corpus) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:60])


def demo_subset(corpus, n_docs: int):
    """The demo corpus cut to ``n_docs`` documents: those judged for its first queries, then others.

    For tests whose point is not the corpus's size: fewer documents to embed per version,
    the same kind of text and distractors, the queries whose judged documents all stayed,
    and every training pair.
    """
    from reindexer.demo_corpus import DemoCorpus

    chosen: list[str] = []
    for rels in corpus.qrels.values():
        new = [d for d in rels if d not in chosen]
        if len(chosen) + len(new) > n_docs // 2:
            break
        chosen += new
    by_id = corpus.doc_by_id()
    chosen += [d["id"] for d in corpus.documents if d["id"] not in chosen][:n_docs - len(chosen)]
    kept = set(chosen)
    docs = [by_id[d] for d in chosen]
    qrels = {q: r for q, r in corpus.qrels.items() if set(r) <= kept}
    return DemoCorpus(documents=docs, queries={q: corpus.queries[q] for q in qrels}, qrels=qrels,
                      train_pairs=corpus.train_pairs, train_doc_ids=corpus.train_doc_ids, seed=corpus.seed)
