"""An sql source split into id ranges (the Ray executor's parallel read), on SQLite and PostgreSQL.

The ranges must be disjoint and cover every row the whole query returns, whatever the
ids' type, repeats, a ``since`` filter or rows added after the split.
"""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from reindexer.errors import UsageError
from reindexer.raydata.reads import sql_ranges, sql_records
from reindexer.sources.spec import SourceSpec, open_source

ROWS = 97


def _fill(url: str, table: str, id_type: str, ids: list) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE {table} (id {id_type}, body TEXT, n INTEGER, updated INTEGER)"))
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:id, :body, :n, :updated)"),
            [{"id": v, "body": f"text {i}: a row", "n": i, "updated": i % 10} for i, v in enumerate(ids)],
        )
    engine.dispose()


def _spec(url: str, table: str, **extra) -> SourceSpec:
    return SourceSpec(kind="sql", location=url, query=f"SELECT id, body, n, updated FROM {table}",
                      text_field="body", **extra)


def _split(spec: SourceSpec, parts: int) -> list[tuple[str | None, dict]]:
    return [(doc_id, rec) for low, high in sql_ranges(spec, parts) for _, doc_id, rec in sql_records(spec, low, high)]


def _whole(spec: SourceSpec) -> list[dict]:
    with open_source(spec) as source:
        return [rec for _, _, rec in source._records()]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/src.db"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("id_type", ["TEXT", "INTEGER"])
@pytest.mark.parametrize("parts", [2, 7])
def test_the_ranges_cover_every_row_once(db_url, id_type, parts):
    order = [(i * 37) % ROWS for i in range(ROWS)]  # every row once, not in id order
    ids = [f"doc-{n}" for n in order] if id_type == "TEXT" else order
    table = f"t_{id_type.lower()}_{parts}"
    _fill(db_url, table, id_type, ids)
    spec = _spec(db_url, table)
    ranges = sql_ranges(spec, parts)
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert len(ranges) == min(parts, ROWS)
    got = sorted(rec["n"] for _, rec in _split(spec, parts))
    assert got == sorted(rec["n"] for rec in _whole(spec)) == list(range(ROWS))


def test_more_ranges_asked_than_rows_gives_one_range_per_row(tmp_path):
    url = f"sqlite:///{tmp_path}/src.db"
    _fill(url, "docs", "TEXT", [f"doc-{i:02d}" for i in range(12)])
    spec = _spec(url, "docs")
    assert len(sql_ranges(spec, 50)) == 12
    assert sorted(rec["n"] for _, rec in _split(spec, 50)) == list(range(12))


def test_repeated_ids_land_in_one_range_and_since_still_filters(db_url):
    ids = [f"d{i // 4:03d}" for i in range(ROWS)]  # every id four times: tiles would split them
    _fill(db_url, "t_repeats", "TEXT", ids)
    spec = _spec(db_url, "t_repeats", updated_field="updated", since=4)
    per_range = [
        {rec["id"] for _, _, rec in sql_records(spec, low, high)} for low, high in sql_ranges(spec, 6)
    ]
    for a in range(len(per_range)):
        for b in range(a + 1, len(per_range)):
            assert not per_range[a] & per_range[b], "one id read by two ranges"
    got = sorted(rec["n"] for _, rec in _split(spec, 6))
    assert got == sorted(rec["n"] for rec in _whole(spec))
    assert got and all(n % 10 > 4 for n in got)


def test_rows_added_after_the_split_are_read_by_the_open_last_range(tmp_path):
    url = f"sqlite:///{tmp_path}/src.db"
    _fill(url, "docs", "TEXT", [f"doc-{i:03d}" for i in range(40)])
    spec = _spec(url, "docs")
    ranges = sql_ranges(spec, 4)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.execute("INSERT INTO docs VALUES ('zzz-late', 'a late row', 999, 0)")
    got = [rec["n"] for low, high in ranges for _, _, rec in sql_records(spec, low, high)]
    assert sorted(got) == [*range(40), 999]


def test_a_null_id_fails_in_a_range_as_it_fails_in_a_whole_read(tmp_path):
    url = f"sqlite:///{tmp_path}/src.db"
    _fill(url, "docs", "TEXT", [f"doc-{i:03d}" for i in range(20)] + [None])
    spec = _spec(url, "docs")
    with pytest.raises(UsageError) as whole:
        list(open_source(spec))
    with pytest.raises(UsageError) as split:
        for low, high in sql_ranges(spec, 3):
            with open_source(spec) as source:
                part = source.partition(low, high)
                list(part)
    assert "id" in split.value.message and type(split.value) is type(whole.value)


def test_a_query_the_database_cannot_split_is_read_in_one_task(tmp_path):
    url = f"sqlite:///{tmp_path}/src.db"
    _fill(url, "docs", "TEXT", [f"doc-{i:03d}" for i in range(10)])
    spec = SourceSpec(kind="sql", location=url, query="SELECT id AS ident, body FROM docs", text_field="body",
                      id_field="ident")
    # the id column is an alias the outer query can reach: split it
    assert len(sql_ranges(spec, 3)) == 3
    broken = SourceSpec(kind="sql", location=url, query="SELECT body FROM docs", text_field="body", id_field="nope")
    assert sql_ranges(broken, 3) == [(None, None)]
