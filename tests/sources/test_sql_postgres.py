"""SqlSource on a real PostgreSQL (pgserver, a throwaway local server).

What SQLite cannot show: a timestamptz watermark compared by the server, JSONB
columns arriving as dicts, ``::`` casts in the query, and psycopg's server-side
(named) cursor behind ``stream_results``.
"""

from __future__ import annotations

import datetime

import pytest

from reindexer.sources import SqlSource, open_source, parse_source

pytestmark = pytest.mark.server

pgserver = pytest.importorskip("pgserver", reason="pip install pgserver (the test extra)")
pytest.importorskip("psycopg", reason="pip install psycopg (the test extra)")


@pytest.fixture(scope="module")
def pg(tmp_path_factory) -> str:
    """A running server; returns the unix-socket folder."""
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    srv.psql(
        """
        CREATE TABLE docs (
            doc_id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            meta JSONB,
            price NUMERIC(6, 2),
            updated_at TIMESTAMPTZ NOT NULL
        );
        INSERT INTO docs
        SELECT 'doc-' || i, 'body ' || i,
               jsonb_build_object('n', i, 'inner', jsonb_build_object('text', 'inner ' || i)),
               i * 1.25, TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '1 hour'
        FROM generate_series(1, 50) AS i;
        """
    )
    host = srv.get_uri().split("host=", 1)[1]
    yield host
    srv.cleanup()


def url(host: str) -> str:
    return f"postgresql+psycopg://postgres@/postgres?host={host}"


def test_stream_with_watermark(pg: str):
    spec = parse_source(
        f"sql:{url(pg)}",
        query="SELECT doc_id, body, meta, price, updated_at, body::text AS copy FROM docs ORDER BY doc_id;",
        text_field="body",
        id_field="doc_id",
        updated_field="updated_at",
    )
    with open_source(spec, batch_size=7) as source:
        docs = list(source)
        full = source.scan()
    assert len(docs) == 50 and full.count == 50
    doc = next(d for d in docs if d.doc_id == "doc-3")
    assert doc.payload["meta"] == {"n": 3, "inner": {"text": "inner 3"}}
    assert doc.payload["price"] == 3.75
    assert doc.updated_at == "2024-01-01T03:00:00+00:00"
    assert full.max_updated_at == "2024-01-03T02:00:00+00:00"  # hour 50
    # the stored watermark (an ISO string) is compared by the server as a timestamptz
    since = "2024-01-02T00:00:00+00:00"  # after hour 24
    with open_source(spec.with_since(since)) as source:
        ids = sorted(d.doc_id for d in source)
    assert ids == sorted(f"doc-{i}" for i in range(25, 51))
    dt = datetime.datetime(2024, 1, 2, 23, tzinfo=datetime.timezone.utc)  # hour 47
    with SqlSource(url(pg), "SELECT * FROM docs", text_field="meta.inner.text", id_field="doc_id",
                   updated_field="updated_at", since=dt) as source:
        assert sorted(d.text for d in source) == ["inner 48", "inner 49", "inner 50"]


def test_server_side_cursor_is_used(pg: str):
    from sqlalchemy import event

    cursors = []
    with SqlSource(url(pg), "SELECT doc_id, body AS text FROM docs", id_field="doc_id", batch_size=5) as source:
        event.listen(source._get_engine(), "before_cursor_execute",
                     lambda conn, cursor, *a: cursors.append(cursor))
        assert len(list(source)) == 50
    # psycopg's server-side cursors are the named ones
    assert any(getattr(c, "name", None) for c in cursors)


def test_placeholders_expanded_at_open(pg: str, monkeypatch):
    monkeypatch.setenv("T_PGUSER", "postgres")
    monkeypatch.setenv("T_PGPASSWORD", "s3cr@t/with:chars")
    monkeypatch.setenv("T_PGHOST", pg)
    spec = parse_source(
        "sql:postgresql+psycopg://${T_PGUSER}:${T_PGPASSWORD}@/postgres?host=${T_PGHOST}",
        query="SELECT doc_id AS id, body AS text FROM docs",
    )
    assert "s3cr" not in str(spec.to_dict()) and "s3cr" not in spec.describe()
    with open_source(spec) as source:
        assert source.scan().count == 50
        assert "s3cr" not in source.description
