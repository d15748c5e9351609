"""How a store is addressed: its location, URLs safe to log, and secrets read from the environment.

Beside the registry (``reindexer.adapters.registry``), which reads every store URL
through the backends: a ``Backend.parse`` builds a ``StoreLocation`` with these
helpers, and ``Backend.open`` takes its credentials from ``secret_from_env``.
Credentials never travel in a URL, so a URL can be logged, stored in state and
written into plans. Not the store interface (``reindexer.adapters.base``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from reindexer.errors import UsageError


@dataclass(frozen=True)
class StoreLocation:
    """Where a store is, as its backend read it from a store URL (``Backend.parse``)."""

    scheme: str
    backend: str  # the backend's registered name: "qdrant", "milvus", ...
    embedded: bool
    target: str  # a folder, a .db file, or an http(s) URL without credentials
    url: str  # normalised store URL, safe to log and to store


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
    import os

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


def parse_embedded_path(scheme: str, rest: str, base_dir: Path | None) -> Path:
    """``scheme:PATH`` or ``scheme://PATH``: an absolute path, relative ones resolved against ``base_dir``."""
    path = rest[2:] if rest.startswith("//") else rest
    if not path:
        raise UsageError(f"{scheme}: needs a path, as in {scheme}:./data")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return p


def parse_server_address(url: str, rest: str, default_port: int, secret_env: str | None = None) -> str:
    """``//HOST[:PORT]`` as ``HOST:PORT``; credentials in the URL are refused.

    The registry refuses them first with a hint naming every backend's variable
    (``registry.parse_store_url``); this refusal is for callers that parse directly.
    """
    parts = urlsplit(f"http:{rest}")
    if parts.username or parts.password:
        hint = f"set {secret_env} (or {secret_env}_FILE) instead" if secret_env else None
        raise UsageError("store URLs must not contain credentials", hint=hint)
    if not parts.hostname:
        raise UsageError(f"store URL {redact_url(url)} has no host")
    return f"{parts.hostname}:{parts.port or default_port}"
