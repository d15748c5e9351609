"""Vectors made once per process (reindexer.vector_memo): the plan's timed sample handed to the build,
the build's vectors to its verification, each given out once and bounded.

What is asserted: the memo gives a vector once and stops keeping at its bound; after a plan
estimated from a sample, the apply in the same process encodes only the documents the sample did
not (every stored vector still its own text's), and its verification takes the build's vectors
instead of encoding again; and vectors the store got wrong are still caught when they are.
"""

from __future__ import annotations

import numpy as np
import pytest

from reindexer import commands, estimate
from reindexer.config import Config
from reindexer.embedding import Embedder
from reindexer.errors import VerificationError
from reindexer.sources.spec import SourceSpec
from reindexer.vector_memo import ENTRY_OVERHEAD, VectorMemo, encode_reusing
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

DOCS = 40
BATCH = 8


def test_a_memo_gives_each_vector_once_and_keeps_the_first_ones_up_to_its_bound():
    vectors = np.arange(20, dtype=np.float32).reshape(5, 4)
    memo = VectorMemo(max_bytes=3 * (vectors[0].nbytes + ENTRY_OVERHEAD))
    assert memo.keep(list("abcde"), vectors, seconds=1.0) == 3 and len(memo) == 3  # d and e: past the bound
    vectors[0] = -1  # kept as a copy: the caller's batch may change or go
    got = memo.take(["c", "x", "a", "a", "d"])
    assert sorted(got.rows) == [0, 2]
    assert got.rows[0].tolist() == [8, 9, 10, 11] and got.rows[2].tolist() == [0, 1, 2, 3]
    assert got.seconds == pytest.approx(2 / 5)  # each kept vector carries its share of the batch's time
    assert memo.take(["a", "c"]).rows == {} and len(memo) == 1  # given once
    assert memo.keep(["d"], vectors[3:4]) == 1  # room again
    memo.clear(owner="v2")
    assert len(memo) == 0 and memo.owner == "v2" and memo.take(["b"]).rows == {}


class _Counting:
    """An embedder whose vector for a text is its length, recording what it was asked to encode."""

    def __init__(self):
        self.asked: list[list[str]] = []

    def embed_documents(self, texts):
        self.asked.append(list(texts))
        return np.asarray([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_encoding_through_a_memo_encodes_only_what_it_lacks_in_one_call_in_order():
    embedder, memo = _Counting(), VectorMemo()
    memo.keep(["bb"], np.asarray([[7.0, 7.0]], dtype=np.float32))
    out, taken = encode_reusing(embedder, memo, ["a", "bb", "cccc"])
    assert taken == 1 and embedder.asked == [["a", "cccc"]]
    assert out.tolist() == [[1, 1], [7, 7], [4, 1]]
    out, taken = encode_reusing(embedder, memo, ["bb"])  # given once: encoded this time
    assert taken == 0 and out.tolist() == [[2, 1]] and embedder.asked[-1] == ["bb"]


@pytest.fixture()
def planned(tmp_path, minilm_path, demo_corpus, monkeypatch):
    """A plan of 40 documents estimated from a sample (no history), and every text encoded from then on."""
    monkeypatch.setattr("reindexer.estimate.TIMED_MIN", BATCH)
    encoded: list[str] = []
    original = Embedder.embed_documents

    def spy(self, texts):
        encoded.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(Embedder, "embed_documents", spy)
    docs = [dict(d) for d in demo_corpus.documents[:DOCS]]
    source = SourceSpec(kind="jsonl", location=str(write_jsonl(tmp_path / "c.jsonl", docs)))
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path}/q", state_url=f"sqlite:///{tmp_path}/s.db",
                    batch_size=BATCH, embed_batch_size=BATCH)
    with Workspace(config) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), source=source)
        assert plan.estimate["method"] == "sample"
        sampled = set(encoded)
        encoded.clear()
        yield ws, plan, docs, sampled, encoded


def test_the_build_takes_its_plans_sample_and_its_verification_the_builds_vectors(planned, minilm_path):
    ws, plan, docs, sampled, encoded = planned
    # warm-up and timed batch: two batches of the sample's texts, which the build does not encode again
    assert len(sampled) == 2 * BATCH
    result = commands.apply(ws, plan)
    # the rate recorded for later plans is a build's that encodes all: the sample's time is added back
    [run] = estimate.past_runs(ws.state, plan.to_version["model_fingerprint"], plan.estimate["device"])
    apply_encode = result.stats["embed_seconds"]
    assert run["embed_share"] * run["seconds"] > apply_encode + 0.5 * plan.estimate["sample_seconds"]
    assert result.cut_over and result.stats["embedded"] == DOCS
    assert len(encoded) == DOCS - len(sampled) and not set(encoded) & sampled  # verification encoded nothing
    v = result.verification
    assert v["ok"] and v["sample_size"] == 16 and v["sample_from_build"] == 16 and v["sample_min_cosine"] > 0.9999
    # each stored vector is its own text's, the sample's included
    points = {p.doc_id: p for p in ws.store.retrieve("docs__v1", [d["id"] for d in docs], with_vectors=True)}
    stored = np.asarray([points[d["id"]].vector for d in docs])
    fresh = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    cos = (stored * fresh).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(fresh, axis=1)
    assert cos.min() > 0.9999


def test_vectors_the_store_got_wrong_are_caught_by_the_builds_own(planned, monkeypatch):
    ws, plan, _, _, encoded = planned
    upsert = type(ws.store).upsert

    def shifted(self, name, points):
        # every point gets its neighbour's vector: the write path, not the model, is wrong
        vectors = [p.vector for p in points]
        for p, v in zip(points, vectors[1:] + vectors[:1], strict=True):
            p.vector = v
        return upsert(self, name, points)

    monkeypatch.setattr(type(ws.store), "upsert", shifted)
    with pytest.raises(VerificationError, match="re-embedded sample disagrees"):
        commands.apply(ws, plan)
    assert len(encoded) == DOCS - 2 * BATCH  # the build's vectors were the reference: nothing encoded again
