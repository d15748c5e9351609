"""The contract every vector store meets, run on each backend the machine offers.

Each test gets a fresh, empty store (see tests/plugins/stores.py) and asserts
behaviour the rest of the tool relies on: document ids of any shape, payloads
that round-trip untouched, exact counts, complete scrolls, atomic alias swaps,
and errors mapped into reindexer's own tree.
"""

from __future__ import annotations

import math
import uuid

import pytest

from reindexer.adapters import CollectionSpec, Point, open_store, parse_store_url
from reindexer.adapters.base import DOC_ID_KEY, MODEL_KEY, VectorStore
from reindexer.errors import ConflictError, NotFoundError, UsageError

ODD_IDS = ["a/b c", "42", str(uuid.UUID(int=7)), "é ü", 'quote"d', "back\\slash", "new\nline", "0042"]


def spec(name: str, dim: int = 4, metric: str = "dot", **kw) -> CollectionSpec:
    return CollectionSpec(name=name, dim=dim, metric=metric, **kw)


def unit(i: int, dim: int = 4) -> list[float]:
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


def payload_for(i: int) -> dict:
    return {
        "text": f"document {i}",
        "n": {"x": [1, i], "y": {"z": "w", "flag": i % 2 == 0}},
        MODEL_KEY: "minilm@0123456789ab",
    }


def test_capabilities(store: VectorStore, store_url: str) -> None:
    caps = store.capabilities
    location = parse_store_url(store_url)
    assert store.backend == location.backend
    # The tool cuts over by alias swap and keeps each version's model in its metadata.
    assert caps.atomic_alias_swap is True
    assert caps.collection_metadata is True
    # A store held by one process is always one in a folder; pgvector+local is a folder that processes
    # share (pgserver's server), so it is not held.
    assert caps.embedded is (location.embedded and store.backend != "pgvector")
    if store.backend in ("qdrant", "milvus"):
        # Qdrant local mode ignores payload indexes; Milvus cannot index dynamic fields.
        assert caps.payload_indexes is (store.backend == "qdrant" and not caps.embedded)


def test_create_and_describe_round_trip(store: VectorStore) -> None:
    metadata = {"reindex.model": "minilm@0123456789ab", "reindex.dim": "8", "note": "é ü / \"quoted\""}
    indexes = {"category": "keyword", "year": "integer", "text": "text"}
    params = {"hnsw_m": 8, "hnsw_ef_construct": 64}
    store.create_collection(
        spec("docs__v1", dim=8, metric="cosine", metadata=metadata, payload_indexes=indexes, index_params=params)
    )
    info = store.describe("docs__v1")
    assert info.name == "docs__v1"
    assert info.dim == 8
    assert info.metric == "cosine"
    assert info.metadata == metadata
    assert info.payload_indexes == indexes
    assert info.index_params == params
    assert store.list_collections() == ["docs__v1"]
    assert store.collection_exists("docs__v1")
    assert not store.collection_exists("docs__v2")
    assert store.count("docs__v1") == 0


def test_scalar_quantization_and_shards_are_accepted(store: VectorStore) -> None:
    params = {"quantization": "scalar", "shards": 2, "hnsw_m": 16}
    store.create_collection(spec("q", dim=8, metric="euclid", index_params=params))
    assert store.describe("q").index_params == params
    store.upsert("q", [Point(str(i), unit(i, 8), {}) for i in range(20)])
    hits = store.search("q", unit(3, 8), k=1)
    assert hits[0].doc_id in {"3", "11", "19"}


def test_bad_specs_are_usage_errors(store: VectorStore) -> None:
    with pytest.raises(UsageError):
        store.create_collection(spec("x", payload_indexes={"a": "geo-shape"}))
    with pytest.raises(UsageError):
        store.create_collection(spec("x", index_params={"hnsw_mm": 8}))
    with pytest.raises(UsageError):
        store.create_collection(spec("x", index_params={"quantization": "binary"}))
    assert store.list_collections() == []


def test_set_metadata_merges(store: VectorStore) -> None:
    store.create_collection(
        spec("c", metadata={"a": "1", "b": "2"}, payload_indexes={"k": "keyword"}, index_params={"hnsw_m": 8})
    )
    store.set_metadata("c", {"b": "20", "c": "30"})
    info = store.describe("c")
    assert info.metadata == {"a": "1", "b": "20", "c": "30"}
    # the tool's own keys survive a merge
    assert info.payload_indexes == {"k": "keyword"}
    assert info.index_params == {"hnsw_m": 8}
    with pytest.raises(UsageError):
        store.set_metadata("c", {"n": 1})  # type: ignore[dict-item]


