"""The spine end to end on each embedded backend: plan, apply, cut-over, rollback, gc, adopt.

A second model version is made for real: the same MiniLM weights under a
Matryoshka truncation to 256 dimensions (a new fingerprint, a new schema).
"""

from __future__ import annotations

import json

import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.config import Config
from reindexer.errors import (
    ConflictError,
    DriftError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from reindexer.model_identity import ModelSettings
from reindexer.planner import Plan, load_plan_file
from reindexer.query import search
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

TRUNCATED = ModelSettings(truncate_dim=256)


@pytest.fixture
def ws(embedded_store_url, tmp_path):
    config = Config(base_dir=tmp_path, store_url=embedded_store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=32)
    with Workspace(config) as workspace:
        yield workspace


def _build_v1(ws, minilm_path, corpus_file):
    p = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                      source=SourceSpec(kind="jsonl", location=str(corpus_file)))
    return p, commands.apply(ws, p)


def _ids(ws, name):
    return {p.doc_id for page in ws.store.scroll(name, batch_size=50) for p in page}


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_new_collection_then_model_change_then_rollback(ws, minilm_path, small_corpus_file, demo_corpus):
    p1, r1 = _build_v1(ws, minilm_path, small_corpus_file)
    assert (p1.mode, r1.cut_over, r1.live) == ("full", True, "docs__v1")
    assert ws.store.resolve("docs") == "docs__v1"
    queries = list(demo_corpus.queries.values())[:5]
    before = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=5)]

    p2 = commands.plan(ws, "docs", model_path=str(minilm_path), settings=TRUNCATED)
    assert p2.mode == "full" and p2.dimension_change
    assert p2.counts["to_embed"] == 60 and p2.from_version["physical"] == "docs__v1"
    r2 = commands.apply(ws, p2)
    assert r2.cut_over and ws.store.resolve("docs") == "docs__v2"
    assert r2.verification["ok"] and r2.verification["sample_min_cosine"] > 0.99

    info = ws.store.describe("docs")
    v2_model = ws.state.get_model(p2.to_version["model_fingerprint"])
    assert info.dim == 256 and info.metadata["reindex.fingerprint"] == v2_model.fingerprint
    assert _ids(ws, "docs__v2") == _ids(ws, "docs__v1") == {d["id"] for d in demo_corpus.documents[:60]}
    tags = {p.payload[MODEL_KEY] for page in ws.store.scroll("docs__v2") for p in page}
    assert tags == {v2_model.short}
    # every payload field reaches the new index untouched
    original = {d["id"]: d for d in demo_corpus.documents[:60]}
    for page in ws.store.scroll("docs__v2"):
        for p in page:
            assert p.payload["meta"] == original[p.doc_id]["meta"]
            assert p.payload["title"] == original[p.doc_id]["title"]

    rb = commands.rollback(ws, "docs")
    assert rb["live"] == "docs__v1" and rb["re_embedded"] == 0
    after = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=5)]
    assert after == before

    back = commands.cutover(ws, "docs", to="v2")
    assert back["live"] == "docs__v2"
    history = commands.history(ws, "docs")
    actions = [e["action"] for e in history["events"]]
    assert actions.count("cutover") == 3 and "rollback" in actions and "apply" in actions


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_status_shows_live_and_shadow(ws, minilm_path, small_corpus_file):
    _build_v1(ws, minilm_path, small_corpus_file)
    p2 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    r2 = commands.apply(ws, p2, cutover=False)
    assert not r2.cut_over and ws.store.resolve("docs") == "docs__v1"
    [row] = commands.status(ws, "docs")
    assert row["live"]["physical"] == "docs__v1" and row["live"]["count"] == 60
    assert row["live"]["tagged_model"].endswith(row["live"]["model"].split("@")[1])
    assert [s["physical"] for s in row["shadows"]] == ["docs__v2"]
    assert row["shadows"][0]["status"] == "verified"
    assert commands.cutover(ws, "docs")["live"] == "docs__v2"


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_gc_keeps_the_newest_retired_versions(ws, minilm_path, small_corpus_file):
    _build_v1(ws, minilm_path, small_corpus_file)
    for dim in (256, 128):
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                         settings=ModelSettings(truncate_dim=dim)))
    assert ws.store.resolve("docs") == "docs__v3"
    r = commands.gc(ws, "docs", keep=1)
    assert r["dropped"] == ["docs__v1"] and r["kept"] == ["docs__v2"]
    assert not ws.store.collection_exists("docs__v1")
    assert ws.state.ledger_count(ws.state.version_by_physical(1, "docs__v1").id) == 0
    assert commands.rollback(ws, "docs")["live"] == "docs__v2"
    with pytest.raises(NotFoundError, match="dropped|no previous"):
        commands.rollback(ws, "docs")


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_plan_is_data_and_applies_from_a_file(ws, minilm_path, small_corpus_file, tmp_path):
    _build_v1(ws, minilm_path, small_corpus_file)
    p = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    path = tmp_path / "plan.json"
    path.write_text(p.to_json())
    loaded = load_plan_file(path)
    assert loaded == p
    assert commands.apply(ws, loaded).live == "docs__v2"
    again = commands.apply(ws, loaded)
    assert "already applied" in again.message


