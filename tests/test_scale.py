"""The spine's full model change on each embedded backend, at a size the suite can afford.

The same flow at 5,000 documents is ``benchmarks/scale.py`` (``make bench-scale``). Here
the point is more than one batch of every step (embed, upsert and checkpoint, scroll,
verify), not the size: the batch sizes are set small and the corpus is sized from them,
three full batches and a short last one.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.scale import failures, full_model_change
from tests.plugins.corpus import scaled_documents

BATCH = 32  # documents per upsert, checkpoint and scroll page
EMBED_BATCH = 8  # texts per encode call
N_DOCS = 3 * BATCH + 7


@pytest.mark.slow
def test_full_model_change_of_many_documents(embedded_store_url, tmp_path, minilm_path, demo_corpus):
    docs = scaled_documents(demo_corpus, N_DOCS)
    queries = list(demo_corpus.queries.values())[:20]
    facts = full_model_change(embedded_store_url, tmp_path, str(minilm_path), docs, queries,
                              batch_size=BATCH, embed_batch_size=EMBED_BATCH)
    assert failures(facts) == []
    assert facts["count"] == N_DOCS and facts["tags"] == [facts["new_model"]]
    assert facts["scroll_pages"] == math.ceil(N_DOCS / BATCH) == 4
