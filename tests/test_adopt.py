"""Adopting collections that applications made, with their own schemas: all or nothing, and undoable.

The collections are built here the way the frameworks build them by default,
through the backends' own clients: on Milvus an auto-id INT64 primary key
``pk``, typed ``text`` and ``vector`` fields, no dynamic field and the L2
metric (langchain-milvus); on Qdrant a named dense vector beside a sparse
one (hybrid search). Vectors come from the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY
from reindexer.commands import verify
from reindexer.config import Config
from reindexer.embedding import Embedder
from reindexer.errors import ConflictError, UsageError, VerificationError
from reindexer.model_identity import ModelSettings
from reindexer.workspace import Workspace

# Milvus Lite and the real model: 30-100 s a test on a shared machine, so out of make test-fast.
pytestmark = pytest.mark.slow

N = 24


@pytest.fixture(scope="module")
def texts(demo_corpus) -> list[str]:
    return [d["text"] for d in demo_corpus.documents[:N]]


@pytest.fixture(scope="module")
def vectors(minilm_path, texts):
    return Embedder(minilm_path).embed_documents(texts)


def _ws(tmp_path: Path, store_url: str) -> Workspace:
    return Workspace(Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                            batch_size=10))


def _langchain_milvus_default(client, name: str, texts, vectors) -> None:
    """What langchain-milvus makes with its defaults (auto_id, no dynamic field, L2, HNSW)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
    schema.add_field("text", DataType.VARCHAR, max_length=65535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("source", DataType.VARCHAR, max_length=64)
    index = MilvusClient.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.insert(name, [{"text": t, "vector": v.tolist(), "source": f"s{i % 3}"}
                         for i, (t, v) in enumerate(zip(texts, vectors, strict=True))])


def _milvus_rows(client, name: str) -> list[dict]:
    rows = client.query(name, filter="pk >= 0", output_fields=["pk", "text", "source"], consistency_level="Strong")
    return sorted(rows, key=lambda r: r["pk"])


def _state_bytes(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.glob("state.db*")) if not p.name.endswith("-shm")}


@pytest.fixture
def milvus_ws(tmp_path):
    with _ws(tmp_path, f"milvus+lite:{tmp_path}/m.db") as ws:
        yield ws


def test_a_failing_adopt_leaves_state_and_store_byte_for_byte(milvus_ws, tmp_path, minilm_path, texts, vectors):
    client = milvus_ws.store._client
    _langchain_milvus_default(client, "kb", texts, vectors)
    rows, properties = _milvus_rows(client, "kb"), client.describe_collection("kb")["properties"]
    milvus_ws.state.list_models()  # the state file exists and is settled before the snapshot
    before = _state_bytes(tmp_path)

    # The right weights, but the 256-dimension truncation: refused before anything is written.
    with pytest.raises(VerificationError, match="384-dimensional") as exc:
        commands.adopt(milvus_ws, "kb", str(minilm_path), settings=ModelSettings(truncate_dim=256))
    assert exc.value.exit_code == 7
    # A model that did not make these vectors (texts cut to 8 tokens): refused by the sample.
    with pytest.raises(VerificationError, match="do not match"):
        commands.adopt(milvus_ws, "kb", str(minilm_path), settings=ModelSettings(max_seq_length=8))

    assert _state_bytes(tmp_path) == before
    assert milvus_ws.state.get_collection(milvus_ws.store_url, "kb") is None
    assert milvus_ws.state.history("kb") == []
    assert _milvus_rows(client, "kb") == rows
    assert client.describe_collection("kb")["properties"] == properties


def test_adopt_of_langchain_milvus_defaults_tags_the_collection(milvus_ws, minilm_path, texts, vectors):
    client = milvus_ws.store._client
    _langchain_milvus_default(client, "kb", texts, vectors)
    rows = _milvus_rows(client, "kb")

    r = commands.adopt(milvus_ws, "kb", str(minilm_path))
    assert (r["tag"], r["points_tagged"], r["version"]) == ("collection", 0, 1)
    model = milvus_ws.state.find_model(r["model"])
    assert milvus_ws.store.describe("kb").metadata["reindex.fingerprint"] == model.fingerprint
    assert _milvus_rows(client, "kb") == rows  # not one point rewritten
    assert milvus_ws.state.ledger_count(milvus_ws.state.versions(
        milvus_ws.state.get_collection(milvus_ws.store_url, "kb").id)[0].id) == N
    assert verify(milvus_ws, "kb").ok
    # The application goes on writing its own way: the schema is still its own.
    client.insert("kb", [{"text": "one more", "vector": vectors[0].tolist(), "source": "s9"}])
    assert client.query("kb", filter='source == "s9"', output_fields=["pk"], consistency_level="Strong")
    [event] = [e for e in milvus_ws.state.history("kb") if e.action == "adopt"]
    assert event.detail["tag"] == "collection"