def test_create_existing_is_a_conflict(store: VectorStore) -> None:
    store.create_collection(spec("c"))
    with pytest.raises(ConflictError):
        store.create_collection(spec("c"))
    with pytest.raises(ConflictError):
        store.create_collection(spec("c", dim=8, metric="euclid"))  # different settings, same name
    assert store.describe("c").dim == 4


def test_upsert_count_retrieve_round_trip(store: VectorStore) -> None:
    store.create_collection(spec("c", dim=4, metric="dot"))
    points = [Point(doc_id, [0.1 * i, -0.5, 1.0 / (i + 1), 3.0], payload_for(i)) for i, doc_id in enumerate(ODD_IDS)]
    # payload keys that collide with a backend's own field names still round-trip
    points[0].payload.update({"id": "payload id", "vector": "not a vector", "page_content": "text"})
    store.upsert("c", points)
    assert store.count("c") == len(ODD_IDS)

    got = {p.doc_id: p for p in store.retrieve("c", ODD_IDS + ["missing"], with_vectors=True)}
    assert set(got) == set(ODD_IDS)
    for p in points:
        back = got[p.doc_id]
        assert back.payload == p.payload  # exactly as stored: MODEL_KEY kept, DOC_ID_KEY hidden
        assert DOC_ID_KEY not in back.payload
        assert back.vector is not None
        assert back.vector == pytest.approx(p.vector, abs=1e-6)

    without = store.retrieve("c", ["42"])
    assert len(without) == 1 and without[0].vector is None and without[0].payload == points[1].payload
    assert store.retrieve("c", []) == []
    assert store.retrieve("c", ["nope"]) == []


def test_cosine_vectors_round_trip_in_direction(store: VectorStore) -> None:
    # Qdrant normalises vectors under the cosine metric; the direction survives.
    store.create_collection(spec("c", dim=3, metric="cosine"))
    store.upsert("c", [Point("a", [3.0, 4.0, 0.0], {})])
    (back,) = store.retrieve("c", ["a"], with_vectors=True)
    norm = math.sqrt(sum(x * x for x in back.vector))
    assert [x / norm for x in back.vector] == pytest.approx([0.6, 0.8, 0.0], abs=1e-5)


def test_upsert_replaces(store: VectorStore) -> None:
    store.create_collection(spec("c"))
    store.upsert("c", [Point("a", unit(0), {"v": 1, "old": True}), Point("b", unit(1), {"v": 1})])
    store.upsert("c", [Point("a", unit(2), {"v": 2})])
    assert store.count("c") == 2
    (a,) = store.retrieve("c", ["a"], with_vectors=True)
    assert a.payload == {"v": 2}
    assert a.vector == pytest.approx(unit(2))
    # the same id twice in one batch: the last one wins, one point
    store.upsert("c", [Point("d", unit(0), {"v": 1}), Point("d", unit(1), {"v": 2})])
    assert store.count("c") == 3
    assert store.retrieve("c", ["d"])[0].payload == {"v": 2}


def test_delete_including_unknown_ids(store: VectorStore) -> None:
    store.create_collection(spec("c"))
    store.upsert("c", [Point(d, unit(i), {"i": i}) for i, d in enumerate(ODD_IDS)])
    store.delete("c", ["a/b c", "42", "never-existed", "new\nline"])
    assert store.count("c") == len(ODD_IDS) - 3
    assert {p.doc_id for p in store.retrieve("c", ODD_IDS)} == set(ODD_IDS) - {"a/b c", "42", "new\nline"}
    store.delete("c", ["never-existed"])
    store.delete("c", [])
    assert store.count("c") == len(ODD_IDS) - 3


def test_finish_writes_keeps_every_point_and_later_writes_land(store: VectorStore) -> None:
    def ring(i: int) -> list[float]:  # one direction per point: the best match of each is itself
        return [math.cos(i / 3), math.sin(i / 3), 0.0, 0.0]

    store.create_collection(spec("c"))
    store.upsert("c", [Point(d, ring(i), {"i": i}) for i, d in enumerate(ODD_IDS)])
    store.delete("c", ["42"])
    store.finish_writes("c")
    assert store.count("c") == len(ODD_IDS) - 1
    assert {p.doc_id for page in store.scroll("c") for p in page} == set(ODD_IDS) - {"42"}
    assert store.search("c", ring(2), k=1)[0].doc_id == ODD_IDS[2]
    # a pass after it: its writes and deletions count as before, and a second finish keeps them
    store.upsert("c", [Point("42", ring(1), {"i": 42}), Point("a/b c", ring(0), {"i": -1})])
    store.delete("c", [ODD_IDS[-1]])
    store.finish_writes("c")
    assert store.count("c") == len(ODD_IDS) - 1
    assert store.retrieve("c", ["a/b c"])[0].payload == {"i": -1}
    assert store.retrieve("c", [ODD_IDS[-1]]) == []
    assert store.search("c", ring(1), k=1)[0].doc_id == "42"


