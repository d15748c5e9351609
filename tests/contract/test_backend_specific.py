"""Behaviour that only some backends need checked: locks, unreachable servers,
restarts, point ids, collections made outside the tool."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from pathlib import Path

import pytest

from reindexer.adapters import CollectionSpec, Point, open_store
from reindexer.adapters.base import DOC_ID_KEY
from reindexer.errors import BackendUnavailableError, StoreLockedError

SECRET = "sekrit-token-do-not-print-4242"


def unit(i: int, dim: int = 4) -> list[float]:
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


# -- embedded stores held by another process ---------------------------------
def test_qdrant_local_second_opener_is_store_locked(tmp_path: Path) -> None:
    url = f"qdrant+local:{tmp_path / 'q'}"
    with open_store(url):
        with pytest.raises(StoreLockedError) as err:
            open_store(url)
    message = str(err.value)
    assert str(tmp_path / "q") in message
    assert "stop the other process" in message and "server" in message
    assert err.value.exit_code == 4
    # released on close: a new opener succeeds
    with open_store(url) as s:
        assert s.list_collections() == []


def test_milvus_lite_held_elsewhere_is_store_locked(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    db.mkdir()
    # Milvus Lite takes an flock on <db>/LOCK; hold it as another process would.
    fd = os.open(db / "LOCK", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreLockedError) as err:
            open_store(f"milvus+lite:{db}")
        assert str(db) in str(err.value)
        assert "stop the other process" in str(err.value)
    finally:
        os.close(fd)
    with open_store(f"milvus+lite:{db}") as s:
        assert s.list_collections() == []


def test_milvus_lite_releases_its_lock_on_close(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_store(f"milvus+lite:{db}") as s:
        s.create_collection(CollectionSpec("c", dim=4))
    fd = os.open(db / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if still held
    finally:
        os.close(fd)


def _lite_count_raw(db: Path, name: str) -> int:
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))
    try:
        client.load_collection(name)
        return client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    finally:
        client.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(db))


def test_milvus_lite_settles_a_store_killed_inside_its_flush(tmp_path: Path) -> None:
    """A process killed inside Milvus Lite's flush leaves the rows in a data file and in the
    log the flush was about to delete (seen by the crash fuzzer). Made here without a kill:
    the log copied aside before the flush and put back after a clean close."""
    import shutil

    db = tmp_path / "m.db"
    with open_store(f"milvus+lite:{db}") as s:
        s.create_collection(CollectionSpec("c", dim=4))
        s.upsert("c", [Point(f"d{i}", unit(i), {"i": i}) for i in range(8)])
        wal = db / "collections" / "c" / "wal"
        logs = sorted(wal.glob("*.arrow"))
        assert logs, "Milvus Lite keeps a write-ahead log while it runs"
        kept = tmp_path / "kept"
        kept.mkdir()
        for f in logs:
            shutil.copy2(f, kept / f.name)
        s.finish_writes("c")
    assert not list(wal.glob("*.arrow")), "a clean close leaves no log"
    for f in kept.iterdir():
        shutil.copy2(f, wal / f.name)
    crashed = tmp_path / "as-left.db"
    shutil.copytree(db, crashed)
    # What the next process sees without the adapter's repair: every row twice.
    assert _lite_count_raw(crashed, "c") == 16
    with open_store(f"milvus+lite:{db}") as s:
        assert s.count("c") == 8
        ids = [p.doc_id for batch in s.scroll("c") for p in batch]
        assert sorted(ids) == sorted(f"d{i}" for i in range(8))
    with open_store(f"milvus+lite:{db}") as s:  # and stays so
        assert s.count("c") == 8


def test_milvus_lite_finishes_a_collection_its_maker_left_without_an_index(tmp_path: Path) -> None:
    """create_collection makes the collection, then its index: a process killed in between left a
    collection nothing could load (the crash tests saw it). A version the tool made gets its index
    from what it records; an application's collection is left as it is."""
    from reindexer.errors import BackendError

    db = tmp_path / "m.db"
    with open_store(f"milvus+lite:{db}") as s:
        s.create_collection(CollectionSpec("mine", dim=4, metadata={"reindex.metric": "cosine"}))
        s.create_collection(CollectionSpec("theirs", dim=4))
        for name in ("mine", "theirs"):
            s._client.release_collection(name)
            for index in s._client.list_indexes(name):
                s._client.drop_index(name, index)
            assert s._client.list_indexes(name) == []
    with open_store(f"milvus+lite:{db}") as s:
        s.upsert("mine", [Point(f"d{i}", unit(i), {"i": i}) for i in range(4)])
        s.finish_writes("mine")
        assert [h.doc_id for h in s.search("mine", unit(1), 1)] == ["d1"]
        assert s.describe("mine").metric == "cosine"
        with pytest.raises(BackendError, match="no index on its vector field"):
            s.count("theirs")


