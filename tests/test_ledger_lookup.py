"""The streamed diff's ledger look-up answers exactly, whatever the order or density of the ids asked.

On SQLite a chunk is read as one stretch of the ledger's key (sources mostly come in id
order) and falls back to looking the ids up when the stretch holds many more rows than
asked; PostgreSQL always looks them up. Either way the answer is the ledger's hashes of
the ids asked, and nothing else.
"""

from __future__ import annotations

import random

import pytest

from reindexer.state.models import IndexVersion, ModelVersion
from reindexer.state.store import StateStore


@pytest.fixture
def ledger(state_url):
    state = StateStore(state_url)
    state.save(ModelVersion(fingerprint="f" * 16, name="m", path="/m", dim=3, similarity="cosine"))
    lc = state.ensure_collection("qdrant+local:/x", "docs")
    version = state.save(IndexVersion(collection_id=lc.id, version=1, physical_name="docs__v1",
                                      model_fingerprint="f" * 16, dim=3, metric="cosine"))
    other = state.save(IndexVersion(collection_id=lc.id, version=2, physical_name="docs__v2",
                                    model_fingerprint="f" * 16, dim=3, metric="cosine"))
    # Ids whose order differs between code points, bytes and case-folding collations.
    ids = [f"d{i:05d}" for i in range(3000)] + ["Zebra", "apple", "Äpfel", "éclair", "z", "日本", "😀", "a b"]
    rows = [(i, f"h-{i}") for i in ids]
    state.record_batch(version.id, "f" * 16, rows)
    state.record_batch(other.id, "f" * 16, [(i, "other") for i in ids])  # a neighbour version's rows never leak
    yield state, version.id, dict(rows)
    state.close()


def test_every_shape_of_chunk_gets_exactly_the_ledgers_hashes(ledger):
    state, vid, hashes = ledger
    ordered = sorted(hashes)
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    chunks = {
        "one stretch in order": ordered[100:1100],
        "shuffled": shuffled[:1000],
        "sparse (every 50th)": ordered[::50],
        "ends of the key": [ordered[0], ordered[-1]],
        "not in the ledger": ["d99999", "nope", "D00001"],
        "mixed with unknowns": ordered[200:260] + ["x-unknown", "d00100.5"],
        "non-ASCII and case": ["Zebra", "apple", "Äpfel", "éclair", "z", "日本", "😀", "a b"],
    }
    for what, chunk in chunks.items():
        want = {i: hashes[i] for i in chunk if i in hashes}
        assert state.ledger_hashes(vid, chunk) == want, what
    assert state.ledger_hashes(vid, []) == {}
