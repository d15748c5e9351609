"""ParquetSource on real files written with pyarrow."""

from __future__ import annotations

import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reindexer.errors import UsageError
from reindexer.sources import ParquetSource, open_source, parse_source


def write(path: Path, rows: list[dict], schema: pa.Schema | None = None, row_group_size: int | None = None) -> Path:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_rows_and_nested_structs(tmp_path: Path):
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    rows = [
        {"id": 1, "body": "one", "meta": {"lang": "en", "score": 0.5}, "tags": ["a"], "updated": when},
        {"id": 2, "body": "two", "meta": {"lang": "de", "score": 0.7}, "tags": [], "updated": when},
    ]
    path = write(tmp_path / "d.parquet", rows)
    source = open_source(parse_source(f"parquet:{path}", text_field="body", updated_field="updated"))
    docs = list(source)
    assert [d.doc_id for d in docs] == ["1", "2"]
    assert docs[0].text == "one"
    assert docs[0].payload == {
        "body": "one",
        "meta": {"lang": "en", "score": 0.5},
        "tags": ["a"],
        "updated": "2024-05-01T12:00:00+00:00",
    }
    assert docs[1].updated_at == "2024-05-01T12:00:00+00:00"


def test_nested_text_path_across_batches(tmp_path: Path):
    rows = [{"doc": f"d{i}", "content": {"page_content": f"text {i}"}} for i in range(25)]
    path = write(tmp_path / "n.parquet", rows, row_group_size=10)
    source = ParquetSource(path, text_field="content.page_content", id_field="doc", batch_size=4)
    docs = list(source)
    assert len(docs) == 25
    assert docs[24].doc_id == "d24" and docs[24].text == "text 24"
    assert source.scan().count == 25


def test_missing_text_and_duplicates(tmp_path: Path):
    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": None}, {"id": "c", "text": ""}]
    path = write(tmp_path / "m.parquet", rows)
    with pytest.raises(UsageError, match=r"row 2 \(id 'b'\) has no text under 'text'"):
        list(ParquetSource(path))
    with pytest.raises(UsageError, match=r"2 of 3 rows have no text under 'text' \(e\.g\. ids 'b', 'c'\)"):
        ParquetSource(path).scan()
    dup = write(tmp_path / "dup.parquet", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(UsageError, match="duplicate id 'a' at row 2"):
        list(ParquetSource(dup))


def test_binary_column_refused(tmp_path: Path):
    path = write(tmp_path / "b.parquet", [{"id": "a", "text": "x", "blob": b"\x00\x01"}])
    with pytest.raises(UsageError, match="bytes value under 'blob'"):
        list(ParquetSource(path))


def test_empty_file_and_not_parquet(tmp_path: Path):
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    empty = write(tmp_path / "e.parquet", [], schema=schema)
    assert list(ParquetSource(empty)) == []
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(UsageError, match="not a readable Parquet file"):
        list(ParquetSource(junk))
    with pytest.raises(UsageError, match="no such file"):
        list(ParquetSource(tmp_path / "missing.parquet"))
