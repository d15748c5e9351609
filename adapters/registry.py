"""Store URLs: one string names a backend, its location and its mode.

    qdrant+local:PATH        Qdrant local mode (embedded), data folder PATH
    qdrant://HOST:PORT       Qdrant server over HTTP (qdrant+https:// for TLS)
    milvus+lite:PATH.db      Milvus Lite (embedded), database file PATH.db
    milvus://HOST:PORT       Milvus server (milvus+https:// for TLS)

Credentials never travel in the URL, so a URL can be logged, stored in state
and written into plans. They come from the environment or from files:
QDRANT_API_KEY / QDRANT_API_KEY_FILE and MILVUS_TOKEN / MILVUS_TOKEN_FILE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from reindexer.errors import UsageError

SCHEMES = ("qdrant+local", "qdrant", "qdrant+https", "milvus+lite", "milvus", "milvus+https")
DEFAULT_STORE_URL = "qdrant+local:.reindex/qdrant"


@dataclass(frozen=True)
class StoreLocation:
    scheme: str
    backend: str  # "qdrant" | "milvus"
    embedded: bool
    target: str  # a folder, a .db file, or an http(s) URL without credentials
    url: str  # normalised store URL, safe to log and to store


def parse_store_url(url: str, base_dir: Path | None = None) -> StoreLocation:
    if not url or ":" not in url:
        raise UsageError(
            f"not a store URL: {url!r}",
            hint="use qdrant+local:PATH, qdrant://HOST:PORT, milvus+lite:PATH.db or milvus://HOST:PORT",
        )
    scheme, rest = url.split(":", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(
            f"unknown store scheme {scheme!r} in {redact_url(url)}",
            hint=f"use one of: {', '.join(SCHEMES)}",
        )
    backend = scheme.split("+")[0]
    if scheme in ("qdrant+local", "milvus+lite"):
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise UsageError(f"{scheme}: needs a path, as in {scheme}:./data")
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = (base_dir or Path.cwd()) / p
        if scheme == "milvus+lite" and p.suffix != ".db":
            raise UsageError(
                f"Milvus Lite needs a file ending in .db, not {p.name!r}",
                hint="for example milvus+lite:.reindex/milvus.db",
            )
        return StoreLocation(scheme, backend, True, str(p), f"{scheme}:{p}")
    parts = urlsplit(f"http:{rest}")
    if parts.username or parts.password:
        raise UsageError(
            "store URLs must not contain credentials",
            hint="set QDRANT_API_KEY or MILVUS_TOKEN (or the *_FILE variants) instead",
        )
    if not parts.hostname:
        raise UsageError(f"store URL {redact_url(url)} has no host")
    default_port = 6333 if backend == "qdrant" else 19530
    http = "https" if scheme.endswith("https") else "http"
    host_port = f"{parts.hostname}:{parts.port or default_port}"
    return StoreLocation(scheme, backend, False, f"{http}://{host_port}", f"{scheme}://{host_port}")


def redact_url(url: str) -> str:
    """The URL with any user-info removed, safe for logs and messages."""
    try:
        scheme, rest = url.split(":", 1)
    except ValueError:
        return url
    if "@" in rest and rest.startswith("//"):
        rest = "//***@" + rest.split("@", 1)[1]
    return f"{scheme}:{rest}"


def secret_from_env(name: str) -> str | None:
    """``NAME`` from the environment, or the contents of the file named by ``NAME_FILE``."""
    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read {name}_FILE: {exc.strerror}") from None
    return None


def open_store(url: str, base_dir: Path | None = None):
    """Open the vector store named by ``url``."""
    loc = parse_store_url(url, base_dir)
    if loc.backend == "qdrant":
        from reindexer.adapters.qdrant import QdrantStore

        if loc.embedded:
            return QdrantStore(path=loc.target)
        return QdrantStore(url=loc.target, api_key=secret_from_env("QDRANT_API_KEY"))
    from reindexer.adapters.milvus import MilvusStore

    if loc.embedded:
        return MilvusStore(uri=loc.target)
    return MilvusStore(uri=loc.target, token=secret_from_env("MILVUS_TOKEN"))
