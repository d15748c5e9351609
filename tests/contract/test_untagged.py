"""``scroll_untagged`` on every backend: the points an application wrote, found by the store.

The catch-up before every alias swap (reindexer.build.catchup) reads only these, so a point
left out here is an application's write lost at the next cut-over or rollback: every
point without the tag, or with another value, comes exactly once, and no tagged one.
The interface's default (a full scroll filtered in Python, what a third-party backend
gets) must give the same answer as each adapter's own filter.
"""

from __future__ import annotations

import pytest

from reindexer.adapters import CollectionSpec, Point
from reindexer.adapters.base import MODEL_KEY, VectorStore
from reindexer.errors import NotFoundError, UsageError
from tests.contract.test_contract import ODD_IDS, unit

TAG = "minilm@0123456789ab"


def _world(store: VectorStore) -> set[str]:
    """1,000 tool-written points; among them (in key order everywhere) points an application wrote."""
    store.create_collection(CollectionSpec(name="c", dim=4, metric="dot"))
    ids = [f"doc-{(i * 7919) % 1000:04d}" for i in range(1000)]  # not in key order
    untagged = {ids[i] for i in range(0, 1000, 7)} | set(ODD_IDS)
    other = {ids[i] for i in range(3, 1000, 50)} - untagged
    points = []
    for i, d in enumerate(ids + ODD_IDS):
        payload = {"text": f"document {i}", "n": {"i": i}}
        if d in other:
            payload[MODEL_KEY] = "older@ba9876543210"
        elif d not in untagged:
            payload[MODEL_KEY] = TAG
        points.append(Point(d, unit(i), payload))
    for start in range(0, len(points), 256):
        store.upsert("c", points[start : start + 256])
    return untagged | other


def test_finds_exactly_the_points_without_the_tag(store: VectorStore) -> None:
    expected = _world(store)
    pages = list(store.scroll_untagged("c", MODEL_KEY, TAG, batch_size=64))
    found = [p.doc_id for page in pages for p in page]
    assert len(found) == len(set(found)) == len(expected) and set(found) == expected
    assert len(pages) >= 3 and all(0 < len(page) <= 64 for page in pages)
    points = [p for page in pages for p in page]
    assert all(p.vector is None and p.payload.get(MODEL_KEY) != TAG for p in points)
    odd = next(p for p in points if p.doc_id == 'quote"d')
    assert odd.payload == {"text": f"document {1000 + ODD_IDS.index(odd.doc_id)}",
                           "n": {"i": 1000 + ODD_IDS.index(odd.doc_id)}}
    # The interface's default, a full scroll filtered here, agrees with the store's own filter.
    default = [p.doc_id for page in VectorStore.scroll_untagged(store, "c", MODEL_KEY, TAG, batch_size=64)
               for p in page]
    assert sorted(default) == sorted(found)


def test_a_rewrite_without_the_tag_is_found_and_a_tagged_one_is_not(store: VectorStore) -> None:
    store.create_collection(CollectionSpec(name="c", dim=4, metric="dot"))
    store.upsert("c", [Point(f"d{i}", unit(i), {"text": f"t{i}", MODEL_KEY: TAG}) for i in range(20)])
    assert list(store.scroll_untagged("c", MODEL_KEY, TAG)) == []  # nothing: no page at all
    store.upsert("c", [Point("d3", unit(3), {"text": "rewritten by the application"}),
                       Point("new", unit(1), {"text": "added by the application"})])
    found = {p.doc_id: p.payload for page in store.scroll_untagged("c", MODEL_KEY, TAG) for p in page}
    assert found == {"d3": {"text": "rewritten by the application"}, "new": {"text": "added by the application"}}
    # The tool embeds them and tags them: they are no longer an application's writes.
    store.upsert("c", [Point(d, unit(0), {**payload, MODEL_KEY: TAG}) for d, payload in found.items()])
    assert list(store.scroll_untagged("c", MODEL_KEY, TAG)) == []
    assert {p.doc_id for page in store.scroll_untagged("c", MODEL_KEY, "other@000000000000") for p in page} == \
        {f"d{i}" for i in range(20)} | {"new"}


def test_untagged_scroll_refuses_what_scroll_refuses(store: VectorStore) -> None:
    with pytest.raises(NotFoundError):
        list(store.scroll_untagged("missing", MODEL_KEY, TAG))
    store.create_collection(CollectionSpec(name="c", dim=4, metric="dot"))
    with pytest.raises(UsageError):
        list(store.scroll_untagged("c", MODEL_KEY, TAG, batch_size=0))