def test_scroll_covers_every_id_once(store: VectorStore) -> None:
    store.create_collection(spec("c"))
    ids = [f"doc-{(i * 7919) % 1000:04d}" for i in range(1000)]  # not in key order
    for start in range(0, 1000, 256):
        store.upsert("c", [Point(d, unit(i), {"i": i}) for i, d in enumerate(ids[start : start + 256], start)])
    pages = list(store.scroll("c", batch_size=128))
    assert len(pages) >= 8
    assert all(0 < len(page) <= 128 for page in pages)
    seen = [p.doc_id for page in pages for p in page]
    assert len(seen) == 1000 and set(seen) == set(ids)
    assert all(p.vector is None for page in pages for p in page)
    first = pages[0][0]
    assert first.payload == {"i": ids.index(first.doc_id)}

    with_vectors = [p for page in store.scroll("c", batch_size=300, with_vectors=True) for p in page]
    assert len(with_vectors) == 1000
    assert all(p.vector is not None and len(p.vector) == 4 for p in with_vectors)


def test_scroll_of_an_empty_collection(store: VectorStore) -> None:
    store.create_collection(spec("c"))
    assert list(store.scroll("c")) == []


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclid"])
def test_search_order_and_scores(store: VectorStore, metric: str) -> None:
    store.create_collection(spec("c", dim=2, metric=metric))
    assert store.describe("c").metric == metric
    store.upsert(
        "c",
        [
            Point("near", [1.0, 0.1], {"rank": 1}),
            Point("mid", [0.6, 0.6], {"rank": 2}),
            Point("far", [-1.0, 0.2], {"rank": 3}),
        ],
    )
    hits = store.search("c", [1.0, 0.0], k=3)
    assert [h.doc_id for h in hits] == ["near", "mid", "far"]
    assert hits[0].payload == {"rank": 1}
    scores = [h.score for h in hits]
    expected = {
        # Euclidean distance, lower is better
        "euclid": [0.1, math.sqrt(0.52), math.sqrt(4.04)],
        # inner product, higher is better
        "dot": [1.0, 0.6, -1.0],
        # cosine similarity, higher is better
        "cosine": [1 / math.sqrt(1.01), 1 / math.sqrt(2), -1 / math.sqrt(1.04)],
    }[metric]
    assert scores == pytest.approx(expected, abs=1e-3)
    assert [h.doc_id for h in store.search("c", [1.0, 0.0], k=1)] == ["near"]


def test_search_where_filters_on_payload(store: VectorStore) -> None:
    store.create_collection(spec("c", payload_indexes={"lang": "keyword"}))
    store.upsert(
        "c",
        [
            Point(
                f"d{i}",
                unit(0) if i < 5 else unit(1),
                {
                    "lang": "en" if i % 2 else "fr",
                    "year": 2000 + i,
                    "even": i % 2 == 0,
                    "weight": i / 4,
                    "meta": {"src": "wiki" if i < 3 else "web"},
                },
            )
            for i in range(10)
        ],
    )
    hits = store.search("c", unit(0), k=10, where={"lang": "fr"})
    assert {h.doc_id for h in hits} == {"d0", "d2", "d4", "d6", "d8"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.payload["lang"] == "fr" for h in hits)
    hits = store.search("c", unit(1), k=10, where={"lang": "en", "year": 2007})
    assert [h.doc_id for h in hits] == ["d7"]
    hits = store.search("c", unit(0), k=10, where={"meta.src": "wiki"})
    assert {h.doc_id for h in hits} == {"d0", "d1", "d2"}
    assert {h.doc_id for h in store.search("c", unit(0), k=10, where={"even": False, "meta.src": "web"})} == {
        "d3", "d5", "d7", "d9"
    }
    assert [h.doc_id for h in store.search("c", unit(0), k=10, where={"weight": 1.5})] == ["d6"]
    assert store.search("c", unit(0), k=10, where={"lang": "de"}) == []
    with pytest.raises(UsageError):
        store.search("c", unit(0), k=3, where={"lang": ["en", "fr"]})


