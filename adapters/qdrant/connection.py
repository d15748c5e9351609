"""The Qdrant client under the store: opening it (local mode or server), error mapping, local mode's storage.

``QdrantConnection`` is the bottom layer of ``QdrantStore`` (connection, then
structure, then the store's operations on points and aliases): it opens or wraps a
``QdrantClient``, maps qdrant-client, HTTP and gRPC errors into reindexer's
(``_map``) and tunes local mode's SQLite files. No collection operations here.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from reindexer.adapters.addressing import redact_url
from reindexer.adapters.base import Capabilities, VectorStore
from reindexer.adapters.error_mapping import grpc_transient_codes, map_common_error
from reindexer.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ReindexError,
    TransientBackendError,
)

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class QdrantConnection(VectorStore):
    """The Qdrant client under ``QdrantStore``: connecting, error mapping, local mode's storage."""

    backend = "qdrant"

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: int | None = None,
        client: Any = None,
    ):
        if sum(x is not None for x in (path, url, client)) != 1:
            raise ValueError("QdrantStore needs exactly one of path=, url= or client=")
        from qdrant_client import QdrantClient

        self._local = path is not None or _is_local_client(client)
        self._secrets = [api_key] if api_key else []
        self._vector_names: dict[str, str | None] = {}
        self._sparse_names: dict[str, tuple[str, ...]] = {}
        self._dense_names: dict[str, tuple[str, ...]] = {}
        # collection -> the dense vector adopt chose, until the collection's metadata records it
        self._chosen: dict[str, str] = {}
        self._client: Any = None
        # A client handed in belongs to the application that opened it: close() leaves it open.
        self._owns_client = client is None
        self.capabilities = Capabilities(
            atomic_alias_swap=True,
            collection_metadata=True,
            # Local mode accepts payload indexes but ignores them (and warns).
            payload_indexes=not self._local,
            embedded=self._local,
            # Local mode is pure Python in this process: parallel writes only contend for the GIL.
            write_concurrency=1 if self._local else 4,
            lexical_vectors=True,
        )
        if client is not None:
            self._client = client
            self.location = _client_location(client)
        elif self._local:
            assert path is not None  # _local without a client means path=
            folder = Path(path).expanduser()
            self.location = f"qdrant+local:{folder}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(folder))
            except RuntimeError as exc:
                if "already accessed" in str(exc):
                    raise self._held_elsewhere(
                        f"Qdrant local store in {folder}", "Qdrant", "qdrant://HOST:PORT"
                    ) from None
                raise BackendError(f"cannot open the Qdrant local store in {folder}: {exc}") from None
            except OSError as exc:
                raise BackendError(f"cannot open the Qdrant local store in {folder}: {exc.strerror or exc}") from None
            self._tune_local_storage()
        else:
            self.location = url or ""
            with warnings.catch_warnings():
                # "Api key is used with an insecure connection": the operator's choice.
                warnings.simplefilter("ignore", UserWarning)
                self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
            try:
                self._call(lambda: self._client.get_collections(), "connect")
            except BaseException:
                self.close()
                raise

    # -- plumbing ------------------------------------------------------------
    def _map(self, exc: BaseException, what: str) -> ReindexError:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        where = f"{what} on {self.location}"
        if isinstance(exc, UnexpectedResponse):
            detail = self._redact(_response_detail(exc))
            status = exc.status_code
            lowered = detail.lower()
            if status in _TRANSIENT_STATUS:
                return TransientBackendError(f"{where}: HTTP {status}: {detail}")
            if status == 404 or "not found" in lowered or "doesn't exist" in lowered:
                return NotFoundError(f"{where}: {detail}")
            if status == 409 or "already exists" in lowered:
                return ConflictError(f"{where}: {detail}")
            return BackendError(f"{where}: HTTP {status}: {detail}")
        if isinstance(exc, ResponseHandlingException):
            return TransientBackendError(f"{where}: {self._redact(str(exc.source or exc))}")
        text = self._redact(str(exc))
        lowered = text.lower()
        if isinstance(exc, ValueError):  # local mode reports problems as ValueError
            if "not found" in lowered:
                return NotFoundError(f"{where}: {text}")
            if "already exists" in lowered:
                return ConflictError(f"{where}: {text}")
            return BackendError(f"{where}: {text}")
        try:
            import httpx

            if isinstance(exc, (httpx.TransportError, httpx.TimeoutException)):
                return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
        except ImportError:  # pragma: no cover
            pass
        try:
            import grpc

            if isinstance(exc, grpc.RpcError) and exc.code() in grpc_transient_codes():
                return TransientBackendError(f"{where}: {exc.code().name}: {text}")
        except ImportError:  # pragma: no cover
            pass
        return map_common_error(exc, where, self._redact)

    def _tune_local_storage(self) -> None:
        """Let local mode's SQLite files commit without an fsync per point.

        Local mode writes every point in its own transaction; with SQLite's
        defaults each one waits for the disk (about 80 points a second here).
        Write-ahead logging with ``synchronous=NORMAL`` keeps every committed
        point through a crash of the process (a power cut may lose the last
        few) and makes a 256-point upsert about a hundred times faster. Reaches
        into qdrant-client internals, so any surprise leaves the defaults.
        """
        try:
            collections = self._client._client.collections  # QdrantLocal
            for collection in collections.values():
                conn = getattr(getattr(collection, "storage", None), "storage", None)
                if conn is not None:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
        except Exception:  # noqa: BLE001 - an optimisation only
            log.debug("could not tune Qdrant local storage", exc_info=True)


def _is_local_client(client: Any) -> bool:
    if client is None:
        return False
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _client_location(client: Any) -> str:
    """Where an application's own client points, without credentials."""
    inner = getattr(client, "_client", None)
    folder = getattr(inner, "location", None)
    if _is_local_client(client):
        return f"qdrant+local:{folder}"
    rest = getattr(inner, "rest_uri", None) or "a Qdrant server"
    return redact_url(str(rest))


def _response_detail(exc: Any) -> str:
    content = exc.content
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        parsed = json.loads(content)
        detail = parsed.get("status", {}).get("error") or content
    except (ValueError, AttributeError):
        detail = content or exc.reason_phrase
    return str(detail)[:500]
