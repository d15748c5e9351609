"""PayloadSource: the live collection as its own source, on a real Qdrant local store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.adapters import open_store
from reindexer.adapters.base import MODEL_KEY, CollectionSpec, Point, VectorStore
from reindexer.errors import UsageError
from reindexer.sources import PayloadSource, open_source, parse_source

COLLECTION = "docs__v1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VectorStore]:
    s = open_store(f"qdrant+local:{tmp_path}/q")
    try:
        yield s
    finally:
        s.close()


def fill(store: VectorStore, payloads: dict[str, dict[str, Any]]) -> None:
    store.create_collection(CollectionSpec(COLLECTION, dim=2))
    store.upsert(
        COLLECTION,
        [Point(doc_id, [1.0, float(i)], {**payload, MODEL_KEY: "old@0123456789ab"})
         for i, (doc_id, payload) in enumerate(payloads.items())],
    )


def by_id(source) -> dict:
    return {d.doc_id: d for d in source}


def test_description_names_backend_and_collection(store: VectorStore):
    assert PayloadSource(store, COLLECTION).description == f"payload:qdrant/{COLLECTION}"
    spec = parse_source("payload", text_field="page_content")
    assert open_source(spec, store, COLLECTION).description == f"payload:qdrant/{COLLECTION} text=page_content"


def test_text_field_and_payload_copied(store: VectorStore):
    fill(store, {
        "a": {"text": "alpha", "lang": "en", "tags": ["x", "y"]},
        "b": {"text": "beta", "lang": "de", "nested": {"k": 1}},
    })
    docs = by_id(PayloadSource(store, COLLECTION, batch_size=1))
    assert set(docs) == {"a", "b"}
    assert docs["a"].text == "alpha"
    # untouched, text field included, the tool's own keys removed
    assert docs["a"].payload == {"text": "alpha", "lang": "en", "tags": ["x", "y"]}
    assert docs["b"].payload == {"text": "beta", "lang": "de", "nested": {"k": 1}}


def test_langchain_collection(store: VectorStore):
    fill(store, {
        "1": {"page_content": "LangChain one", "metadata": {"source": "a.pdf", "page": 1}},
        "2": {"page_content": "LangChain two", "metadata": {"source": "a.pdf", "page": 2}},
    })
    spec = parse_source("payload", text_field="page_content")
    docs = by_id(open_source(spec, store, COLLECTION))
    assert docs["2"].text == "LangChain two"
    assert docs["2"].payload == {"page_content": "LangChain two", "metadata": {"source": "a.pdf", "page": 2}}


def test_llamaindex_collection(store: VectorStore):
    def node(text: str) -> str:
        return json.dumps({"id_": "n", "metadata": {"f": "a.txt"}, "text": text, "class_name": "TextNode"})

    fill(store, {
        "n1": {"_node_content": node("Llama one"), "_node_type": "TextNode", "doc_id": "d1", "f": "a.txt"},
        "n2": {"_node_content": node("Llama two"), "_node_type": "TextNode", "doc_id": "d1", "f": "a.txt"},
    })
    docs = by_id(PayloadSource(store, COLLECTION, text_field="_node_content"))
    assert docs["n1"].text == "Llama one"
    # the node JSON itself is copied untouched
    assert docs["n1"].payload["_node_content"] == node("Llama one")
    assert set(docs["n1"].payload) == {"_node_content", "_node_type", "doc_id", "f"}


def test_nested_text_path(store: VectorStore):
    fill(store, {"a": {"metadata": {"body": "deep text"}}})
    (doc,) = PayloadSource(store, COLLECTION, text_field="metadata.body")
    assert doc.text == "deep text"


def test_missing_text_is_never_skipped(store: VectorStore):
    fill(store, {
        "ok1": {"text": "fine"},
        "bad1": {"body": "text is elsewhere"},
        "ok2": {"text": "fine too"},
        "bad2": {"text": ""},
        "bad3": {"text": 7},
    })
    source = PayloadSource(store, COLLECTION, batch_size=2)
    with pytest.raises(UsageError, match="has no text under 'text'") as info:
        list(source)
    assert "--text-field" in info.value.hint
    with pytest.raises(UsageError) as info:
        source.scan()
    msg = info.value.message
    assert "3 of 5 points have no text under 'text' (e.g. ids " in msg
    for doc_id in ("bad1", "bad2", "bad3"):
        assert repr(doc_id) in msg
    assert info.value.hint == ("pass --text-field with the payload path that holds the text, e.g. page_content; "
                               "for several fields, a template such as --text '{title}. {text}'")
    with pytest.raises(UsageError):
        source.validate()


def test_scan_matches_iteration(store: VectorStore):
    fill(store, {f"d{i}": {"text": f"text {i}", "i": i} for i in range(7)})
    source = PayloadSource(store, COLLECTION, batch_size=3)
    result = source.scan()
    assert result.count == 7
    assert list(result.ids) == sorted(d.doc_id for d in source)
    assert result.max_updated_at is None


def test_collection_made_outside_the_tool(tmp_path: Path):
    """A LangChain-style collection written straight with qdrant-client: no tool keys at all."""
    import uuid

    from qdrant_client import QdrantClient, models

    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc-{i}")) for i in range(3)]
    client = QdrantClient(path=str(tmp_path / "lc"))
    client.create_collection("lc", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
    client.upsert("lc", [
        models.PointStruct(id=pid, vector=[1.0, float(i)],
                           payload={"page_content": f"page {i}", "metadata": {"page": i}})
        for i, pid in enumerate(ids)
    ])
    client.close()
    with open_store(f"qdrant+local:{tmp_path}/lc") as store:
        docs = by_id(PayloadSource(store, "lc", text_field="page_content"))
    assert set(docs) == set(ids)  # the point ids are the document ids
    assert docs[ids[1]].text == "page 1"
    assert docs[ids[1]].payload == {"page_content": "page 1", "metadata": {"page": 1}}
