"""SourceSpec: CLI parsing, plan round-trip, secrets in SQL URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reindexer.errors import UsageError
from reindexer.sources import SourceSpec, open_source, parse_source
from reindexer.sources.sql_url import check_sql_url, expand_sql_url, redact_sql_url


def test_default_is_payload():
    for text in (None, "", "payload"):
        spec = parse_source(text)
        assert spec.kind == "payload"
        assert spec.location is None and spec.id_field is None
    assert parse_source().describe() == "payload"


def test_file_paths_become_absolute(tmp_path: Path):
    spec = parse_source("jsonl:docs.jsonl", base_dir=tmp_path)
    assert spec.kind == "jsonl"
    assert spec.location == str(tmp_path / "docs.jsonl")
    assert spec.id_field == "id" and spec.text_field == "text"
    assert parse_source("parquet:/data/x.parquet").location == "/data/x.parquet"


def test_kind_inferred_from_suffix_and_url(tmp_path: Path):
    assert parse_source("a.jsonl.gz", base_dir=tmp_path).kind == "jsonl"
    assert parse_source("b.parquet", base_dir=tmp_path).kind == "parquet"
    spec = parse_source("sqlite:///x.db", query="select 1")
    assert spec.kind == "sql" and spec.location == "sqlite:///x.db"
    with pytest.raises(UsageError, match="cannot tell"):
        parse_source("docs.csv")


def test_none_options_keep_defaults():
    spec = parse_source("jsonl:/d.jsonl", text_field=None, id_field=None, updated_field=None)
    assert spec.text_field == "text" and spec.id_field == "id"


@pytest.mark.parametrize(
    "text, options, match",
    [
        ("sql:sqlite:///x.db", {}, "needs a query"),
        ("jsonl:/x.jsonl", {"query": "select 1"}, "takes no query"),
        ("jsonl:/x.jsonl", {"since": "2024-01-01", "updated_field": "u"}, "sql sources only"),
        ("sql:sqlite:///x.db", {"query": "select 1", "since": "2024"}, "needs --updated-field"),
        ("payload", {"id_field": "doc_id"}, "ids come from the points"),
        ("payload:text", {}, "takes no argument"),
        ("jsonl:", {}, "needs a location"),
        ("mongo:x", {}, "cannot tell"),
        ("jsonl:/x.jsonl", {"text_field": ""}, "non-empty"),
    ],
)
def test_bad_specs(text, options, match):
    with pytest.raises(UsageError, match=match):
        parse_source(text, **options)


def test_unknown_option_refused():
    with pytest.raises(UsageError, match="unknown source option"):
        parse_source("payload", text_feild="x")


def test_since_numbers_are_numbers():
    spec = parse_source("sql:sqlite:///x.db", query="q", updated_field="v", since="1700000000")
    assert spec.since == 1700000000
    spec = parse_source("sql:sqlite:///x.db", query="q", updated_field="v", since="2024-05-01")
    assert spec.since == "2024-05-01"


def test_round_trip_through_json():
    specs = [
        parse_source("payload", text_field="_node_content"),
        parse_source("jsonl:/d/docs.jsonl", text_field="page_content", id_field="metadata.id"),
        parse_source("parquet:/d/docs.parquet", updated_field="mtime"),
        parse_source(
            "sql:postgresql+psycopg://app:${PGPW}@db:5432/docs",
            query="SELECT id, body FROM docs",
            text_field="body",
            updated_field="updated_at",
            since="2024-01-01T00:00:00+00:00",
        ),
    ]
    for spec in specs:
        data = json.loads(json.dumps(spec.to_dict()))
        assert SourceSpec.from_dict(data) == spec
    with pytest.raises(UsageError, match="unknown source field"):
        SourceSpec.from_dict({"kind": "payload", "password": "x"})
    spec = specs[3].with_since("2025-01-01")
    assert spec.since == "2025-01-01" and spec.query == specs[3].query


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db/docs",
        "postgresql+psycopg://app:pre${PGPW}@db/docs",
        "mysql://app:p%40ss@db/docs",
        "postgresql://app@db/docs?password=hunter2",
        "postgresql://db/docs?sslmode=require&PASSWORD=hunter2",
    ],
)
def test_literal_secrets_refused_without_echoing_them(url):
    with pytest.raises(UsageError) as info:
        parse_source(f"sql:{url}", query="select 1")
    err = info.value
    assert "${VAR}" in err.hint and "PGPASSWORD" in err.hint
    assert "hunter2" not in str(err) and "p%40ss" not in str(err)
    with pytest.raises(UsageError):
        SourceSpec(kind="sql", location=url, query="select 1")
    with pytest.raises(UsageError):
        SourceSpec.from_dict({"kind": "sql", "location": url, "query": "select 1"})


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///docs.db",
        "sqlite://",
        "postgresql://app@db/docs",
        "postgresql://app:${PG_PASSWORD}@db:5432/docs",
        "postgresql://${PGUSER}:${PGPW}@${PGHOST}/docs?password=${X}",
        "postgresql://db/docs?sslmode=require",
    ],
)
def test_placeholders_and_passwordless_urls_accepted(url):
    check_sql_url(url)
    assert redact_sql_url(url) == url


def test_expand_reads_environment_and_encodes_credentials():
    env = {"PGUSER": "app", "PGPW": "p@ss/w:rd", "PGHOST": "db.internal"}
    url = "postgresql://${PGUSER}:${PGPW}@${PGHOST}:5432/docs"
    assert expand_sql_url(url, env) == "postgresql://app:p%40ss%2Fw%3Ard@db.internal:5432/docs"
    with pytest.raises(UsageError, match="PGPW is not set") as info:
        expand_sql_url(url, {"PGUSER": "app", "PGHOST": "h"})
    assert "p@ss" not in str(info.value)


def test_describe_is_short_and_secret_free(monkeypatch):
    monkeypatch.setenv("PGPW", "hunter2")
    spec = parse_source(
        "sql:postgresql://app:${PGPW}@db/docs",
        query="select 1",
        text_field="body",
        updated_field="u",
        since="2024",
    )
    d = spec.describe()
    assert d == "sql:postgresql://app:${PGPW}@db/docs text=body since u>2024"
    assert "hunter2" not in json.dumps(spec.to_dict())
    assert parse_source("jsonl:/d.jsonl", text_field="page_content").describe() == (
        "jsonl:/d.jsonl text=page_content"
    )


def test_open_source_payload_needs_a_store():
    with pytest.raises(ValueError, match="store"):
        open_source(parse_source("payload"))


def test_open_source_kinds(tmp_path: Path):
    from reindexer.sources import JsonlSource, ParquetSource, SqlSource

    assert isinstance(open_source(parse_source(f"jsonl:{tmp_path}/a.jsonl")), JsonlSource)
    assert isinstance(open_source(parse_source(f"parquet:{tmp_path}/a.parquet")), ParquetSource)
    src = open_source(parse_source(f"sql:sqlite:///{tmp_path}/a.db", query="select 1"))
    assert isinstance(src, SqlSource)
    assert src.description == f"sql:sqlite:///{tmp_path}/a.db"
