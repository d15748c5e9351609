"""The streaming pipeline (reindexer.build.stream): length-sorted windows, order restored for writing, the
reader's thread and errors, the flat-memory diff (ids seen on disk, ledger paged), and honest estimates."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from reindexer import commands, estimate
from reindexer.build import stream as pipeline
from reindexer.build.steps import sync_into
from reindexer.commands import sync
from reindexer.config import Config
from reindexer.embedding import Embedder
from reindexer.errors import UsageError
from reindexer.sources.base import Document, Source
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

BATCH = 8


@pytest.fixture
def small_windows(monkeypatch):
    # 40 documents become four read chunks and three windows of two batches each.
    monkeypatch.setattr(pipeline, "READ_CHUNK", 10)
    monkeypatch.setattr(pipeline, "WINDOW_BATCHES", 2)


def _ws(tmp_path, store_url):
    # embed_batch_size too: unset, the encode batch is the device's default, not the upsert batch
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=BATCH, embed_batch_size=BATCH))


def _docs(demo_corpus, n=40):
    return [dict(d) for d in demo_corpus.documents[:n]]


def _build(ws, minilm_path, path, collection="docs", estimate=False):
    # no estimate unless asked: from a sample, it embeds up to 64 more documents than the build
    source = SourceSpec(kind="jsonl", location=str(path))
    plan = commands.plan(ws, collection, model_path=str(minilm_path), source=source, estimate=estimate)
    return plan, commands.apply(ws, plan)


def test_windows_embed_sorted_by_length_and_write_each_vector_to_its_own_document(
    tmp_path, embedded_store_url, minilm_path, demo_corpus, small_windows, monkeypatch
):
    docs = _docs(demo_corpus)
    calls: list[list[str]] = []
    original = Embedder.embed_documents

    def spy(self, texts):
        calls.append(list(texts))
        return original(self, texts)

    monkeypatch.setattr(Embedder, "embed_documents", spy)
    with _ws(tmp_path, embedded_store_url) as ws:
        _, result = _build(ws, minilm_path, write_jsonl(tmp_path / "c.jsonl", docs))
        assert result.live == "docs__v1" and result.stats["embedded"] == 40
        build = [c for c in calls if len(c) <= BATCH]  # verification's re-embedded sample is one larger call
        assert [len(c) for c in build] == [8, 8, 8, 8, 8]
        tokens = Embedder(minilm_path).token_lengths
        for first, second in ((build[0], build[1]), (build[2], build[3])):  # one window each
            lengths = tokens(first + second)
            assert lengths == sorted(lengths) and len(set(lengths)) > 1
        # Sorting must not move a vector to another document: each stored vector is its own text's.
        fresh = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
        points = {p.doc_id: p for p in ws.store.retrieve("docs__v1", [d["id"] for d in docs], with_vectors=True)}
        stored = np.asarray([points[d["id"]].vector for d in docs])
        cos = (stored * fresh).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(fresh, axis=1)
        assert cos.min() > 0.9999
        assert {p.payload["title"] for p in points.values()} == {d["title"] for d in docs}


class _Listed(Source):
    description = "listed"

    def __init__(self, docs, fail_at=None):
        self.docs, self.fail_at = docs, fail_at

    def __iter__(self):
        for i, d in enumerate(self.docs):
            if i == self.fail_at:
                raise UsageError(f"listed: record {i} is broken")
            # The payload a JSONL source gives: every field but the id (so the ledger's hashes match).
            yield Document(d["id"], d["text"], {k: v for k, v in d.items() if k != "id"})


def test_repeated_ids_across_chunks_are_skipped_and_deletions_found_by_paging_the_ledger(
    tmp_path, minilm_path, demo_corpus, small_windows
):
    docs = _docs(demo_corpus)
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        _build(ws, minilm_path, write_jsonl(tmp_path / "c.jsonl", docs))
        version = ws.state.versions(ws.state.get_collection(ws.store_url, "docs").id)[0]
        model = ws.state.get_model(version.model_fingerprint)
        # Drop 5 documents; repeat 3 others in a later chunk (the first occurrence wins).
        kept = docs[5:] + [dict(d, text="a repeat that must not be embedded") for d in docs[10:13]]
        stats = sync_into(ws, version, model, _Listed(kept))
        assert (stats.seen, stats.unchanged, stats.embedded, stats.deleted) == (35, 35, 0, 5)
        assert ws.state.ledger_count(version.id) == ws.store.count(version.physical_name) == 35
        assert set(ws.state.ledger(version.id)) == {d["id"] for d in docs[5:]}


def test_a_source_error_on_the_reader_thread_reaches_the_caller_and_a_rerun_finishes(
    tmp_path, minilm_path, demo_corpus, small_windows
):
    docs = _docs(demo_corpus)
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        _build(ws, minilm_path, write_jsonl(tmp_path / "c.jsonl", docs[:8]))
        version = ws.state.versions(ws.state.get_collection(ws.store_url, "docs").id)[0]
        model = ws.state.get_model(version.model_fingerprint)
        with pytest.raises(UsageError, match="record 37 is broken"):
            sync_into(ws, version, model, _Listed(docs, fail_at=37))
        # What was written before the error is recorded (the checkpoint), and nothing was deleted.
        partial = ws.state.ledger_count(version.id)
        assert 8 < partial < 40 and ws.store.count(version.physical_name) == partial
        stats = sync_into(ws, version, model, _Listed(docs))
        assert stats.embedded == 40 - partial and stats.unchanged == partial
        assert ws.state.ledger_count(version.id) == ws.store.count(version.physical_name) == 40


def test_a_plan_estimates_from_the_previous_apply_and_says_so(tmp_path, minilm_path, demo_corpus):
    docs = _docs(demo_corpus)
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        first, _ = _build(ws, minilm_path, write_jsonl(tmp_path / "c.jsonl", docs), estimate=True)
        assert first.estimate["method"] == "sample" and first.estimate["sample_docs"] == 40
        assert "from a sample of 40 documents" in first.estimate["basis"]
        [run] = estimate.past_runs(ws.state, first.to_version["model_fingerprint"], first.estimate["device"])
        assert run["docs"] == 40 and run["docs_per_second"] > 0 and 0 < run["embed_share"] <= 1
        second = commands.plan(ws, "other", model_path=str(minilm_path),
                               source=SourceSpec(kind="jsonl", location=str(tmp_path / "c.jsonl")))
        assert second.estimate["method"] == "history" and second.estimate["runs"] == 1
        # the rate is shown to a tenth: at under 5 docs/s (a loaded machine) that is more than 1 %
        assert second.estimate["docs_per_second"] == round(run["docs_per_second"], 1)
        # seconds are rounded to a tenth
        assert second.estimate["seconds"] == pytest.approx(40 / run["docs_per_second"], rel=0.02, abs=0.051)
        assert second.estimate["basis"].startswith("from 1 previous run of this model on ")


def test_estimate_history_keeps_the_last_runs_and_ignores_tiny_ones(tmp_path):
    from reindexer.state import StateStore

    state = StateStore(f"sqlite:///{tmp_path}/s.db")
    assert estimate.record_run(state, "f" * 64, "cpu", "qdrant+local:x", 5, 1.0, 0.9) is None
    for i in range(estimate.HISTORY + 3):
        estimate.record_run(state, "f" * 64, "cpu", "qdrant+local:x", 100, 10.0 + i, 8.0)
    runs = estimate.past_runs(state, "f" * 64, "cpu")
    assert len(runs) == estimate.HISTORY and runs[-1]["seconds"] == 10.0 + estimate.HISTORY + 2
    assert estimate.past_runs(state, "f" * 64, "cuda") == []
    est = estimate.from_history(runs, 1000, "cpu")
    assert est["docs_per_second"] == round(statistics.median(r["docs_per_second"] for r in runs), 1)
    assert est["seconds"] == pytest.approx(1000 / statistics.median(r["docs_per_second"] for r in runs), abs=0.1)


def test_sync_of_an_unchanged_source_reads_without_loading_the_model(tmp_path, minilm_path, demo_corpus, monkeypatch):
    docs = _docs(demo_corpus, 20)
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        _build(ws, minilm_path, write_jsonl(tmp_path / "c.jsonl", docs))
        monkeypatch.setattr("reindexer.build.steps.embedder_for", lambda *a, **k: pytest.fail("loaded the model"))
        r = sync(ws, "docs")
        assert r.versions["v1"] == {"seen": 20, "embedded": 0, "unchanged": 20, "deleted": 0}


def test_a_record_source_fills_the_pipelines_id_set_so_a_pass_keeps_one(
    tmp_path, minilm_path, demo_corpus, small_windows, monkeypatch
):
    from reindexer import idset
    from reindexer.sources.jsonl import JsonlSource

    docs = _docs(demo_corpus)
    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        path = write_jsonl(tmp_path / "c.jsonl", docs)
        _build(ws, minilm_path, path)
        version = ws.state.versions(ws.state.get_collection(ws.store_url, "docs").id)[0]
        model = ws.state.get_model(version.model_fingerprint)
        made: list[object] = []
        original = idset.IdSet.__init__

        def counted(self, *a, **k):
            made.append(self)
            original(self, *a, **k)

        monkeypatch.setattr(idset.IdSet, "__init__", counted)
        write_jsonl(path, docs[4:])  # 4 deleted: found against the one set the source filled
        with JsonlSource(path) as source:
            stats = sync_into(ws, version, model, source)
        assert (stats.seen, stats.unchanged, stats.deleted) == (36, 36, 4)
        assert len(made) == 1
        # A caller that keeps the pass's ids (apply, for verification) hands in its set: still the only one.
        with idset.IdSet() as mine, JsonlSource(path) as source:
            sync_into(ws, version, model, source, seen=mine)
            assert len(made) == 2 and len(mine) == 36
            assert mine.missing([d["id"] for d in docs]) == [d["id"] for d in docs[:4]]
        # The source, not the pipeline, now refuses a repeated id, in a later chunk too.
        write_jsonl(path, docs[4:] + [docs[20]])
        with JsonlSource(path) as source, pytest.raises(UsageError, match="repeat|duplicate|more than once"):
            sync_into(ws, version, model, source)
        assert ws.state.ledger_count(version.id) == ws.store.count(version.physical_name) == 36


def test_a_pass_settles_the_store_once_after_its_writes_and_never_for_a_no_op(
    tmp_path, embedded_store_url, minilm_path, demo_corpus, small_windows, monkeypatch
):
    docs = _docs(demo_corpus, 30)
    with _ws(tmp_path, embedded_store_url) as ws:
        finished: list[str] = []
        original = type(ws.store).finish_writes

        def spy(self, name):
            finished.append(name)
            return original(self, name)

        monkeypatch.setattr(type(ws.store), "finish_writes", spy)
        path = write_jsonl(tmp_path / "c.jsonl", docs)
        _build(ws, minilm_path, path)
        # the build's pass wrote (once, not per batch); its catch-up pass found nothing to do
        assert finished == ["docs__v1"]
        assert ws.store.count("docs") == 30
        sync(ws, "docs")
        assert finished == ["docs__v1"]
        write_jsonl(path, docs[3:])
        assert sync(ws, "docs").versions["v1"]["deleted"] == 3
        assert finished == ["docs__v1", "docs__v1"]
        assert ws.store.count("docs") == 27
