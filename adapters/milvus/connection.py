"""The Milvus client under the store: connecting (server or Lite), error mapping, retries, closing.

``MilvusConnection`` is the bottom layer of ``MilvusStore`` (connection, then
structure, rows, auto-ids, then the store's operations): it opens or wraps a
``MilvusClient``, maps pymilvus and gRPC errors into reindexer's
(``_map``), and recovers the cases ``_call`` can retry (``_recover``: a released
collection is loaded again). No collection operations here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from reindexer.adapters.addressing import redact_url
from reindexer.adapters.base import (
    Capabilities,
    VectorStore,
)
from reindexer.adapters.error_mapping import grpc_transient_codes, map_common_error
from reindexer.adapters.milvus.layout import (
    RowLayout,
)
from reindexer.adapters.milvus.lite import (
    LITE_GUARD,
    LITE_USERS,
    collections_with_leftover_wal,
    lite_lock_held,
    lite_path_of,
    release,
    settle_after_unclean_exit,
)
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    TransientBackendError,
)
from reindexer.retry import call_with_retries

T = TypeVar("T")
log = logging.getLogger(__name__)


def _quiet_client_logs() -> None:
    # pymilvus logs a full traceback at ERROR for every failed call, expected ones
    # included (a probe for a missing collection); the adapter maps and raises
    # every error itself. REINDEX_BACKEND_DEBUG=1 keeps the client's own logs.
    if os.environ.get("REINDEX_BACKEND_DEBUG"):
        return
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)


def _is_unexpected(exc: BaseException) -> bool:
    """The server's catch-all error code (UnexpectedError, 65535)."""
    return getattr(exc, "code", None) == 65535


_TRANSIENT_WORDS = (
    "fail connecting",
    "server unavailable",
    "service unavailable",
    "not ready",
    "not healthy",
    "unhealthy",
    "rate limit",
    "deadline exceeded",
    "retry timeout",
    "connection refused",
    "stopping",
)


@cache
def _transient_grpc() -> frozenset[Any]:
    # Imported on first use: the registry loads this module to parse any store URL.
    return grpc_transient_codes("ABORTED")


