"""Store URLs: one string names a backend, its location and its mode.

    qdrant+local:PATH        Qdrant local mode (embedded), data folder PATH
    qdrant://HOST:PORT       Qdrant server over HTTP (qdrant+https:// for TLS)
    milvus+lite:PATH.db      Milvus Lite (embedded), database file PATH.db
    milvus://HOST:PORT       Milvus server (milvus+https:// for TLS)

Backends are found through the ``reindexer.backends`` entry-point group: each
entry point names a ``reindexer.adapters.backend.Backend`` subclass that knows its
schemes, how to read its location and how to open a store. The two built-in
backends register there too (pyproject.toml); a third party ships its own
package with an entry point of its own (docs/adapters.md).

Credentials never travel in the URL, so a URL can be logged, stored in state
and written into plans. They come from the environment or from files:
QDRANT_API_KEY / QDRANT_API_KEY_FILE and MILVUS_TOKEN / MILVUS_TOKEN_FILE
(``reindexer.adapters.addressing`` reads them and keeps URLs safe to log).
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reindexer.adapters.addressing import StoreLocation, redact_url, secret_from_env
from reindexer.adapters.backend import Backend
from reindexer.adapters.base import VectorStore
from reindexer.errors import UsageError

__all__ = [
    "DEFAULT_STORE_URL",
    "ENTRY_POINT_GROUP",
    "StoreLocation",
    "backend_for",
    "backends",
    "credential_hint",
    "open_store",
    "parse_store_url",
    "redact_url",
    "register_backend",
    "schemes",
    "secret_from_env",
    "wrap_client",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "reindexer.backends"
DEFAULT_STORE_URL = "qdrant+local:.reindex/qdrant"

# The built-in backends come first in listings and messages, in this order; others follow by name.
_BUILTIN = {
    "qdrant": "reindexer.adapters.qdrant:QdrantBackend",
    "milvus": "reindexer.adapters.milvus:MilvusBackend",
}

_lock = threading.Lock()
_backends: dict[str, Backend] | None = None
_extra: dict[str, Backend] = {}  # registered in-process (register_backend)
_broken: dict[str, str] = {}  # entry point name -> why it could not be loaded


def _load(name: str, ref: str) -> Backend:
    from importlib import import_module

    module, _, attr = ref.partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return _instantiate(name, obj)


def _instantiate(name: str, obj: Any) -> Backend:
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise TypeError(f"{type(backend).__name__} is not a reindexer.adapters.backend.Backend")
    if backend.name != name:
        raise TypeError(f"the entry point is named {name!r} but the backend calls itself {backend.name!r}")
    return backend


def _discover() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # the first distribution on the path wins, as for console scripts
        try:
            found[ep.name] = _instantiate(ep.name, ep.load())
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
            _broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("store backend %r (%s) could not be loaded: %s", ep.name, ep.value, exc)
    for name, ref in _BUILTIN.items():
        if name not in found and name not in _broken:
            # Running from a source tree that was never installed: no entry points.
            log.debug("no %r entry point in %s; using the built-in %s", name, ENTRY_POINT_GROUP, ref)
            found[name] = _load(name, ref)
    order = [n for n in _BUILTIN if n in found] + sorted(n for n in found if n not in _BUILTIN)
    return {n: found[n] for n in order}


def backends() -> dict[str, Backend]:
    """Every backend, by name: entry points of ``reindexer.backends``, then ``register_backend``."""
    global _backends
    with _lock:
        if _backends is None:
            _backends = _discover()
        return {**_backends, **{n: b for n, b in _extra.items() if n not in _backends}}


def register_backend(backend: Backend) -> None:
    """Add a backend in this process (tests, applications); entry points are the usual way."""
    if not isinstance(backend, Backend):
        raise TypeError(f"{type(backend).__name__} is not a reindexer.adapters.backend.Backend")
    _extra[backend.name] = backend


def unregister_backend(name: str) -> None:
    _extra.pop(name, None)


def schemes() -> tuple[str, ...]:
    """Every URL scheme some backend answers for."""
    return tuple(s for b in backends().values() for s in b.schemes)


def __getattr__(name: str) -> Any:
    # SCHEMES stays importable; it is computed from the registry when read.
    if name == "SCHEMES":
        return schemes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_for(scheme: str) -> Backend | None:
    scheme = scheme.lower()
    for backend in backends().values():
        if scheme in backend.schemes:
            return backend
    return None


def credential_hint() -> str:
    names = [b.secret_env for b in backends().values() if b.secret_env]
    return f"set {' or '.join(names)} (or the *_FILE variants) instead"


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def parse_store_url(url: str, base_dir: Path | None = None) -> StoreLocation:
    if not url or ":" not in url:
        examples = [e for b in backends().values() for e in b.examples]
        raise UsageError(f"not a store URL: {url!r}", hint=f"use {_joined(examples)}" if examples else None)
    scheme, rest = url.split(":", 1)
    scheme = scheme.lower()
    backend = backend_for(scheme)
    if backend is None:
        hint = f"use one of: {', '.join(schemes())}"
        if _broken:
            hint += "; backends that failed to load: " + "; ".join(f"{n} ({why})" for n, why in _broken.items())
        raise UsageError(f"unknown store scheme {scheme!r} in {redact_url(url)}", hint=hint)
    if rest.startswith("//") and scheme != getattr(backend, "embedded_scheme", None):
        parts = urlsplit(f"http:{rest}")
        if parts.username or parts.password:
            raise UsageError("store URLs must not contain credentials", hint=credential_hint())
    location = backend.parse(scheme, rest, base_dir)
    if not location.embedded and redact_url(location.url) != location.url:
        # The rule holds for every backend, whatever its own parser does.
        raise UsageError("store URLs must not contain credentials", hint=credential_hint())
    return location


def open_store(url: str, base_dir: Path | None = None) -> VectorStore:
    """Open the vector store named by ``url``."""
    location = parse_store_url(url, base_dir)
    backend = backends()[location.backend]
    store = backend.open(location)
    caps = getattr(store, "capabilities", None)
    if caps is None:  # not a VectorStore subclass (a test double): nothing declared to check
        return store
    if not caps.collection_metadata:
        store.close()
        raise UsageError(
            f"the {backend.name} backend keeps no collection metadata; reindexer records each version's "
            "model there and cannot manage this store"
        )
    if not caps.atomic_alias_swap:
        log.warning("%s: cut-overs are not atomic on this backend; readers may briefly see no collection", location.url)
    return store


def wrap_client(client: Any) -> VectorStore | None:
    """A store over a client object an application opened (QdrantClient, MilvusClient, ...), or None."""
    for backend in backends().values():
        if backend.wraps(client):
            return backend.wrap(client)
    return None