def test_aliases(store: VectorStore) -> None:
    store.create_collection(spec("docs__v1", metadata={"reindex.version": "1"}))
    store.create_collection(spec("docs__v2", metadata={"reindex.version": "2"}))
    store.upsert("docs__v1", [Point("one", unit(0), {"v": 1})])
    store.upsert("docs__v2", [Point("two", unit(0), {"v": 2}), Point("three", unit(1), {"v": 2})])

    assert store.get_alias("docs") is None
    assert store.resolve("docs") is None
    store.set_alias("docs", "docs__v1")
    assert store.list_aliases() == {"docs": "docs__v1"}
    assert store.list_collections() == ["docs__v1", "docs__v2"]  # aliases excluded
    assert not store.collection_exists("docs")
    assert store.resolve("docs") == "docs__v1"
    assert store.resolve("docs__v2") == "docs__v2"
    assert store.describe("docs").metadata == {"reindex.version": "1"}
    assert [h.doc_id for h in store.search("docs", unit(0), k=5)] == ["one"]
    assert store.count("docs") == 1

    store.set_alias("docs", "docs__v2")  # repoint in one step
    assert store.get_alias("docs") == "docs__v2"
    assert store.describe("docs").metadata == {"reindex.version": "2"}
    assert [h.doc_id for h in store.search("docs", unit(0), k=1)] == ["two"]
    assert store.count("docs") == 2
    store.set_alias("docs", "docs__v2")  # already there: nothing to do
    assert store.list_aliases() == {"docs": "docs__v2"}

    with pytest.raises(ConflictError):
        store.set_alias("docs__v1", "docs__v2")  # an alias cannot take a collection's name
    with pytest.raises(ConflictError):
        store.create_collection(spec("docs"))  # nor a collection an alias's
    with pytest.raises(NotFoundError):
        store.set_alias("other", "docs__v9")
    with pytest.raises(ConflictError):
        store.drop_collection("docs__v2")  # still aliased
    assert store.count("docs__v2") == 2

    store.drop_alias("docs")
    store.drop_alias("docs")  # a missing alias is not an error
    assert store.list_aliases() == {}
    store.drop_collection("docs__v2")
    assert store.list_collections() == ["docs__v1"]


def test_replacing_a_collection_by_an_alias_is_all_or_nothing(store: VectorStore) -> None:
    """migrate's last step: where the store does it in one step, the name ends an alias of the copy and the
    original is gone; where it cannot (False), nothing changed and the caller drops and aliases itself."""
    store.create_collection(spec("kb"))
    store.upsert("kb", [Point("old", unit(0), {"v": 1})])
    store.create_collection(spec("kb__v2"))
    store.upsert("kb__v2", [Point("new", unit(0), {"v": 2})])
    if store.replace_by_alias("kb", "kb__v2"):
        assert store.list_aliases() == {"kb": "kb__v2"} and store.list_collections() == ["kb__v2"]
        assert [h.doc_id for h in store.search("kb", unit(0), k=3)] == ["new"]
    else:
        assert store.list_aliases() == {} and store.list_collections() == ["kb", "kb__v2"]
        assert [h.doc_id for h in store.search("kb", unit(0), k=3)] == ["old"]


def test_second_alias_and_listing(store: VectorStore) -> None:
    store.create_collection(spec("a__v1"))
    store.set_alias("a", "a__v1")
    store.set_alias("a_canary", "a__v1")
    assert store.list_aliases() == {"a": "a__v1", "a_canary": "a__v1"}
    with pytest.raises(ConflictError) as err:
        store.drop_collection("a__v1")
    assert "a_canary" in str(err.value)


def test_missing_collection_is_not_found(store: VectorStore) -> None:
    calls = {
        "describe": lambda: store.describe("nope"),
        "count": lambda: store.count("nope"),
        "upsert": lambda: store.upsert("nope", [Point("a", unit(0), {})]),
        "delete": lambda: store.delete("nope", ["a"]),
        "retrieve": lambda: store.retrieve("nope", ["a"]),
        "scroll": lambda: list(store.scroll("nope")),
        "search": lambda: store.search("nope", unit(0), k=3),
        "set_metadata": lambda: store.set_metadata("nope", {"a": "b"}),
        "drop_collection": lambda: store.drop_collection("nope"),
    }
    for what, call in calls.items():
        with pytest.raises(NotFoundError):
            call()
            pytest.fail(f"{what} on a missing collection did not raise")
    assert store.resolve("nope") is None
    assert store.get_alias("nope") is None


def test_closed_store_refuses(store_url: str) -> None:
    s = open_store(store_url)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(Exception) as err:
        s.list_collections()
    assert "closed" in str(err.value)


def test_embedded_store_persists_across_reopen(embedded_store_url: str) -> None:
    with open_store(embedded_store_url) as s:
        s.create_collection(spec("c", metadata={"reindex.model": "m@1"}, payload_indexes={"k": "keyword"}))
        s.upsert("c", [Point(d, unit(i), {"k": d}) for i, d in enumerate(ODD_IDS)])
        s.set_alias("live", "c")
    with open_store(embedded_store_url) as s:
        info = s.describe("live")
        assert info.metadata == {"reindex.model": "m@1"}
        assert info.payload_indexes == {"k": "keyword"}
        assert s.count("c") == len(ODD_IDS)
        assert s.list_aliases() == {"live": "c"}
        assert {p.doc_id for page in s.scroll("c") for p in page} == set(ODD_IDS)
