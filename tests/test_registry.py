"""Store URLs: parsing, normalisation, credentials kept out, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from reindexer.adapters.registry import (
    DEFAULT_STORE_URL,
    parse_store_url,
    redact_url,
    secret_from_env,
)
from reindexer.errors import UsageError


def test_qdrant_local_relative_to_base_dir(tmp_path: Path) -> None:
    loc = parse_store_url("qdrant+local:data/q", base_dir=tmp_path)
    assert (loc.scheme, loc.backend, loc.embedded) == ("qdrant+local", "qdrant", True)
    assert loc.target == str(tmp_path / "data" / "q")
    assert loc.url == f"qdrant+local:{tmp_path / 'data' / 'q'}"


def test_qdrant_local_absolute_and_double_slash(tmp_path: Path) -> None:
    assert parse_store_url(f"qdrant+local:{tmp_path}/q").target == f"{tmp_path}/q"
    assert parse_store_url(f"qdrant+local://{tmp_path}/q").target == f"{tmp_path}/q"


def test_default_url_is_embedded_qdrant(tmp_path: Path) -> None:
    loc = parse_store_url(DEFAULT_STORE_URL, base_dir=tmp_path)
    assert loc.backend == "qdrant" and loc.embedded
    assert loc.target == str(tmp_path / ".reindex" / "qdrant")


def test_milvus_lite_needs_a_db_file(tmp_path: Path) -> None:
    loc = parse_store_url("milvus+lite:m.db", base_dir=tmp_path)
    assert (loc.backend, loc.embedded, loc.target) == ("milvus", True, str(tmp_path / "m.db"))
    with pytest.raises(UsageError) as err:
        parse_store_url("milvus+lite:m.sqlite", base_dir=tmp_path)
    assert ".db" in str(err.value)


@pytest.mark.parametrize(
    "url, target, normalised",
    [
        ("qdrant://db.internal", "http://db.internal:6333", "qdrant://db.internal:6333"),
        ("qdrant://db.internal:7000", "http://db.internal:7000", "qdrant://db.internal:7000"),
        ("qdrant+https://q.example.com", "https://q.example.com:6333", "qdrant+https://q.example.com:6333"),
        ("milvus://127.0.0.1", "http://127.0.0.1:19530", "milvus://127.0.0.1:19530"),
        ("MILVUS+HTTPS://m.example.com:443", "https://m.example.com:443", "milvus+https://m.example.com:443"),
    ],
)
def test_server_urls(url: str, target: str, normalised: str) -> None:
    loc = parse_store_url(url)
    assert loc.embedded is False
    assert loc.target == target
    assert loc.url == normalised


@pytest.mark.parametrize(
    "url",
    ["qdrant://admin:hunter2@db:6333", "milvus://root:Milvus@127.0.0.1:19530", "qdrant://token@db"],
)
def test_credentials_in_url_are_rejected(url: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_store_url(url)
    text = f"{err.value} {err.value.hint}"
    assert "hunter2" not in text and "Milvus@" not in text
    assert "QDRANT_API_KEY" in text or "MILVUS_TOKEN" in text


@pytest.mark.parametrize("url", ["", "nonsense", "postgres://db/x", "qdrant+local:", "milvus://:19530"])
def test_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        parse_store_url(url)


def test_unknown_scheme_message_is_redacted() -> None:
    with pytest.raises(UsageError) as err:
        parse_store_url("redis://user:pw1234@host:6379")
    assert "pw1234" not in str(err.value)


def test_redact_url() -> None:
    assert redact_url("qdrant://admin:hunter2@db:6333") == "qdrant://***@db:6333"
    assert redact_url("milvus://tok@h") == "milvus://***@h"
    assert redact_url("qdrant://db:6333") == "qdrant://db:6333"
    assert redact_url("qdrant+local:/data/a@b") == "qdrant+local:/data/a@b"  # a path, not user-info
    assert redact_url("no-scheme") == "no-scheme"


def test_secret_from_env_prefers_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    monkeypatch.setenv("QDRANT_API_KEY_FILE", str(secret_file))
    assert secret_from_env("QDRANT_API_KEY") == "from-env"


def test_secret_from_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("  s3cr3t-token \n")
    monkeypatch.delenv("MILVUS_TOKEN", raising=False)
    monkeypatch.setenv("MILVUS_TOKEN_FILE", str(secret_file))
    assert secret_from_env("MILVUS_TOKEN") == "s3cr3t-token"
    secret_file.write_text("\n")
    assert secret_from_env("MILVUS_TOKEN") is None


def test_secret_from_env_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MILVUS_TOKEN", raising=False)
    monkeypatch.delenv("MILVUS_TOKEN_FILE", raising=False)
    assert secret_from_env("MILVUS_TOKEN") is None
    monkeypatch.setenv("MILVUS_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(UsageError) as err:
        secret_from_env("MILVUS_TOKEN")
    assert "MILVUS_TOKEN_FILE" in str(err.value)


def test_open_store_passes_secrets_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from reindexer.adapters import registry

    seen = {}

    class FakeMilvus:
        def __init__(self, uri: str, token: str | None = None):
            seen.update(uri=uri, token=token)

    import reindexer.adapters.milvus as milvus_mod

    monkeypatch.setattr(milvus_mod, "MilvusStore", FakeMilvus)
    token_file = tmp_path / "t"
    token_file.write_text("tok-from-file")
    monkeypatch.delenv("MILVUS_TOKEN", raising=False)
    monkeypatch.setenv("MILVUS_TOKEN_FILE", str(token_file))
    registry.open_store("milvus://db.internal:19530")
    assert seen == {"uri": "http://db.internal:19530", "token": "tok-from-file"}
    registry.open_store("milvus+lite:x.db", base_dir=tmp_path)
    assert seen["uri"] == str(tmp_path / "x.db")
