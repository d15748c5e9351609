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


# -- the backend registry ----------------------------------------------------------
def test_built_in_backends_register_through_entry_points() -> None:
    from importlib.metadata import entry_points

    from reindexer.adapters.milvus import MilvusBackend
    from reindexer.adapters.qdrant import QdrantBackend
    from reindexer.adapters.registry import ENTRY_POINT_GROUP, backends

    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert found["qdrant"] == "reindexer.adapters.qdrant:QdrantBackend"
    assert found["milvus"] == "reindexer.adapters.milvus:MilvusBackend"
    registered = backends()
    assert list(registered)[:2] == ["qdrant", "milvus"]
    assert isinstance(registered["qdrant"], QdrantBackend)
    assert isinstance(registered["milvus"], MilvusBackend)


def test_schemes_and_messages_come_from_the_registry() -> None:
    from reindexer.adapters import registry

    # The built-in backends first, then those found only through entry points (pgvector), by name.
    assert registry.SCHEMES == (
        "qdrant+local", "qdrant", "qdrant+https", "milvus+lite", "milvus", "milvus+https", "pgvector+local", "pgvector"
    )
    with pytest.raises(UsageError) as err:
        parse_store_url("nonsense")
    assert err.value.hint == (
        "use qdrant+local:PATH, qdrant://HOST:PORT, milvus+lite:PATH.db, milvus://HOST:PORT, "
        "pgvector+local:PATH or pgvector://HOST:PORT/DB"
    )
    with pytest.raises(UsageError) as err:
        parse_store_url("redis://h:6379")
    assert str(err.value).startswith("unknown store scheme 'redis' in redis://h:6379")
    assert err.value.hint == "use one of: " + ", ".join(registry.SCHEMES)
    with pytest.raises(UsageError) as err:
        parse_store_url("qdrant://admin:hunter2@db:6333")
    assert err.value.hint == "set QDRANT_API_KEY or MILVUS_TOKEN or PGPASSWORD (or the *_FILE variants) instead"


def _memory_backend(opened: list):
    """A third party's backend, registered in-process as an entry point would register it."""
    from reindexer.adapters.addressing import StoreLocation
    from reindexer.adapters.backend import EmbeddedOrServerBackend
    from reindexer.adapters.base import Capabilities

    class Store:
        backend = "memdb"
        capabilities = Capabilities(atomic_alias_swap=True, collection_metadata=True,
                                    payload_indexes=False, embedded=True)

        def __init__(self, location: StoreLocation, secret: str | None = None):
            opened.append((location, secret))

        def close(self) -> None:
            pass

    class MemBackend(EmbeddedOrServerBackend):
        name = "memdb"
        schemes = ("memdb+local", "memdb", "memdb+https")
        examples = ("memdb+local:PATH",)
        secret_env = "MEMDB_KEY"
        embedded_scheme = "memdb+local"
        default_port = 7777

        def open_embedded(self, path):
            return Store(StoreLocation("memdb+local", "memdb", True, path, f"memdb+local:{path}"))

        def open_server(self, url, secret):
            return Store(StoreLocation("memdb", "memdb", False, url, url), secret)

    return MemBackend()


def test_a_registered_backend_parses_and_opens_its_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from reindexer.adapters import registry

    opened: list = []
    registry.register_backend(_memory_backend(opened))
    try:
        assert "memdb+local" in registry.SCHEMES
        loc = parse_store_url("memdb+local:data", base_dir=tmp_path)
        assert (loc.backend, loc.embedded, loc.target) == ("memdb", True, str(tmp_path / "data"))
        loc = parse_store_url("MEMDB+HTTPS://h")
        assert (loc.target, loc.url) == ("https://h:7777", "memdb+https://h:7777")
        with pytest.raises(UsageError) as err:
            parse_store_url("memdb://user:pw@h")
        assert "MEMDB_KEY" in err.value.hint and "pw" not in str(err.value)
        monkeypatch.setenv("MEMDB_KEY", "k-1")
        registry.open_store("memdb://h:1")
        assert opened[-1][0].target == "http://h:1" and opened[-1][1] == "k-1"
    finally:
        registry.unregister_backend("memdb")
    with pytest.raises(UsageError):
        parse_store_url("memdb://h")


def test_open_store_refuses_a_backend_without_collection_metadata(tmp_path: Path) -> None:
    from dataclasses import replace

    from reindexer.adapters import registry

    backend = _memory_backend([])
    store_cls = type(backend.open_embedded("x"))
    store_cls.capabilities = replace(store_cls.capabilities, collection_metadata=False)
    registry.register_backend(backend)
    try:
        with pytest.raises(UsageError) as err:
            registry.open_store("memdb+local:x", base_dir=tmp_path)
        assert "metadata" in str(err.value)
    finally:
        registry.unregister_backend("memdb")


def test_a_broken_entry_point_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from reindexer.adapters import registry

    real = registry.entry_points

    def with_broken(group: str):
        return [*real(group=group), EntryPoint("broken", "no_such_module_4711:Backend", group)]

    monkeypatch.setattr(registry, "entry_points", with_broken)
    monkeypatch.setattr(registry, "_backends", None)
    monkeypatch.setattr(registry, "_broken", {})
    assert list(registry.backends()) == ["qdrant", "milvus", "pgvector"]
    with pytest.raises(UsageError) as err:
        parse_store_url("broken://h")
    assert "broken (ModuleNotFoundError" in err.value.hint
    assert parse_store_url("qdrant://h").backend == "qdrant"
