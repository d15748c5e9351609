"""How a Searcher is made: its options, the store it searches and the state store it records into.

What the caller leaves unset comes from [query] in reindex.toml and REINDEX_* (when there is one), else a
default; the store is a URL, a reindexer VectorStore, an application's own client, or a Workspace's. Only
construction: resolving, encoding and searching (the query path) is reindexer.searcher's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reindexer.adapters.base import VectorStore
from reindexer.errors import NotFoundError, UsageError


@dataclass(frozen=True)
class QueryOptions:
    """A Searcher's options once the caller's, the configuration's and the defaults are merged and checked."""

    refresh: float
    shadow_sample: float
    record_query_text: bool
    models_root: str | Path | None
    device: str | None


def query_config(store: Any, workspace: Any, cwd: Path | None) -> Any:
    """The configuration a Searcher reads its defaults from: the workspace's; none for a store or client
    object (the application made it); else found as the CLI finds it (REINDEX_STORE, reindex.toml)."""
    if workspace is not None:
        return workspace.config
    return None if isinstance(store, VectorStore) or _is_client(store) else _load_config(store, cwd)


def query_options(
    config: Any,
    *,
    refresh: float | None,
    shadow_sample: float | None,
    record_query_text: bool | None,
    models_root: str | Path | None,
    device: str | None,
    cache_size: int,
) -> QueryOptions:
    """The options given, else ``config``'s [query], else the defaults; a UsageError for one out of range."""
    refresh = _default(refresh, config, "query_refresh", 1.0)
    shadow_sample = _default(shadow_sample, config, "shadow_sample", 0.0)
    record_query_text = _default(record_query_text, config, "record_query_text", False)
    models_root = _default(models_root, config, "models_root", None)
    device = _default(device, config, "device", None)
    if refresh < 0:
        raise UsageError(f"refresh must be 0 or more seconds, not {refresh}")
    if cache_size < 2:
        raise UsageError(f"cache_size must be at least 2 (live and previous), not {cache_size}")
    if not 0.0 <= shadow_sample <= 1.0:
        raise UsageError(f"shadow_sample must be between 0 and 1, not {shadow_sample}")
    return QueryOptions(float(refresh), shadow_sample, record_query_text, models_root, device)


def open_searched_store(store: Any, workspace: Any, config: Any, closers: list[Any]) -> tuple[VectorStore, str]:
    """(the store to search, its URL as state records it); a store opened here is added to ``closers``."""
    from reindexer.adapters.registry import open_store, parse_store_url

    if workspace is not None:
        return workspace.store, workspace.store_url
    if isinstance(store, VectorStore):
        return store, _store_url_of(store)
    if _is_client(store):
        wrapped = _wrap_client(store)
        return wrapped, _store_url_of(wrapped)
    # query_config loaded it for everything but a store or client object, both handled above
    assert config is not None
    url = config.store_url
    location = parse_store_url(url, config.base_dir)
    if location.embedded and not Path(location.target).exists():
        # A query never creates a store: a mistyped path would otherwise answer "unknown collection".
        raise NotFoundError(
            f"no store at {location.url}",
            hint="point REINDEX_STORE, reindex.toml's [store] url or store= at the store",
        )
    opened = open_store(url, config.base_dir)
    closers.append(opened)
    return opened, location.url


def open_state(state: Any, workspace: Any, config: Any, closers: list[Any]) -> Any:
    """The state store: ``state`` when it is one, else the workspace's, else opened (never created) from
    ``state`` as a URL or the configuration's; a store opened here is added to ``closers``."""
    from reindexer.state import StateStore

    if state is not None and not isinstance(state, str):
        return state
    if workspace is not None:
        return workspace.state
    config = config or _load_config(None, None)
    opened = StateStore(state or config.state_url, config.base_dir, create=False)
    closers.append(opened)
    return opened


def _default(given: Any, config: Any, attr: str, fallback: Any) -> Any:
    if given is not None:
        return given
    return getattr(config, attr) if config is not None else fallback


def _load_config(store: Any, cwd: Path | None):
    from reindexer.config import load_config

    return load_config(store_url=store if isinstance(store, str) else None, cwd=cwd)


def _is_client(obj: Any) -> bool:
    """A client object some registered backend wraps (QdrantClient, MilvusClient, ...)."""
    from reindexer.adapters.registry import backends

    return not isinstance(obj, (str, type(None))) and any(b.wraps(obj) for b in backends().values())


def _wrap_client(client: Any) -> VectorStore:
    from reindexer.adapters.registry import wrap_client

    store = wrap_client(client)
    if store is None:
        raise UsageError(f"no store backend wraps a {type(client).__name__}")
    return store


def _store_url_of(store: VectorStore) -> str:
    """The store URL (as state records it) of an open adapter."""
    location = getattr(store, "location", "") or ""
    for http, suffix in (("https://", "+https"), ("http://", "")):
        if location.startswith(http):
            return f"{store.backend}{suffix}://{location[len(http) :].rstrip('/')}"
    return location
