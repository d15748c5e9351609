"""SqlSource on a real SQLite file database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reindexer.errors import UsageError
from reindexer.sources import SqlSource, open_source, parse_source


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "docs.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE docs (
            id INTEGER PRIMARY KEY,
            body TEXT,
            meta TEXT,
            price NUMERIC,
            seq INTEGER,
            updated_at TEXT
        );
        INSERT INTO docs VALUES
            (1, 'first body',  '{"title": "One", "inner": {"text": "nested one"}}', 1.5, 10, '2024-01-01 09:00:00'),
            (2, 'second body', '{"title": "Two", "inner": {"text": "nested two"}}', 2,   20, '2024-02-01 09:00:00'),
            (3, 'third body',  '{"title": "Three", "inner": {"text": "nested three"}}', 3, 30, '2024-03-01 09:00:00');
        """
    )
    con.commit()
    con.close()
    return path


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def test_full_pass(db: Path):
    spec = parse_source(f"sql:{url(db)}", query="SELECT id, body, price FROM docs ORDER BY id;", text_field="body")
    source = open_source(spec)
    try:
        docs = list(source)
    finally:
        source.close()
    assert [d.doc_id for d in docs] == ["1", "2", "3"]
    assert docs[0].text == "first body"
    assert docs[0].payload == {"body": "first body", "price": 1.5}
    assert docs[0].updated_at is None


def test_small_batches_stream(db: Path):
    with SqlSource(url(db), "SELECT * FROM docs", text_field="body", batch_size=1) as source:
        assert [d.doc_id for d in source] == ["1", "2", "3"]
        assert source.scan().count == 3


def test_nested_path_into_json_text_column(db: Path):
    with SqlSource(url(db), "SELECT id, meta FROM docs ORDER BY id", text_field="meta.inner.text") as source:
        assert [d.text for d in source] == ["nested one", "nested two", "nested three"]


def test_literal_colons_in_query(db: Path):
    query = "SELECT id, body || ' at 10:30 :not_a_param' AS text FROM docs WHERE id = 1"
    with SqlSource(url(db), query) as source:
        (doc,) = source
    assert doc.text == "first body at 10:30 :not_a_param"


def test_since_watermark(db: Path):
    spec = parse_source(
        f"sql:{url(db)}",
        query="SELECT id, body, updated_at FROM docs",
        text_field="body",
        updated_field="updated_at",
    )
    with open_source(spec) as source:
        full = source.scan()
    assert full.count == 3 and full.max_updated_at == "2024-03-01 09:00:00"

    # a row changes after the watermark was taken
    con = sqlite3.connect(db)
    con.execute("UPDATE docs SET body = 'second, edited', updated_at = '2024-04-01 09:00:00' WHERE id = 2")
    con.commit()
    con.close()

    with open_source(spec.with_since(full.max_updated_at)) as source:
        docs = list(source)
        again = source.scan()
    assert [d.doc_id for d in docs] == ["2"]
    assert docs[0].text == "second, edited" and docs[0].updated_at == "2024-04-01 09:00:00"
    assert again.max_updated_at == "2024-04-01 09:00:00"


def test_since_is_a_bound_parameter(db: Path):
    hostile = "x' OR '1'='1"
    with SqlSource(url(db), "SELECT id, body, updated_at FROM docs", text_field="body",
                   updated_field="updated_at", since=hostile) as source:
        stmt = str(source.statement())
        assert hostile not in stmt and ":reindex_since" in stmt
        # every updated_at sorts below 'x...', so nothing comes back
        assert list(source) == []


def test_since_with_trailing_comment(db: Path):
    query = "SELECT id, body AS text, seq FROM docs -- all of them"
    with SqlSource(url(db), query, updated_field="seq", since=25) as source:
        assert [d.doc_id for d in source] == ["3"]


def test_since_numeric_from_cli(db: Path):
    spec = parse_source(f"sql:{url(db)}", query="SELECT id, body, seq FROM docs", text_field="body",
                        updated_field="seq", since="15")
    with open_source(spec) as source:
        assert [d.doc_id for d in source] == ["2", "3"]


def test_since_on_a_quoted_column_name(tmp_path: Path):
    path = tmp_path / "q.db"
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE t (id TEXT, text TEXT, "last modified" INTEGER)')
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [("a", "x", 1), ("b", "y", 5)])
    con.commit()
    con.close()
    with SqlSource(f"sqlite:///{path}", "SELECT * FROM t", updated_field="last modified", since=2) as source:
        assert [(d.doc_id, d.updated_at) for d in source] == [("b", 5)]


def test_placeholders_expanded_only_when_opened(tmp_path: Path, db: Path, monkeypatch):
    monkeypatch.setenv("DOCS_DIR", str(db.parent))
    spec = parse_source("sql:sqlite:///${DOCS_DIR}/docs.db", query="SELECT id, body AS text FROM docs")
    assert spec.location == "sqlite:///${DOCS_DIR}/docs.db"
    source = open_source(spec)
    assert "${DOCS_DIR}" in source.description and str(db.parent) not in source.description
    with source:
        assert len(list(source)) == 3
    monkeypatch.delenv("DOCS_DIR")
    with pytest.raises(UsageError, match="DOCS_DIR is not set"):
        list(open_source(spec))


def test_errors(db: Path, tmp_path: Path):
    with SqlSource(url(db), "SELECT id, body FROM docs") as source:
        with pytest.raises(UsageError, match=r"row 1 \(id '1'\) has no text under 'text'"):
            list(source)
        with pytest.raises(UsageError, match="3 of 3 rows have no text"):
            source.scan()
    with SqlSource(url(db), "SELECT id, body AS text FROM nope") as source:
        with pytest.raises(UsageError, match="the query failed"):
            list(source)
    with SqlSource(url(db), "SELECT body AS text FROM docs") as source:
        with pytest.raises(UsageError, match="has no id field 'id'"):
            list(source)
    with SqlSource(url(db), "SELECT 1 AS id, 'a' AS text UNION ALL SELECT 1, 'b'") as source:
        with pytest.raises(UsageError, match="duplicate id '1' at row 2"):
            list(source)
    with SqlSource(url(db), "SELECT id, body AS text FROM docs", updated_field="missing", since="1") as source:
        with pytest.raises(UsageError, match="the query failed"):
            list(source)
    with pytest.raises(UsageError, match="literal password"):
        SqlSource("postgresql://app:hunter2@localhost/db", "SELECT 1")
    with pytest.raises(UsageError, match="cannot open this URL"):
        list(SqlSource("nosuchdialect://x/y", "SELECT 1"))


def test_statement_is_dialect_neutral():
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    source = SqlSource("sqlite://", "SELECT * FROM docs;", updated_field="updatedAt", since="2024")
    compiled = {
        name: str(source.statement(d.dialect()).compile(dialect=d.dialect()))
        for name, d in (("sqlite", sqlite), ("postgresql", postgresql), ("mysql", mysql))
    }
    assert compiled["postgresql"] == (
        'SELECT * FROM (\nSELECT * FROM docs\n) AS reindex_src WHERE reindex_src."updatedAt" > %(reindex_since)s'
    )
    assert compiled["mysql"].endswith("reindex_src.`updatedAt` > %s")
    assert compiled["sqlite"].endswith('reindex_src."updatedAt" > ?')
