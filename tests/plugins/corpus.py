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