def test_same_model_and_settings_is_a_noop(ws, minilm_path, small_corpus_file):
    _build_v1(ws, minilm_path, small_corpus_file)
    p = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False)
    assert p.mode == "noop"
    assert commands.apply(ws, p).version is None
    assert ws.store.list_collections() == ["docs__v1"]


def test_adopt_tags_a_collection_made_outside(ws, minilm_path, demo_corpus):
    from reindexer.embedding import Embedder

    docs = demo_corpus.documents[:40]
    vectors = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    from reindexer.adapters.base import CollectionSpec

    ws.store.create_collection(CollectionSpec(name="legacy", dim=384))
    ws.store.upsert("legacy", [Point(d["id"], v.tolist(), {"page_content": d["text"], "metadata": {"t": d["title"]}})
                               for d, v in zip(docs, vectors, strict=True)])
    r = commands.adopt(ws, "legacy", str(minilm_path), text_field="page_content")
    assert r["min_cosine"] > 0.99 and r["points_tagged"] == 40
    model = ws.state.find_model(r["model"])
    assert ws.store.describe("legacy").metadata["reindex.fingerprint"] == model.fingerprint
    assert {p.payload[MODEL_KEY] for page in ws.store.scroll("legacy") for p in page} == {model.short}
    [row] = commands.status(ws, "legacy")
    assert row["managed"] and row["live"]["physical"] == "legacy"


def test_adopt_refuses_a_wrong_or_mixed_model(ws, minilm_path, demo_corpus):
    from reindexer.adapters.base import CollectionSpec
    from reindexer.embedding import Embedder

    docs = demo_corpus.documents[:30]
    right = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    other = Embedder(minilm_path).embed_documents([d["title"] for d in docs])  # vectors of other texts
    ws.store.create_collection(CollectionSpec(name="mixed", dim=384))
    points = [Point(d["id"], (right[i] if i % 2 else other[i]).tolist(), {"text": d["text"]})
              for i, d in enumerate(docs)]
    ws.store.upsert("mixed", points)
    with pytest.raises(VerificationError, match="do not match") as exc:
        commands.adopt(ws, "mixed", str(minilm_path))
    assert exc.value.exit_code == 7
    assert ws.state.get_collection(ws.store_url, "mixed") is None
    assert "reindex.fingerprint" not in ws.store.describe("mixed").metadata


# -- bad input: one clear error, a documented exit code, nothing changed --------
# These checks sit above the adapter interface, so one embedded backend is enough; the
# flows above run on both.
@pytest.fixture
def local_ws(tmp_path):
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path}/q", state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=32)
    with Workspace(config) as workspace:
        yield workspace


def _snapshot(ws):
    return sorted(ws.store.list_collections()), dict(ws.store.list_aliases()), len(ws.state.list_models())


def test_unknown_collection(local_ws, minilm_path):
    with pytest.raises(NotFoundError, match="unknown collection 'nope'") as exc:
        commands.plan(local_ws, "nope", model_path=str(minilm_path))
    assert exc.value.exit_code == 3


def test_not_a_model(local_ws, small_corpus_file, tmp_path):
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(UsageError, match="not a sentence-transformers model"):
        commands.plan(local_ws, "docs", model_path=str(tmp_path / "notamodel"),
                      source=SourceSpec(kind="jsonl", location=str(small_corpus_file)))
    assert _snapshot(local_ws) == ([], {}, 0)


def test_text_missing_on_some_points(local_ws, minilm_path, small_corpus_file):
    _build_v1(local_ws, minilm_path, small_corpus_file)
    local_ws.store.upsert("docs__v1", [Point("no-text", [0.1] * 384, {"title": "orphan"})])
    before = _snapshot(local_ws)
    with pytest.raises(UsageError, match="no text") as exc:
        commands.plan(local_ws, "docs", model_path=str(minilm_path), settings=TRUNCATED)
    assert exc.value.exit_code == 2 and "--text-field" in (exc.value.hint or "")
    assert _snapshot(local_ws)[:2] == before[:2]


