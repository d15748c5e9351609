"""JsonlSource on real files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from reindexer.errors import UsageError
from reindexer.sources import JsonlSource, content_hash, open_source, parse_source


def write_jsonl(path: Path, rows: list, raw_lines: list[str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows] + list(raw_lines or [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_basic_payload_keeps_text_drops_id(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "a", "text": "alpha", "lang": "en"},
            {"id": 2, "text": "beta", "tags": ["x"], "reindex_model": "stale", "reindex_doc_id": "2"},
        ],
    )
    docs = list(JsonlSource(path))
    assert [d.doc_id for d in docs] == ["a", "2"]
    assert docs[0].text == "alpha"
    assert docs[0].payload == {"text": "alpha", "lang": "en"}
    # the tool's own keys never come from a source
    assert docs[1].payload == {"text": "beta", "tags": ["x"]}
    assert docs[0].content_hash == content_hash("alpha", {"text": "alpha", "lang": "en"})
    # a source can be read again
    assert [d.doc_id for d in JsonlSource(path)] == ["a", "2"]


def test_langchain_style_rows(tmp_path: Path):
    rows = [
        {"id": "1", "page_content": "first page", "metadata": {"source": "a.pdf", "page": 1}},
        {"id": "2", "page_content": "second page", "metadata": {"source": "a.pdf", "page": 2}},
    ]
    path = write_jsonl(tmp_path / "lc.jsonl", rows)
    docs = list(open_source(parse_source(f"jsonl:{path}", text_field="page_content")))
    assert [d.text for d in docs] == ["first page", "second page"]
    assert docs[1].payload == {"page_content": "second page", "metadata": {"source": "a.pdf", "page": 2}}


def test_nested_id_and_text(tmp_path: Path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"meta": {"doc_id": "x1", "body": {"text": "deep"}}}])
    (doc,) = JsonlSource(path, text_field="meta.body.text", id_field="meta.doc_id")
    assert doc.doc_id == "x1" and doc.text == "deep"
    # a nested id is not a top-level key, so the payload is the whole object
    assert doc.payload == {"meta": {"doc_id": "x1", "body": {"text": "deep"}}}


def test_blank_lines_bom_and_gzip(tmp_path: Path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "x"}\n\n   \n{"id": "b", "text": "y"}')
    assert [d.doc_id for d in JsonlSource(path)] == ["a", "b"]
    gz = tmp_path / "b.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"id": "g", "text": "zipped"}\n'))
    assert [d.text for d in open_source(parse_source(f"jsonl:{gz}"))] == ["zipped"]


def test_empty_file_yields_nothing(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert list(JsonlSource(path)) == []
    assert JsonlSource(path).scan().count == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        ('{"id": "c", "text": ', r"line 3 is not valid JSON"),
        ('["id", "c"]', r"line 3 holds a JSON list, not an object"),
        ('{"text": "no id"}', r"line 3 has no id field 'id'"),
        ('{"id": 1.5, "text": "float id"}', r"line 3 has an unusable id 1.5"),
        ('{"id": "a", "text": "again"}', r"duplicate id 'a' at line 3"),
        ('{"id": "c", "txt": "wrong field"}', r"line 3 \(id 'c'\) has no text under 'text'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, bad: str, match: str):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}], [bad])
    source = JsonlSource(path)
    with pytest.raises(UsageError, match=match) as info:
        list(source)
    assert str(path) in str(info.value)


def test_invalid_utf8(tmp_path: Path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(UsageError, match="line 2 is not valid UTF-8"):
        list(JsonlSource(path))


def test_missing_file(tmp_path: Path):
    with pytest.raises(UsageError, match="no such file"):
        list(JsonlSource(tmp_path / "nope.jsonl"))


def test_scan_reports_every_missing_text(tmp_path: Path):
    rows = [{"id": f"d{i}", "text": "t" if i % 3 else ""} for i in range(10)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(UsageError) as info:
        JsonlSource(path).scan()
    assert "4 of 10 lines have no text under 'text' (e.g. ids 'd0', 'd3', 'd6', 'd9')" in info.value.message
    assert "--text-field" in info.value.hint


def test_scan_ids_and_updated_at(tmp_path: Path):
    rows = [
        {"id": "a", "text": "x", "updated": "2024-01-02"},
        {"id": "b", "text": "y", "updated": "2024-03-01"},
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    source = JsonlSource(path, updated_field="updated")
    result = source.scan()
    docs = {d.doc_id: d for d in source}
    assert list(result.ids) == sorted(docs) and result.count == 2
    assert docs["a"].updated_at == "2024-01-02"
    assert result.max_updated_at == "2024-03-01"
    assert source.validate() == 2


def test_streams_without_reading_ahead(tmp_path: Path):
    # The first document comes back before a bad line far below is read.
    path = write_jsonl(tmp_path / "big.jsonl", [{"id": i, "text": "x"} for i in range(1000)], ["{oops"])
    it = iter(JsonlSource(path))
    assert next(it).doc_id == "0"
    with pytest.raises(UsageError, match="line 1001"):
        list(it)


def test_scan_keeps_its_ids_out_of_memory_and_still_finds_a_repeat_across_the_spill(tmp_path: Path, monkeypatch):
    import reindexer.idset

    monkeypatch.setattr(reindexer.idset, "SPILL_AT", 50)
    rows = [{"id": f"d{i:04d}", "text": f"t {i}"} for i in range(2500)]  # three id chunks of 1,000
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    with JsonlSource(path).scan() as result:
        assert result.count == 2500 and result.ids.spilled
        assert next(iter(result.ids)) == "d0000"
    repeated = write_jsonl(tmp_path / "r.jsonl", rows + [{"id": "d0007", "text": "again"}])
    with pytest.raises(UsageError, match="d0007"):
        JsonlSource(repeated).scan()
