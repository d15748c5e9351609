"""The PostgreSQL connection under the store: connecting (server or embedded), error mapping, retries, catalog.

``PgConnection`` is the bottom layer of ``PgvectorStore``: it opens one psycopg
connection (to a server, or to pgserver's embedded PostgreSQL through
``server.py``), checks the vector extension, maps psycopg's errors into
reindexer's (``_map``), reconnects after a lost server (``_recover``), and looks a
collection or alias up in the tool's catalog, or an application's table by its columns
(``_target``, ``_layout``). No point or alias
operations here: those are ``store.py``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from reindexer.adapters.base import Capabilities, VectorStore
from reindexer.adapters.error_mapping import map_common_error
from reindexer.adapters.pgvector.layout import ALIASES, CATALOG, EXTENSION_HINT, psycopg_module, sql_module
from reindexer.adapters.pgvector.server import acquire_server, release_server
from reindexer.adapters.pgvector.tables import TableLayout, ann_metric, read_layout
from reindexer.errors import ConflictError, NotFoundError, ReindexError, TransientBackendError, UsageError

T = TypeVar("T")
log = logging.getLogger(__name__)

# SQLSTATE classes worth a retry: connection exceptions, a server shutting down or
# starting, serialization failures and deadlocks, a lock not granted in time.
_TRANSIENT_SQLSTATES = ("08", "57P", "40001", "40P01", "55P03", "53300")


class PgConnection(VectorStore):
    """One psycopg connection to PostgreSQL with pgvector, and the tool's catalog in it."""

    backend = "pgvector"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int = 5432,
        dbname: str | None = None,
        password: str | None = None,
        location: str | None = None,
    ):
        if (path is None) == (host is None):
            raise ValueError("PgvectorStore needs path= or host=")
        self._lock = threading.RLock()
        self._secrets = [password] if password else []
        self._folder: Path | None = None
        self._client: Any = None
        self._has_catalog = False
        self._ef_search: int | None = None
        self._ivfflat_probes: int | None = None
        self._layouts: dict[str, TableLayout] = {}
        self.capabilities = Capabilities(
            atomic_alias_swap=True,
            collection_metadata=True,
            payload_indexes=True,
            # pgserver's embedded server is shared by every process that opens the folder:
            # nothing is locked per process, as it is for Qdrant local or Milvus Lite.
            embedded=False,
            # One connection per store; its statements run one at a time.
            write_concurrency=1,
        )
        if path is not None:
            self._folder = Path(path).expanduser()
            self.location = f"pgvector+local:{self._folder}"
            uri = acquire_server(self._folder)
            self._connect = lambda: psycopg_module().connect(uri, autocommit=True)
            self._embedded = True
        else:
            self.location = location or f"pgvector://{host}:{port}/{dbname}"
            params: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "autocommit": True}
            if not os.environ.get("PGCONNECT_TIMEOUT"):
                params["connect_timeout"] = 10  # libpq waits for ever on a host that drops packets
            if password:
                params["password"] = password
            self._connect = lambda: psycopg_module().connect(**params)
            self._embedded = False
        try:
            self._client = self._opened(self._call_connect())
        except BaseException:
            self.close()
            raise

    # -- plumbing ------------------------------------------------------------
    def _call_connect(self) -> Any:
        """Connect with the bounded retries of every call: an unreachable server is exit 5."""
        from reindexer.retry import call_with_retries

        def attempt() -> Any:
            try:
                return self._connect()
            except Exception as exc:  # noqa: BLE001 - mapped at the boundary
                raise self._map(exc, "connect") from exc

        return call_with_retries(attempt, f"connect to {self.location}")

    def _opened(self, conn: Any) -> Any:
        """The connection with pgvector's types registered, once the extension is known to be there."""
        try:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            if row is None:
                if not self._embedded:
                    db = conn.info.dbname
                    raise UsageError(
                        f"the database {db!r} on {self.location} has no vector extension (pgvector)",
                        hint=EXTENSION_HINT,
                    )
                # The embedded server is ours, its role a superuser, and pgserver ships pgvector.
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            try:
                from pgvector.psycopg import register_vector
            except ImportError:
                raise UsageError(
                    "the pgvector backend needs the pgvector package", hint="pip install 'reindexer[pgvector]'"
                ) from None
            register_vector(conn)
            self._ef_search = self._ivfflat_probes = None  # a new session has the server's defaults
            self._has_catalog = self._relation_kind(conn, CATALOG) == "r"
            return conn
        except BaseException as exc:
            conn.close()
            if isinstance(exc, ReindexError) or not isinstance(exc, Exception):
                raise
            raise self._map(exc, "open") from exc

    def _call(self, fn: Callable[..., T], what: str, **options: Any) -> T:
        # One connection: a transaction must not interleave with another thread's statements.
        with self._lock:
            return super()._call(fn, what, **options)

    def _recover(self, exc: Exception, fn: Callable[..., T], what: str, **options: Any) -> T:
        mapped = self._map(exc, what)
        if isinstance(mapped, TransientBackendError) and self._client is not None and self._client.broken:
            # The server went away: the next attempt needs a new connection.
            try:
                old, self._client = self._client, self._opened(self._connect())
                old.close()
            except Exception:  # noqa: BLE001 - still down: the retry loop decides
                log.debug("reconnecting to %s failed", self.location, exc_info=True)
        raise mapped from exc

    def _map(self, exc: BaseException, what: str) -> ReindexError:
        psycopg = psycopg_module()
        errors = psycopg.errors
        where = f"{what} on {self.location}"
        text = self._redact(str(exc)).strip()
        state = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, errors.UndefinedTable):
            return NotFoundError(f"{where}: {text}")
        if isinstance(exc, errors.UniqueViolation):
            # Another writer inserted one of the batch's ids between its DELETE and its COPY: the batch again.
            return TransientBackendError(f"{where}: {text}")
        if isinstance(exc, (errors.DuplicateTable, errors.DuplicateObject)):
            return ConflictError(f"{where}: {text}")
        if isinstance(exc, errors.DependentObjectsStillExist):
            return ConflictError(f"{where}: {text}", hint="drop or repoint what depends on it first")
        if isinstance(exc, errors.InsufficientPrivilege):
            return UsageError(
                f"{where}: the role lacks a privilege: {text}",
                hint="grant the role what it names: CREATE on the schema to make versions and views, ownership "
                f"of the views it repoints, and read and write on {CATALOG}, {ALIASES} and the version tables; "
                "or connect as a role that has them (PGUSER)",
            )
        if isinstance(exc, errors.UndefinedObject) and "vector" in text:
            return UsageError(f"{where}: {text}", hint=EXTENSION_HINT)
        if state.startswith(_TRANSIENT_SQLSTATES):
            return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
        if isinstance(exc, psycopg.OperationalError) and not state:
            lowered = text.lower()
            if "password" in lowered or "authentication" in lowered or "role" in lowered:
                return UsageError(
                    f"{where}: {text}",
                    hint="set PGUSER and PGPASSWORD (or PGPASSWORD_FILE, or a PGPASSFILE) for the server",
                )
            if "database" in lowered and "does not exist" in lowered:
                return UsageError(f"{where}: {text}", hint="create the database first, or name another in the URL")
            # libpq could not reach the server, or lost it: worth a bounded retry.
            return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
        if isinstance(exc, psycopg.InterfaceError) and self._client is not None and self._client.closed:
            return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
        return map_common_error(exc, where, self._redact)

    def close(self) -> None:
        with self._lock:
            self._close_client()
            folder, self._folder = self._folder, None
        if folder is not None:
            release_server(folder)

    @staticmethod
    def _relation_kind(conn: Any, name: str) -> str | None:
        """'r' (table), 'v' (view), another pg_class kind, or None: ``name`` in the current schema."""
        row = conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s",
            (name,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _ensure_catalog(self, conn: Any) -> None:
        if self._has_catalog:
            return
        sql = sql_module()
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, dim integer NOT NULL, "
                "metric text NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}')"
            ).format(sql.Identifier(CATALOG))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (alias text PRIMARY KEY, target text NOT NULL REFERENCES {} (name))"
            ).format(sql.Identifier(ALIASES), sql.Identifier(CATALOG))
        )
        self._has_catalog = True

    def _target(self, name: str) -> tuple[str, int, str, dict[str, Any]]:
        """(physical table, dim, metric, raw metadata) behind a collection or alias name.

        A table the catalog does not know (an application's, not adopted yet) is found by
        its columns: its vector column's dimension, the metric of its ANN index (cosine
        without one: langchain-postgres' and LlamaIndex's default), no metadata.
        """
        sql = sql_module()

        def lookup() -> Any:
            if not self._has_catalog:
                self._has_catalog = self._relation_kind(self._client, CATALOG) == "r"
            if self._has_catalog:
                row = self._client.execute(
                    sql.SQL(
                        "SELECT c.name, c.dim, c.metric, c.metadata FROM {} c WHERE c.name = "
                        "COALESCE((SELECT a.target FROM {} a WHERE a.alias = %s), %s)"
                    ).format(sql.Identifier(CATALOG), sql.Identifier(ALIASES)),
                    (name, name),
                ).fetchone()
                if row is not None:
                    return row
            layout = self._layout(name)
            if layout is None:
                return None
            return (name, layout.dim, ann_metric(self._client, name, layout) or "cosine", {})

        row = self._call(lookup, f"look up {name!r}")
        if row is None:
            raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
        return str(row[0]), int(row[1]), str(row[2]), dict(row[3] or {})

    def _layout(self, table: str) -> TableLayout | None:
        """``table``'s columns as a collection (cached: a table's columns do not change under the tool)."""
        if table not in self._layouts:
            layout = read_layout(self._client, table)
            if layout is None:
                return None
            self._layouts[table] = layout
        return self._layouts[table]