def test_empty_corpus(local_ws, minilm_path, tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(UsageError, match="no documents"):
        commands.plan(local_ws, "docs", model_path=str(minilm_path),
                      source=SourceSpec(kind="jsonl", location=str(empty)))
    assert _snapshot(local_ws)[:2] == ([], {})


def test_malformed_plan_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_plan_file(bad)
    bad.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(UsageError, match="not a reindexer plan"):
        load_plan_file(bad)
    bad.write_text(json.dumps({"schema": "reindexer.plan/v1", "id": "x"}))
    with pytest.raises(UsageError, match="missing"):
        load_plan_file(bad)


def test_plan_from_another_state_store(local_ws, minilm_path, small_corpus_file, tmp_path):
    p = commands.plan(local_ws, "docs", model_path=str(minilm_path), estimate=False,
                      source=SourceSpec(kind="jsonl", location=str(small_corpus_file)))
    other = Workspace(Config(base_dir=tmp_path, store_url=local_ws.config.store_url,
                             state_url=f"sqlite:///{tmp_path}/other.db"), state=None)
    local_ws.store.close()
    local_ws._store = None
    try:
        with pytest.raises(UsageError, match="another state store"):
            commands.apply(other, p)
        assert other.store.list_collections() == []
    finally:
        other.close()


def test_edited_plan_is_refused(local_ws, minilm_path, small_corpus_file):
    p = commands.plan(local_ws, "docs", model_path=str(minilm_path), estimate=False,
                      source=SourceSpec(kind="jsonl", location=str(small_corpus_file)))
    edited = Plan(**{**p.__dict__, "counts": {**p.counts, "to_embed": 1}})
    with pytest.raises(UsageError, match="edited"):
        commands.apply(local_ws, edited)


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_drifted_plan_is_refused(local_ws, minilm_path, small_corpus_file):
    _build_v1(local_ws, minilm_path, small_corpus_file)
    stale = commands.plan(local_ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    commands.apply(local_ws, commands.plan(local_ws, "docs", model_path=str(minilm_path), estimate=False,
                                           settings=ModelSettings(truncate_dim=128)))
    before = _snapshot(local_ws)
    with pytest.raises(DriftError, match="live_physical") as exc:
        commands.apply(local_ws, stale)
    assert exc.value.exit_code == 4
    assert _snapshot(local_ws) == before


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_cutover_to_a_version_that_is_not_built(local_ws, minilm_path, small_corpus_file, monkeypatch):
    _build_v1(local_ws, minilm_path, small_corpus_file)
    p2 = commands.plan(local_ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    import reindexer.build.shadow as cmd

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "sync_into", crash)
    with pytest.raises(KeyboardInterrupt):
        commands.apply(local_ws, p2)
    monkeypatch.undo()
    with pytest.raises(ConflictError, match="not built") as exc:
        commands.cutover(local_ws, "docs", to="v2")
    assert exc.value.exit_code == 4
    assert local_ws.store.resolve("docs") == "docs__v1"
    with pytest.raises(NotFoundError):
        commands.cutover(local_ws, "docs", to="v9")
    # the interrupted apply resumes and finishes
    resumed = commands.apply(local_ws, commands.latest_unfinished_plan(local_ws, "docs"))
    assert resumed.live == "docs__v2"


def test_rollback_without_a_previous_version(local_ws, minilm_path, small_corpus_file):
    _build_v1(local_ws, minilm_path, small_corpus_file)
    with pytest.raises(NotFoundError, match="no previous version") as exc:
        commands.rollback(local_ws, "docs")
    assert exc.value.exit_code == 3
    assert local_ws.store.resolve("docs") == "docs__v1"


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_migrate_moves_an_adopted_collection_behind_an_alias(ws, minilm_path, demo_corpus):
    from reindexer.adapters.base import CollectionSpec
    from reindexer.embedding import Embedder

    docs = demo_corpus.documents[:30]
    vectors = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    ws.store.create_collection(CollectionSpec(name="kb", dim=384))
    ws.store.upsert("kb", [Point(d["id"], v.tolist(), {"text": d["text"]}) for d, v in zip(docs, vectors, strict=True)])
    commands.adopt(ws, "kb", str(minilm_path))
    p = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    with pytest.raises(ConflictError, match="reindex migrate kb"):
        commands.apply(ws, p)
    assert ws.store.collection_exists("kb")  # the refusal changed nothing applications see
    assert [v.physical_name for v in ws.state.versions(1)] == ["kb"]  # refused before building anything
    r = commands.migrate(ws, "kb")
    assert r["migrated"] and r["copied"] == 30 and r["copied_to"] == "kb__v2"
    assert ws.store.resolve("kb") == "kb__v2" and not ws.store.collection_exists("kb")
    assert r["name_missing_ms"] < 5000
    print(f"migrate on {ws.store.backend}: the name was missing for {r['name_missing_ms']} ms")
    with pytest.raises(DriftError):
        commands.apply(ws, p)  # planned against the old physical collection
    v3 = commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=TRUNCATED)
    assert commands.apply(ws, v3).live == "kb__v3"
    assert commands.rollback(ws, "kb")["live"] == "kb__v2"