def _is_not_loaded(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    text = str(getattr(exc, "message", "") or exc).lower()
    return code == 101 or "not loaded" in text or "state 'released'" in text or "call load()" in text


class MilvusConnection(VectorStore):
    """The Milvus client under ``MilvusStore``: connecting, error mapping, closing."""

    backend = "milvus"

    other_vectors_in_payload = True

    def __init__(
        self,
        uri: str = "",
        token: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        client: Any = None,
    ):
        from pymilvus import MilvusClient  # noqa: F401 - fail early if missing

        _quiet_client_logs()
        lite_path = lite_path_of(client) if client is not None else None
        if client is not None:
            uri = lite_path or getattr(getattr(client, "_config", None), "uri", "") or uri
        self._lite = uri.endswith(".db")
        # A client handed in belongs to the application that opened it: close() leaves it open.
        self._owns_client = client is None
        self._uri = uri
        self._token = token or ""
        self._secrets = [token] if token else []
        self._timeout = float(timeout or os.environ.get("REINDEX_STORE_TIMEOUT", "60"))
        self._connect_timeout = float(connect_timeout or os.environ.get("REINDEX_CONNECT_TIMEOUT", "5"))
        self._schemas: dict[str, RowLayout] = {}
        # collection -> the vector field adopt chose, until the collection's properties record it
        self._chosen: dict[str, str] = {}
        self._client: Any = None
        self._lite_path: str | None = None
        self.capabilities = Capabilities(
            atomic_alias_swap=True,
            collection_metadata=True,
            payload_indexes=False,
            embedded=self._lite,
            # One writer on Milvus Lite: with two inserts in flight, a SIGKILL of the process group
            # lost every acknowledged insert of the run (already in the ledger) in 4 of 5 tries of
            # tests/test_crash.py's sync test, where one writer lost none. A server takes four.
            write_concurrency=1 if self._lite else 4,
            # Milvus's BM25 function (Lite 3.x, servers from 2.5); lexical_refusal() asks a server.
            lexical_vectors=True,
            lexical_by_store=True,
        )
        if client is not None:
            self._client = client
            self.location = f"milvus+lite:{lite_path}" if lite_path else redact_url(uri)
        elif self._lite:
            path = os.path.abspath(os.path.expanduser(uri))
            self.location = f"milvus+lite:{path}"
            self._uri = path
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(f"cannot create the folder for {self.location}: {exc.strerror}") from None
            self._client = self._connect_lite(path)
        else:
            self.location = redact_url(uri)
            self._client = call_with_retries(self._connect_server, f"connect to {self.location}")

    def _new_client(self) -> Any:
        from pymilvus import MilvusClient

        return MilvusClient(
            uri=self._uri,
            token=self._token,
            timeout=self._connect_timeout,
            # Our own channel, closed by close(); shared ones live until exit.
            dedicated=True,
        )

    def _connect_server(self) -> Any:
        try:
            return self._new_client()
        except Exception as exc:  # noqa: BLE001 - mapped at the boundary
            raise self._map(exc, "connect") from None

    def _connect_lite(self, path: str) -> Any:
        with LITE_GUARD:
            first_here = LITE_USERS.get(path, 0) == 0
            # Read before opening: the server we start writes WAL files of its own.
            unsettled = collections_with_leftover_wal(path) if first_here else []
            try:
                client = self._new_client()
            except Exception as exc:  # noqa: BLE001
                if lite_lock_held(path):
                    raise self._held_elsewhere(f"Milvus Lite store {path}", "Milvus", "milvus://HOST:PORT") from None
                raise BackendError(f"cannot open the Milvus Lite store {path}: {self._redact(str(exc))}") from None
            LITE_USERS[path] = LITE_USERS.get(path, 0) + 1
            self._lite_path = path
            settle_after_unclean_exit(client, unsettled, self._timeout)
            return client

    def _map(self, exc: BaseException, what: str) -> ReindexError:
        import grpc
        from pymilvus.exceptions import MilvusException

        where = f"{what} on {self.location}"
        if isinstance(exc, MilvusException):
            code = exc.code
            message = self._redact(str(getattr(exc, "message", "") or exc))
            lowered = message.lower()
            if isinstance(code, grpc.StatusCode):
                if code in _transient_grpc():
                    return TransientBackendError(f"{where}: {code.name}: {message}")
                return BackendError(f"{where}: {code.name}: {message}")
            if _is_not_loaded(exc):
                return TransientBackendError(f"{where}: {message}")
            if (
                code in (100, 1600)
                or "not found" in lowered
                or "does not exist" in lowered
                or ("can't find" in lowered)
            ):
                return NotFoundError(f"{where}: {message}")
            if (
                code == 1601
                or "already exist" in lowered
                or "conflict" in lowered
                or ("duplicate collection" in lowered)
            ):
                return ConflictError(f"{where}: {message}")
            if code in (2, 8) or any(s in lowered for s in _TRANSIENT_WORDS):
                return TransientBackendError(f"{where}: {message}")
            return BackendError(f"{where}: {message}")
        if isinstance(exc, grpc.RpcError):
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = self._redact(str(exc.details() if callable(getattr(exc, "details", None)) else exc))
            if code is not None and code in _transient_grpc():
                return TransientBackendError(f"{where}: {code.name}: {details}")
            return BackendError(f"{where}: {getattr(code, 'name', 'gRPC error')}: {details}")
        return map_common_error(exc, where, self._redact)

    def _recover(  # type: ignore[override]  # keyword options instead of **options
        self,
        exc: Exception,
        fn: Callable[..., T],
        what: str,
        *,
        load: str | None = None,
        missing_is_transient: bool = False,
        unexpected_is_transient: bool = False,
    ) -> T:
        """``_call``'s options on this backend.

        ``load``: the collection to load and retry once on "collection not
        loaded" (after a server restart). ``missing_is_transient``: right after
        create_collection a fresh server may briefly not find the collection.
        ``unexpected_is_transient``: a restarted server fails the load of a new
        collection with UnexpectedError (65535, "unrecoverable error"; "node not
        found" in the detail that pymilvus drops) while the old query node's session
        lingers (``common.session.ttl``); retried within the retry bounds.
        """
        if load is not None and _is_not_loaded(exc):
            log.info("%s: collection %r not loaded; loading it", self.location, load)
            try:
                self._client.load_collection(load, timeout=self._timeout)
                return fn()
            except Exception as exc2:  # noqa: BLE001
                raise self._map(exc2, what) from exc2
        err = self._map(exc, what)
        missing = missing_is_transient and isinstance(err, NotFoundError)
        if missing or (unexpected_is_transient and _is_unexpected(exc)):
            raise TransientBackendError(err.message) from exc
        raise err from exc

    def _server_version(self) -> tuple[int, ...]:
        """The server's (major, minor); (0, 0) when it does not say."""
        version = str(
            self._call(lambda: self._client.get_server_version(timeout=self._timeout), "read the server version")
        )
        return tuple(int(x) for x in re.findall(r"\d+", version)[:2]) or (0, 0)

    def close(self) -> None:
        self._close_client()
        path, self._lite_path = self._lite_path, None
        if path is not None:
            release(path)