def test_milvus_lite_creates_a_collection_whose_folder_a_killed_maker_left(tmp_path: Path) -> None:
    """Lite makes collections/NAME/ before it writes schema.json there: a process killed in between
    left a folder Lite refused to create again ("File exists"). Creating that collection now works;
    a folder that holds a collection (its schema written) is never touched."""
    db = tmp_path / "m.db"
    with open_store(f"milvus+lite:{db}") as s:
        s.create_collection(CollectionSpec("kept", dim=4))
        s.upsert("kept", [Point(f"k{i}", unit(i), {"i": i}) for i in range(3)])
        s.finish_writes("kept")
    half = db / "collections" / "shadow"
    half.mkdir()
    (half / "schema.json.tmp").write_text('{"collection_name": "sha')
    with open_store(f"milvus+lite:{db}") as s:
        assert "shadow" not in s.list_collections()
        s.create_collection(CollectionSpec("shadow", dim=4))
        s.upsert("shadow", [Point("d1", unit(1), {"i": 1})])
        s.finish_writes("shadow")
        assert [h.doc_id for h in s.search("shadow", unit(1), 1)] == ["d1"]
        with pytest.raises(Exception, match="already exists"):
            s.create_collection(CollectionSpec("kept", dim=4))
        assert s.count("kept") == 3


