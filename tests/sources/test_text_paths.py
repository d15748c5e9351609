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


# --- text templates over several fields (issue 11) -----------------------------------------------------------

def test_template_renders_several_fields_and_nested_paths():
    from reindexer.sources.base import fields_template, is_template, template_fields

    record = {"title": "Aspirin", "text": "reduces fever.", "metadata": {"year": 2020, "lang": "en"}}
    assert extract_text(record, "{title}. {text}") == "Aspirin. reduces fever."
    assert extract_text(record, "{metadata.lang}|{metadata.year} {{literal}}") == "en|2020 {literal}"
    assert is_template("{title}. {text}") and not is_template("title") and not is_template("a{}b")
    assert template_fields("{title}. {metadata.lang}") == ["title", "metadata.lang"]
    assert fields_template(["title", "text"]) == "{title}\n\n{text}" and fields_template(["text"]) == "text"
    # a LlamaIndex node inside a template reads its text, as the plain path does
    assert extract_text({"t": "T", "_node_content": llamaindex_node("Body")}, "{t}: {_node_content}") == "T: Body"


def test_template_missing_fields_render_empty_and_all_empty_is_no_text():
    assert extract_text({"text": "only the body"}, "{title}. {text}") == ". only the body"
    assert extract_text({"title": "Only a title"}, "{title}. {text}") == "Only a title."
    assert extract_text({"title": "", "text": "  "}, "{title}. {text}") is None
    assert extract_text({}, "{title}. {text}") is None
    # a plain path is read exactly as before
    assert extract_text({"title,text": "odd key"}, "title,text") == "odd key"
    assert extract_text({"text": "{not a template}"}, "text") == "{not a template}"


def test_record_source_with_template_reports_documents_without_text(tmp_path):
    from reindexer.errors import UsageError
    from reindexer.sources.jsonl import JsonlSource

    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "title": "T", "text": "x"}\n{"_id": "b", "title": "", "text": ""}\n')
    src = JsonlSource(path, text_field="{title}. {text}", id_field="_id")
    with pytest.raises(UsageError, match="1 of 2 lines have no text under '{title}. {text}'"):
        src.scan()
    path.write_text('{"_id": "a", "title": "T", "text": "x"}\n')
    (doc,) = list(JsonlSource(path, text_field="{title}. {text}", id_field="_id"))
    assert doc.text == "T. x" and doc.payload == {"title": "T", "text": "x"}
