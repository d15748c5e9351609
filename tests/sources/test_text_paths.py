"""Text and id extraction shared by every source: nested paths, LangChain, LlamaIndex."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest

from reindexer.sources.base import extract_text, jsonable, normalize_doc_id, resolve_path


def llamaindex_node(text: str, **extra) -> str:
    # The shape LlamaIndex's vector stores write under "_node_content".
    node = {
        "id_": "node-1",
        "embedding": None,
        "metadata": {"file_name": "a.txt"},
        "excluded_embed_metadata_keys": [],
        "relationships": {"1": {"node_id": "doc-1", "node_type": "4"}},
        "text": text,
        "class_name": "TextNode",
        **extra,
    }
    return json.dumps(node)


def test_top_level_and_nested():
    rec = {"text": "top", "metadata": {"body": "nested", "deep": {"x": "deeper"}}}
    assert extract_text(rec, "text") == "top"
    assert extract_text(rec, "metadata.body") == "nested"
    assert extract_text(rec, "metadata.deep.x") == "deeper"


def test_key_with_dots_wins():
    assert extract_text({"a.b": "dotted", "a": {"b": "nested"}}, "a.b") == "dotted"


def test_langchain_page_content():
    rec = {"page_content": "LangChain text", "metadata": {"source": "a.pdf", "page": 3}}
    assert extract_text(rec, "page_content") == "LangChain text"
    assert extract_text(rec, "text") is None


def test_llamaindex_node_content():
    rec = {"_node_content": llamaindex_node("LlamaIndex text"), "_node_type": "TextNode", "doc_id": "d"}
    assert extract_text(rec, "_node_content") == "LlamaIndex text"
    # the explicit path into the JSON string works too
    assert extract_text(rec, "_node_content.text") == "LlamaIndex text"
    assert extract_text(rec, "_node_content.metadata.file_name") == "a.txt"


def test_llamaindex_text_resource_and_removed_text():
    node = json.loads(llamaindex_node(""))
    assert extract_text({"_node_content": json.dumps(node)}, "_node_content") is None
    node["text_resource"] = {"text": "from resource"}
    assert extract_text({"_node_content": json.dumps(node)}, "_node_content") == "from resource"
    assert extract_text({"_node_content": "not json"}, "_node_content") is None


def test_json_text_is_not_unwrapped_for_other_fields():
    # A document whose text happens to be JSON is embedded as it is.
    doc = '{"text": "inner"}'
    assert extract_text({"text": doc}, "text") == doc


@pytest.mark.parametrize("value", [None, "", "   \n", 42, ["a"], {"text": "x"}])
def test_unusable_text(value):
    assert extract_text({"text": value}, "text") is None


def test_resolve_path_missing():
    with pytest.raises(KeyError):
        resolve_path({"a": {"b": 1}}, "a.c")
    with pytest.raises(KeyError):
        resolve_path({"a": "plain string"}, "a.b")


@pytest.mark.parametrize(
    "value, expected",
    [("a", "a"), (7, "7"), (uuid.UUID(int=1), str(uuid.UUID(int=1))), ("", None), ("  ", None),
     (True, None), (1.0, None), (None, None), (["a"], None)],
)
def test_normalize_doc_id(value, expected):
    assert normalize_doc_id(value) == expected


def test_jsonable():
    value = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 1, 2),
        "price": decimal.Decimal("1.50"),
        "count": decimal.Decimal("3"),
        "tags": ("a", "b"),
        1: {"nested": [decimal.Decimal("2")]},
    }
    assert jsonable(value) == {
        "when": "2024-01-02T03:04:05+00:00",
        "day": "2024-01-02",
        "price": 1.5,
        "count": 3,
        "tags": ["a", "b"],
        "1": {"nested": [2]},
    }
    with pytest.raises(TypeError):
        jsonable(b"raw")