# -- unreachable servers -------------------------------------------------------
@pytest.mark.parametrize("url", ["qdrant://127.0.0.1:9", "milvus://127.0.0.1:9"])
def test_unreachable_server_fails_fast(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", SECRET)
    monkeypatch.setenv("MILVUS_TOKEN", SECRET)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as err:
        open_store(url)
    assert time.monotonic() - started < 10
    assert err.value.exit_code == 5
    text = f"{err.value} {err.value!r} {err.value.hint}"
    assert SECRET not in text
    assert "127.0.0.1:9" in text


# -- Qdrant point ids --------------------------------------------------------------
def test_qdrant_point_ids() -> None:
    from reindexer.adapters.qdrant.point_ids import DOC_ID_NAMESPACE, point_id_for

    assert point_id_for("42") == 42
    assert point_id_for("0") == 0
    assert point_id_for("042") == str(uuid.uuid5(DOC_ID_NAMESPACE, "042"))  # not 42: "042" != "42"
    assert point_id_for(str(2**64)) == str(uuid.uuid5(DOC_ID_NAMESPACE, str(2**64)))
    u = "0b7e2c5e-7d0f-4f0e-9a53-3a3c8d1e2f10"
    assert point_id_for(u) == u
    assert point_id_for(u.upper()) == str(uuid.uuid5(DOC_ID_NAMESPACE, u.upper()))
    assert point_id_for("a/b c") == str(uuid.uuid5(DOC_ID_NAMESPACE, "a/b c"))
    assert point_id_for("a/b c") == point_id_for("a/b c")


def test_qdrant_collection_made_outside_the_tool(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "q"
    client = QdrantClient(path=str(folder))
    client.create_collection("legacy", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.upsert(
        "legacy",
        [
            models.PointStruct(id=7, vector=unit(0), payload={"page_content": "seven", "metadata": {"a": 1}}),
            models.PointStruct(id=str(uuid.UUID(int=9)), vector=unit(1), payload={"page_content": "nine"}),
        ],
    )
    client.close()
    with open_store(f"qdrant+local:{folder}") as s:
        info = s.describe("legacy")
        assert (info.dim, info.metric, info.metadata) == (4, "cosine", {})
        points = {p.doc_id: p for page in s.scroll("legacy") for p in page}
        assert set(points) == {"7", str(uuid.UUID(int=9))}
        assert points["7"].payload == {"page_content": "seven", "metadata": {"a": 1}}
        # a doc id read from a point id maps back to the same point
        assert [p.doc_id for p in s.retrieve("legacy", ["7"])] == ["7"]
        assert s.search("legacy", unit(1), k=1)[0].doc_id == str(uuid.UUID(int=9))
        s.upsert("legacy", [Point("7", unit(2), {"page_content": "seven again"})])
        assert s.count("legacy") == 2
        raw = s._client.retrieve("legacy", [7], with_payload=True)
        assert raw[0].payload[DOC_ID_KEY] == "7"


def test_qdrant_local_tagging_leaves_an_applications_vectors_as_stored(tmp_path: Path) -> None:
    """Qdrant local normalises a cosine collection's vectors in the writer's memory but stores them
    as sent, and a payload update persists the memory copy. A tag set by another process (adopt's
    case) therefore keeps every vector bit for bit; the writer's own view differs by a rounding.

    The vectors are unit length in float32 but not fixed points of numpy's normalisation on every
    BLAS kernel, which is what made the clean-clone adopt test fail on one machine and pass on another.
    """
    import numpy as np
    from qdrant_client import QdrantClient, models

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((64, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sent = {str(i): vectors[i].tolist() for i in range(len(vectors))}
    folder = tmp_path / "q"
    client = QdrantClient(path=str(folder))
    client.create_collection("app", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    client.upsert("app", [models.PointStruct(id=int(i), vector=v, payload={"text": i}) for i, v in sent.items()])
    client.close()
    with open_store(f"qdrant+local:{folder}") as s:
        points = [p for page in s.scroll("app") for p in page]
        s.set_payload_key("app", points, "reindex.model", "m@0123456789ab")
    with open_store(f"qdrant+local:{folder}") as s:
        stored = {
            p.doc_id: (list(p.vector), p.payload["reindex.model"])
            for page in s.scroll("app", with_vectors=True)
            for p in page
        }
    assert stored == {i: (v, "m@0123456789ab") for i, v in sent.items()}


def test_qdrant_named_vector_collection(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "q"
    client = QdrantClient(path=str(folder))
    client.create_collection(
        "named", vectors_config={"dense": models.VectorParams(size=4, distance=models.Distance.DOT)}
    )
    client.close()
    with open_store(f"qdrant+local:{folder}") as s:
        assert s.describe("named").metric == "dot"
        s.upsert("named", [Point("a", unit(0), {}), Point("b", unit(1), {})])
        assert [h.doc_id for h in s.search("named", unit(1), k=1)] == ["b"]
        (a,) = s.retrieve("named", ["a"], with_vectors=True)
        assert a.vector == pytest.approx(unit(0))


# -- Milvus --------------------------------------------------------------------------
@pytest.fixture(params=["milvus-lite", pytest.param("milvus-server", marks=pytest.mark.server)])
def milvus_url(request: pytest.FixtureRequest, tmp_path: Path):
    from tests.plugins.stores import _url_for

    yield from _url_for(request, request.param, tmp_path)


def test_milvus_loads_a_released_collection(milvus_url: str) -> None:
    with open_store(milvus_url) as s:
        s.create_collection(CollectionSpec("c", dim=4))
        s.upsert("c", [Point(str(i), unit(i), {"i": i}) for i in range(10)])
        s._client.release_collection("c")
        assert s.count("c") == 10
        assert len([p for page in s.scroll("c", batch_size=3) for p in page]) == 10
        assert s.search("c", unit(1), k=1)[0].doc_id in {"1", "5", "9"}


def test_milvus_collection_made_outside_the_tool(milvus_url: str) -> None:
    from pymilvus import DataType, MilvusClient

    with open_store(milvus_url) as s:
        client = s._client
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=200)
        schema.add_field("emb", DataType.FLOAT_VECTOR, dim=4)
        index = MilvusClient.prepare_index_params()
        index.add_index(field_name="emb", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
        client.create_collection("legacy", schema=schema, index_params=index, consistency_level="Strong")
        client.insert("legacy", [{"pk": i, "text": f"t{i}", "emb": unit(i)} for i in range(6)])

        info = s.describe("legacy")
        assert (info.dim, info.metric, info.metadata) == (4, "euclid", {})
        assert info.index_params.get("hnsw_m", 8) == 8  # Milvus Lite does not report index params
        assert s.count("legacy") == 6
        points = {p.doc_id: p for page in s.scroll("legacy", batch_size=4) for p in page}
        assert set(points) == {str(i) for i in range(6)}
        assert points["3"].payload == {"text": "t3"}
        hits = s.search("legacy", unit(2), k=2, where={"text": "t2"})
        assert [(h.doc_id, h.payload) for h in hits] == [("2", {"text": "t2"})]
        assert hits[0].score == pytest.approx(0.0, abs=1e-5)
        s.upsert("legacy", [Point("2", unit(3), {"text": "two"})])
        assert s.retrieve("legacy", ["2", "not-an-int"])[0].payload == {"text": "two"}
        s.delete("legacy", ["0", "not-an-int"])
        assert s.count("legacy") == 5


def test_milvus_names_follow_the_server_rule(milvus_url: str) -> None:
    from reindexer.errors import NotFoundError, UsageError

    with open_store(milvus_url) as s:
        with pytest.raises(UsageError):
            s.create_collection(CollectionSpec("my-docs", dim=4))
        with pytest.raises(UsageError):
            s.create_collection(CollectionSpec("1docs", dim=4))
        with pytest.raises(NotFoundError):
            s.describe("my-docs")
        with pytest.raises(NotFoundError):
            s.count("my-docs")
        with pytest.raises(UsageError):
            s.set_alias("docs-live", "whatever")
        s.drop_alias("docs-live")
        assert s.get_alias("docs-live") is None


# -- capability flags drive the shared code paths -----------------------------------
def test_payload_indexes_are_built_only_where_the_capability_says(tmp_path: Path) -> None:
    from dataclasses import replace

    with open_store(f"qdrant+local:{tmp_path / 'q'}") as store:
        assert store.capabilities.payload_indexes is False
        calls = []
        store._client.create_payload_index = lambda *a, **kw: calls.append(a)
        store.create_collection(CollectionSpec("a", dim=4, payload_indexes={"k": "keyword"}))
        assert calls == []  # recorded only
        assert store.describe("a").payload_indexes == {"k": "keyword"}
        store.capabilities = replace(store.capabilities, payload_indexes=True)
        store.create_collection(CollectionSpec("b", dim=4, payload_indexes={"k": "keyword"}))
        assert [c[:2] for c in calls] == [("b", "k")]


def test_lock_errors_only_for_embedded_stores(tmp_path: Path) -> None:
    from dataclasses import replace

    from reindexer.errors import BackendError

    with open_store(f"qdrant+local:{tmp_path / 'q'}") as store:
        err = store._held_elsewhere("Qdrant local store in /x", "Qdrant", "qdrant://HOST:PORT")
        assert isinstance(err, StoreLockedError) and "stop the other process" in (err.hint or "")
        store.capabilities = replace(store.capabilities, embedded=False)
        with pytest.raises(BackendError):
            store._held_elsewhere("Qdrant local store in /x", "Qdrant", "qdrant://HOST:PORT")
