"""The Searcher: answers wholly from one version, follows cut-overs and rollbacks without a restart."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from reindexer import Searcher, ab
from reindexer.adapters.base import MODEL_KEY
from reindexer.errors import NotFoundError, UsageError
from tests.plugins.versions import hit_tags, live_is, swap_under_load


def _queries(demo_corpus, n=12):
    return list(demo_corpus.queries.values())[:n]


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_answers_follow_cutover_and_rollback_with_no_failure_and_no_mixing(two_versions, demo_corpus):
    ws, tags = two_versions
    live_is(ws, "docs", "docs__v1")
    with Searcher("docs", workspace=ws, refresh=0) as searcher:
        def ask(q):
            hits = searcher.search(q, k=5)
            versions = {h.version for h in hits}
            assert len(versions) == 1
            return versions.pop(), hit_tags(hits)

        report = swap_under_load(ws, "docs", ask, hit_tags, tags, _queries(demo_corpus))
        assert report.failures == []
        assert report.mixed == []
        assert report.versions_seen == {"docs__v1", "docs__v2"}
        assert report.answers > 20
        # The previous live model stays warm: both versions' encoders are held, no reload at rollback.
        assert {ws.store.describe(v).metadata["reindex.fingerprint"] for v in tags} <= set(searcher.loaded_models())
        assert searcher.current().physical == "docs__v2" and searcher.current().dim == 128


def test_hits_carry_version_model_and_the_stored_payload(two_versions, demo_corpus):
    ws, tags = two_versions
    live_is(ws, "docs", "docs__v1")
    with Searcher("docs", workspace=ws) as searcher:
        info = searcher.current()
        assert (info.physical, info.dim, info.text_field) == ("docs__v1", 384, "text")
        hits = searcher.search(_queries(demo_corpus, 1)[0], k=3)
        assert len(hits) == 3
        by_id = {d["id"]: d for d in demo_corpus.documents[:60]}
        for h in hits:
            assert h.version == "docs__v1" and h.model == info.model
            assert h.payload[MODEL_KEY] == tags["docs__v1"]
            assert h.payload["text"] == by_id[h.doc_id]["text"] and h.payload["meta"] == by_id[h.doc_id]["meta"]
        batch = searcher.search(_queries(demo_corpus, 3), k=2)
        assert [len(x) for x in batch] == [2, 2, 2]
        assert hits[0].to_dict()["id"] == hits[0].doc_id


def test_topk_equals_the_evaluations_ranking_of_the_same_version(two_versions, demo_corpus):
    ws, _ = two_versions
    lc = ws.state.get_collection(ws.store_url, "docs")
    queries = _queries(demo_corpus, 10)
    for physical in ("docs__v1", "docs__v2"):
        live_is(ws, "docs", physical)
        version = ws.state.version_by_physical(lc.id, physical)
        evaluated = ab.searcher_for(ws, version)(queries, 10)
        with Searcher("docs", workspace=ws) as searcher:
            mine = searcher.search(queries, k=10)
        assert [[h.doc_id for h in hits] for hits in mine] == [[d for d, _ in ranked] for ranked in evaluated]
    # And through `reindex eval` itself: its recorded rankings are the Searcher's.
    qrels = {f"q{i}": {demo_corpus.documents[i]["id"]: 1} for i in range(len(queries))}
    judgements = ab.Judgements({f"q{i}": q for i, q in enumerate(queries)}, qrels, "inline")
    v1, v2 = ws.state.version_by_physical(lc.id, "docs__v1"), ws.state.version_by_physical(lc.id, "docs__v2")
    result = ab.run_evaluation(ws, lc, [v1, v2], judgements, k=10)
    live_is(ws, "docs", "docs__v2")
    with Searcher("docs", workspace=ws) as searcher:
        mine = searcher.search(queries, k=10)
    assert [result.rankings["v2"][f"q{i}"] for i in range(len(queries))] == [[h.doc_id for h in x] for x in mine]


def test_bad_requests_are_usage_errors(two_versions):
    ws, _ = two_versions
    with Searcher("docs", workspace=ws) as searcher:
        for bad in (dict(query=""), dict(query=[]), dict(query="x", k=0), dict(query="x", k="3"),
                    dict(query="x", filter=["a"])):
            with pytest.raises(UsageError):
                searcher.search(**bad)
    with pytest.raises(NotFoundError):
        Searcher("nope", workspace=ws).current()


def test_new_model_loads_off_the_query_path(two_versions, demo_corpus, monkeypatch):
    """A cut-over to a version whose model is not loaded yet: the in-hand version keeps answering
    while the new model loads in the background, then answers switch."""
    import reindexer.searcher as searcher_module

    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    monkeypatch.setattr(searcher_module, "SHADOW_SCAN_INTERVAL_S", 1e9)  # no preloading: the worst case
    import reindexer.embedding as embedding

    embedding._LOADED.clear()
    with Searcher("docs", workspace=ws, refresh=0) as searcher:
        searcher._last_scan = time.monotonic()
        q = _queries(demo_corpus, 1)[0]
        assert searcher.search(q, k=1)[0].version == "docs__v1"
        live_is(ws, "docs", "docs__v2")
        first = searcher.search(q, k=1)[0].version
        deadline = time.monotonic() + 60
        seen = {first}
        while "docs__v2" not in seen and time.monotonic() < deadline:
            seen.add(searcher.search(q, k=1)[0].version)
            time.sleep(0.05)
        assert first == "docs__v1" and "docs__v2" in seen


def test_shadow_model_is_loaded_ahead_of_the_cutover(two_versions, demo_corpus):
    ws, tags = two_versions
    live_is(ws, "docs", "docs__v1")
    v2_fp = ws.store.describe("docs__v2").metadata["reindex.fingerprint"]
    with Searcher("docs", workspace=ws) as searcher:
        searcher.search("anything", k=1)
        deadline = time.monotonic() + 60
        while v2_fp not in searcher.loaded_models() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert v2_fp in searcher.loaded_models()


def test_application_client_is_shared_and_left_open(tmp_path, minilm_path, small_corpus_file):
    """An application that owns an embedded store hands its own client to the Searcher."""
    from qdrant_client import QdrantClient

    from reindexer import commands
    from reindexer.config import Config
    from reindexer.sources.spec import SourceSpec
    from reindexer.workspace import Workspace

    folder = tmp_path / "qdrant"
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{folder}", state_url=f"sqlite:///{tmp_path}/s.db")
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False,
                                         source=SourceSpec(kind="jsonl", location=str(small_corpus_file))))
    client = QdrantClient(path=str(folder))
    try:
        with Searcher("kb", store=client) as searcher:
            assert searcher.search("reset my password", k=2)[0].version == "kb__v1"
            assert searcher.store_url == f"qdrant+local:{folder}"
        assert client.get_aliases().aliases[0].alias_name == "kb"  # still open
    finally:
        client.close()


def test_metadata_alone_rebuilds_the_encoder_on_another_host(tmp_path, minilm_path, small_corpus_file,
                                                            monkeypatch):
    """No state database, the model at another mount (REINDEX_MODELS), checked against its fingerprint."""
    from reindexer import commands
    from reindexer.config import Config
    from reindexer.model_identity import ModelSettings
    from reindexer.sources.spec import SourceSpec
    from reindexer.workspace import Workspace

    url = f"qdrant+local:{tmp_path / 'qdrant'}"
    config = Config(base_dir=tmp_path, store_url=url, state_url=f"sqlite:///{tmp_path}/state.db")
    settings = ModelSettings(truncate_dim=64, query_prompt="query: ", normalize=True)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "kb", model_path=str(minilm_path), estimate=False, settings=settings,
                                         source=SourceSpec(kind="jsonl", location=str(small_corpus_file))))
        with Searcher("kb", workspace=ws, preload_shadow=False) as searcher:
            expected = [h.doc_id for h in searcher.search("printer", k=5)]
        meta = ws.store.describe("kb__v1").metadata
    assert json.loads(meta["reindex.model_settings"])["truncate_dim"] == 64
    assert json.loads(meta["reindex.model_settings"])["query_prompt"] == "query: "
    (tmp_path / "state.db").rename(tmp_path / "elsewhere.db")  # the application has no state database

    mount = tmp_path / "mnt" / "models"
    shutil.copytree(minilm_path, mount / minilm_path.name)
    monkeypatch.setenv("REINDEX_MODELS", f"{minilm_path.parent}={mount}")
    with Searcher("kb", store=url) as searcher:
        assert [h.doc_id for h in searcher.search("printer", k=5)] == expected
        assert searcher.current().dim == 64
    assert not (tmp_path / "state.db").exists() and not (tmp_path / ".reindex").exists()

    # Other bytes at the mount are refused, not used.
    (mount / minilm_path.name / "config.json").write_text(
        (mount / minilm_path.name / "config.json").read_text().replace("}", ', "tampered": true}', 1))
    with pytest.raises(UsageError, match="do not match the fingerprint"), Searcher("kb", store=url) as searcher:
        searcher.search("printer")
    # And a model that is nowhere says where it looked and how to point at it.
    monkeypatch.setenv("REINDEX_MODELS", str(tmp_path / "empty"))
    meta_path = meta["reindex.model_path"]
    monkeypatch.setattr("reindexer.encoders.Path.is_file",
                        lambda self: False if str(self).startswith(meta_path)
                        else (self.exists() and not self.is_dir()))
    with pytest.raises(NotFoundError, match="REINDEX_MODELS"), Searcher("kb", store=url) as searcher:
        searcher.search("printer")


@pytest.mark.server
def test_server_answers_follow_swaps_with_no_failure_and_no_mixing(server_two_versions, demo_corpus):
    """The same loop against the real Milvus server, with a Searcher in its own store connection,
    as an application process would have it."""
    ws, tags = server_two_versions
    with Searcher("qs_docs", store=ws.config.store_url, refresh=0.2) as searcher:
        def ask(q):
            hits = searcher.search(q, k=5)
            versions = {h.version for h in hits}
            assert len(versions) == 1
            return versions.pop(), hit_tags(hits)

        report = swap_under_load(ws, "qs_docs", ask, hit_tags, tags, _queries(demo_corpus))
        assert report.failures == [] and report.mixed == []
        assert report.versions_seen == {"qs_docs__v1", "qs_docs__v2"}


def test_verify_finds_and_fix_restores_the_query_side_metadata(two_versions):
    from reindexer.commands import syncing as sync

    ws, _ = two_versions
    live_is(ws, "docs", "docs__v1")
    good = ws.store.describe("docs__v1").metadata["reindex.model_settings"]
    ws.store.set_metadata("docs__v1", {"reindex.model_settings": json.dumps({"truncate_dim": 32})})
    report = sync.verify(ws, "docs")
    assert not report.ok and any("reindex.model_settings" in p for p in report.before["problems"])
    fixed = sync.verify(ws, "docs", fix=True)
    assert fixed.ok and ws.store.describe("docs__v1").metadata["reindex.model_settings"] == good


def test_versions_tagged_before_settings_were_recorded_fall_back_to_the_state(two_versions):
    from reindexer.encoders import EncoderSpec

    ws, _ = two_versions
    meta = dict(ws.store.describe("docs__v2").metadata)
    for key in ("reindex.model_settings", "reindex.model_name"):
        meta.pop(key)
    spec = EncoderSpec.from_metadata("docs__v2", meta, 128, "cosine", ws.state)
    assert spec.settings.truncate_dim == 128
    with pytest.raises(NotFoundError, match="without its settings"):
        EncoderSpec.from_metadata("docs__v2", meta, 128, "cosine", None)


def test_a_missing_embedded_store_is_not_created(tmp_path):
    with pytest.raises(NotFoundError, match="no store at"):
        Searcher("docs", store=f"qdrant+local:{tmp_path / 'nothing'}")
    with pytest.raises(NotFoundError, match="no store at"):
        Searcher("docs", store=f"milvus+lite:{tmp_path / 'nothing.db'}")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_state_database_is_named_and_not_created(tmp_path):
    from qdrant_client import QdrantClient

    QdrantClient(path=str(tmp_path / "q")).close()
    state = tmp_path / "state" / "state.db"
    with Searcher("docs", store=f"qdrant+local:{tmp_path / 'q'}", state=f"sqlite:///{state}") as searcher:
        # The state is read only for versions tagged before their settings were recorded (above).
        with pytest.raises(NotFoundError, match="no state database"):
            searcher._require_state()
    assert not state.exists() and not state.parent.exists()