def test_forget_then_adopt_again(milvus_ws, minilm_path, texts, vectors):
    client = milvus_ws.store._client
    _langchain_milvus_default(client, "kb", texts, vectors)
    commands.adopt(milvus_ws, "kb", str(minilm_path))
    with pytest.raises(ConflictError, match="already managed") as exc:
        commands.adopt(milvus_ws, "kb", str(minilm_path))
    assert "reindex forget kb" in exc.value.hint

    refused = commands.forget(milvus_ws, "kb", confirm=lambda _: False)
    assert not refused["forgotten"] and milvus_ws.state.get_collection(milvus_ws.store_url, "kb") is not None

    r = commands.forget(milvus_ws, "kb")
    assert r == {"collection": "kb", "forgotten": True, "versions": ["kb"], "left_in_store": ["kb"]}
    assert milvus_ws.state.get_collection(milvus_ws.store_url, "kb") is None
    assert milvus_ws.store.count("kb") == N
    assert [e.action for e in milvus_ws.state.history("kb")][:2] == ["forget", "adopt"]

    again = commands.adopt(milvus_ws, "kb", str(minilm_path))
    assert again["version"] == 1 and verify(milvus_ws, "kb").ok


def test_adopt_keeps_the_sparse_vectors_of_a_hybrid_qdrant_collection(tmp_path, minilm_path, texts, vectors):
    from qdrant_client import models

    with _ws(tmp_path, f"qdrant+local:{tmp_path}/q") as ws:
        client = ws.store._client
        client.create_collection(
            "hybrid", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
            sparse_vectors_config={"sparse": models.SparseVectorParams()})
        sparse = {i: models.SparseVector(indices=[i, 100 + i], values=[0.5, 1.5]) for i in range(N)}
        client.upsert("hybrid", [models.PointStruct(id=i, vector={"dense": v.tolist(), "sparse": sparse[i]},
                                                    payload={"text": t})
                                 for i, (t, v) in enumerate(zip(texts, vectors, strict=True))])
        r = commands.adopt(ws, "hybrid", str(minilm_path))
        assert (r["tag"], r["points_tagged"]) == ("point", N)
        points = client.retrieve("hybrid", ids=list(range(N)), with_vectors=True, with_payload=True)
        assert {p.id: p.vector["sparse"] for p in points} == sparse
        assert {p.payload[MODEL_KEY] for p in points} == {ws.state.find_model(r["model"]).short}
        assert verify(ws, "hybrid").ok


@pytest.mark.server
def test_langchain_milvus_defaults_on_the_milvus_server(milvus_server, tmp_path, minilm_path, texts, vectors):
    """Adopt on a real server; migrate refuses up front where the server cannot keep auto-id keys (before 2.6)."""
    import uuid

    from pymilvus import MilvusClient

    name = f"kb_{uuid.uuid4().hex[:8]}"
    client = MilvusClient(uri=milvus_server.uri)
    try:
        _langchain_milvus_default(client, name, texts, vectors)
        rows = _milvus_rows(client, name)
        with _ws(tmp_path, milvus_server.url) as ws:
            original = ws.store.read_schema(name)
            assert commands.adopt(ws, name, str(minilm_path))["tag"] == "collection"
            assert verify(ws, name).ok
            if ws.store._explicit_auto_ids():
                assert commands.migrate(ws, name)["migrated"]
                assert original.differences(ws.store.read_schema(f"{name}__v2")) == []
            else:  # the 2.3.5 test server: refused before anything is written
                lc = ws.state.get_collection(ws.store_url, name)
                with pytest.raises(UsageError, match="auto-id primary key") as exc:
                    commands.migrate(ws, name)
                assert exc.value.exit_code == 2
                assert [v.physical_name for v in ws.state.versions(lc.id)] == [name]
                assert sorted(c for c in client.list_collections() if c.startswith(name)) == [name]
            assert _milvus_rows(client, name) == rows
            client.insert(name, [{"text": "one more", "vector": vectors[0].tolist(), "source": "s9"}])
            assert len(_milvus_rows(client, name)) == N + 1
    finally:
        for alias in client.list_aliases().get("aliases", []):
            if alias.startswith(name):
                client.drop_alias(alias)
        for c in client.list_collections():
            if c.startswith(name):
                client.drop_collection(c)
        client.close()
