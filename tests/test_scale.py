"""The spine's full model change on each embedded backend, at a size the suite can afford.

The same flow at 5,000 documents is ``benchmarks/scale.py`` (``make bench-scale``); here it
runs on 800 documents: more than one batch of every step (embed, upsert, scroll, verify).
"""

from __future__ import annotations

import pytest

from benchmarks.scale import failures, full_model_change
from tests.plugins.corpus import scaled_documents

N_DOCS = 800


@pytest.mark.slow
def test_full_model_change_of_many_documents(embedded_store_url, tmp_path, minilm_path, demo_corpus):
    docs = scaled_documents(demo_corpus, N_DOCS)
    queries = list(demo_corpus.queries.values())[:20]
    facts = full_model_change(embedded_store_url, tmp_path, str(minilm_path), docs, queries)
    assert failures(facts) == []
    assert facts["count"] == N_DOCS and facts["tags"] == [facts["new_model"]]
