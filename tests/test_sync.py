"""Incremental work: sync, watermarks, shadows kept current, copy mode, verify --fix, rollback after writes."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.commands import sync, verify
from reindexer.config import Config
from reindexer.embedding import Embedder
from reindexer.errors import VerificationError
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

TRUNC = ModelSettings(truncate_dim=256)


@pytest.fixture
def ws(tmp_path):
    # Sync is backend-agnostic above the adapter interface, which the contract suite proves on
    # every backend; one embedded store keeps this file quick.
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path}/q", state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=16)
    with Workspace(config) as workspace:
        yield workspace


@pytest.fixture
def docs(demo_corpus):
    return [dict(d) for d in demo_corpus.documents[:50]]


def _v1(ws, minilm_path, path):
    return commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                            source=SourceSpec(kind="jsonl", location=str(path))))


def _vector(ws, physical, doc_id):
    [p] = ws.store.retrieve(physical, [doc_id], with_vectors=True)
    return np.asarray(p.vector), p.payload


def _count_upserts(ws, monkeypatch):
    calls = []
    original = ws.store.upsert
    monkeypatch.setattr(ws.store, "upsert", lambda name, points: (calls.append(len(points)), original(name, points)))
    return calls


def test_nothing_changed_embeds_and_writes_nothing(ws, minilm_path, docs, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    calls = _count_upserts(ws, monkeypatch)
    r = sync(ws, "docs")
    assert r.versions["v1"] == {"seen": 50, "embedded": 0, "unchanged": 50, "deleted": 0}
    assert calls == []


def test_changed_new_and_deleted_documents(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    docs[0]["text"] = "Completely rewritten: the billing service now restarts itself nightly."
    docs[1]["meta"] = {**docs[1]["meta"], "revision": 99}  # payload-only change still reaches the store
    gone = [docs.pop(2)["id"], docs.pop(2)["id"]]
    docs.append({"id": "brand-new", "text": "A new article about alias swaps.", "title": "new"})
    write_jsonl(path, docs)
    r = sync(ws, "docs")
    assert r.versions["v1"]["embedded"] == 3 and r.versions["v1"]["deleted"] == 2
    assert ws.store.count("docs__v1") == 49
    assert not ws.store.retrieve("docs__v1", gone)
    vector, payload = _vector(ws, "docs__v1", docs[0]["id"])
    fresh = Embedder(minilm_path).embed_documents([docs[0]["text"]])[0]
    assert np.allclose(vector / np.linalg.norm(vector), fresh / np.linalg.norm(fresh), atol=1e-4)
    assert _vector(ws, "docs__v1", docs[1]["id"])[1]["meta"]["revision"] == 99
    assert sync(ws, "docs").versions["v1"]["embedded"] == 0


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_no_delete_keeps_documents_gone_from_the_source(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    write_jsonl(path, docs[:40])
    assert sync(ws, "docs", delete_missing=False).versions["v1"]["deleted"] == 0
    assert ws.store.count("docs__v1") == 50


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_a_built_shadow_receives_the_same_changes_by_its_own_model(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNC,
                         source=SourceSpec(kind="jsonl", location=str(path)))
    commands.apply(ws, plan, cutover=False)
    docs[5]["text"] = "The search service is renamed Osprey in every runbook."
    write_jsonl(path, docs)
    r = sync(ws, "docs")
    assert r.versions["v1"]["embedded"] == 1 and r.versions["v2"]["embedded"] == 1
    v2, payload = _vector(ws, "docs__v2", docs[5]["id"])
    assert v2.shape == (256,) and payload[MODEL_KEY] == plan.to_version["model_fingerprint"][:12]
    fresh = Embedder(minilm_path, TRUNC).embed_documents([docs[5]["text"]])[0]
    assert np.allclose(v2 / np.linalg.norm(v2), fresh / np.linalg.norm(fresh), atol=1e-4)
    assert commands.cutover(ws, "docs")["live"] == "docs__v2"
    assert verify(ws, "docs").ok


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_sql_source_with_an_updated_at_watermark(ws, minilm_path, docs, tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("create table articles (id text primary key, body text, title text, updated_at text)")
    con.executemany("insert into articles values (?, ?, ?, ?)",
                    [(d["id"], d["text"], d["title"], "2026-01-01T00:00:00") for d in docs])
    con.commit()
    spec = SourceSpec(kind="sql", location=f"sqlite:///{db}", query="select id, body, title, updated_at from articles",
                      text_field="body", updated_field="updated_at")
    commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, source=spec))
    first = sync(ws, "docs")
    assert first.versions["v1"]["embedded"] == 0 and first.watermark == "2026-01-01T00:00:00"
    con.execute("update articles set body = 'Rewritten body', updated_at = '2026-02-01T00:00:00' where id = ?",
                (docs[3]["id"],))
    con.commit()
    con.close()
    r = sync(ws, "docs", since="last")
    assert r.since == "2026-01-01T00:00:00" and r.watermark == "2026-02-01T00:00:00"
    assert r.versions["v1"] == {"seen": 1, "embedded": 1, "unchanged": 0, "deleted": 0}
    assert ws.store.count("docs__v1") == 50  # a watermark pass cannot see deletions, so it deletes nothing
    assert _vector(ws, "docs__v1", docs[3]["id"])[1]["body"] == "Rewritten body"


def test_copy_mode_copies_vectors_instead_of_embedding(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, index_params={"hnsw_m": 32})
    assert plan.mode == "copy" and plan.counts["to_copy"] == 50 and plan.counts["to_embed"] == 0
    result = commands.apply(ws, plan)
    assert result.stats["copied"] == 50 and result.stats["embedded"] == 0
    a, _ = _vector(ws, "docs__v1", docs[7]["id"])
    b, _ = _vector(ws, "docs__v2", docs[7]["id"])
    assert np.allclose(a, b, atol=1e-6)
    assert ws.store.describe("docs__v2").index_params.get("hnsw_m") == 32


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_verify_finds_and_fix_repairs(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    ws.store.delete("docs__v1", [docs[0]["id"], docs[1]["id"]])
    [p] = ws.store.retrieve("docs__v1", [docs[2]["id"]], with_vectors=True)
    ws.store.upsert("docs__v1", [Point(p.doc_id, p.vector, {**p.payload, MODEL_KEY: "someothermodl"})])
    ws.store.upsert("docs__v1", [Point("stray", p.vector, {"text": "not in the source"})])
    r = verify(ws, "docs", source=SourceSpec(kind="jsonl", location=str(path)))
    assert not r.ok
    problems = " ".join(r.before["problems"])
    assert "not the store" in problems and "another model" in problems and "stray" in problems
    fixed = verify(ws, "docs", fix=True, source=SourceSpec(kind="jsonl", location=str(path)))
    assert fixed.fixed and fixed.ok
    assert ws.store.count("docs__v1") == 50 and not ws.store.retrieve("docs__v1", ["stray"])


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_rollback_re_embeds_documents_changed_since_the_cutover(ws, minilm_path, docs, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNC))
    # an application writes through the alias with the live (v2) model after the cut-over
    text = "Written after the cut-over: the desktop sync app is called Kestrel."
    v2_vec = Embedder(minilm_path, TRUNC).embed_documents([text])[0]
    ws.store.upsert("docs", [Point("after-cutover", v2_vec.tolist(), {"text": text, "title": "late"})])
    r = commands.rollback(ws, "docs")
    assert r["live"] == "docs__v1" and r["re_embedded"] == 1
    v1_vec, payload = _vector(ws, "docs__v1", "after-cutover")
    assert v1_vec.shape == (384,) and payload["text"] == text
    fresh = Embedder(minilm_path).embed_documents([text])[0]
    assert np.allclose(v1_vec / np.linalg.norm(v1_vec), fresh / np.linalg.norm(fresh), atol=1e-4)


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_apply_catches_up_documents_changed_during_the_build(ws, minilm_path, docs, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNC,
                         source=SourceSpec(kind="jsonl", location=str(path)))
    import reindexer.build.shadow as cmd

    real = cmd.sync_into
    passes = []

    def sync_then_edit(*args, **kwargs):
        stats = real(*args, **kwargs)
        passes.append(stats)
        if len(passes) == 1:  # the source changes while the first pass runs
            changed = [dict(d) for d in docs[1:]] + [{"id": "late", "text": "Added during the build."}]
            changed[0]["text"] = "Edited during the build."
            write_jsonl(path, changed)
        return stats

    monkeypatch.setattr(cmd, "sync_into", sync_then_edit)
    result = commands.apply(ws, plan)
    assert len(passes) == 3 and passes[1].embedded == 2 and passes[1].deleted == 1 and passes[2].changed == 0
    assert result.verification["ok"] and result.live == "docs__v2"
    ids = {p.doc_id for page in ws.store.scroll("docs__v2") for p in page}
    assert "late" in ids and docs[0]["id"] not in ids and len(ids) == 50


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_unverifiable_shadow_is_not_promoted(ws, minilm_path, docs, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    _v1(ws, minilm_path, path)
    plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, settings=TRUNC)
    import reindexer.commands.applying as cmd

    real = cmd.verify_version

    def tamper(ws_, lc, version, *args, **kwargs):
        ws_.store.delete(version.physical_name, [docs[0]["id"]])
        return real(ws_, lc, version, *args, **kwargs)

    monkeypatch.setattr(cmd, "verify_version", tamper)
    with pytest.raises(VerificationError) as exc:
        commands.apply(ws, plan)
    assert exc.value.exit_code == 7
    assert ws.store.resolve("docs") == "docs__v1"
