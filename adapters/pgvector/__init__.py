"""The pgvector adapter: PostgreSQL with pgvector behind the ``VectorStore`` interface, server or embedded.

This backend is not in the registry's built-in list: it is found only through the
``reindexer.backends`` entry point in pyproject.toml, the way a third party ships
one (docs/adapters.md).

Store URLs
    ``pgvector://HOST[:5432]/DB`` is a PostgreSQL server. Credentials never travel in the
    URL: libpq reads ``PGUSER``, ``PGPASSWORD``, ``PGPASSFILE`` (and ``PGSSLMODE`` and the
    rest of its environment) itself, and ``PGPASSWORD_FILE`` names a file holding the
    password. ``pgvector+local:PATH`` is the PostgreSQL that the ``pgserver`` package ships
    (pgvector included), started on a data folder at PATH and reached over a Unix socket
    inside it, so it listens on no network address; processes opening the same folder
    share one server, which stops when the last of them closes it.

A collection
    A version is a table in the connection's current schema::

        id text PRIMARY KEY, embedding vector(DIM) NOT NULL, payload jsonb NOT NULL

    The document id is the primary key; the application's payload is the JSONB column,
    copied untouched. Each table the tool made has a row in ``reindexer_collections``
    (name, dim, metric, metadata jsonb): the collection metadata, with the payload index
    spec and index settings under the shared ``reindex.*`` keys.

An alias
    A view ``CREATE VIEW alias AS SELECT * FROM docs__v2``, recorded in
    ``reindexer_aliases``. A cut-over repoints it in one transaction: ``CREATE OR REPLACE
    VIEW`` where the columns keep their types, else (a dimension change) ``DROP VIEW`` and
    ``CREATE VIEW`` with the grants copied over. PostgreSQL's DDL is transactional and a
    reader waiting for the view's lock looks the name up again once it is granted, so
    readers see the old view or the new one, never none.

The ANN index
    HNSW, or IVFFlat where the plan asks for it (``--ann-index ivfflat``: index setting
    ``ann_index``), over ``embedding`` with the operator class of the metric (cosine
    ``vector_cosine_ops``, dot ``vector_ip_ops``, euclid ``vector_l2_ops``), built by
    ``finish_writes`` after the bulk load, not row by row during it. HNSW takes the recorded
    ``hnsw_m`` and ``hnsw_ef_construct`` (pgvector's defaults 16 and 64 otherwise); IVFFlat
    the recorded ``ivf_lists``, else pgvector's advice for the rows loaded (rows / 1000 up to
    a million, sqrt(rows) above), and ``ivf_probes``, else sqrt(lists), which searches set as
    ``ivfflat.probes``. What was built (kind, settings, rows, seconds) is recorded in the
    catalog row under ``reindex.ann_index``: ``describe().ann_index``, ``reindex status``, the
    apply's report. ``REINDEX_PG_MAINTENANCE_WORK_MEM`` and ``REINDEX_PG_PARALLEL_WORKERS`` set
    the build's ``maintenance_work_mem`` and ``max_parallel_maintenance_workers``. The plan
    states the build's time on its own line (``ann_index_plan`` and ``time_index_build``, for
    reindexer.estimate_index) and refuses an IVFFlat build that would not fit its memory.
    pgvector indexes a ``vector`` of at most 2,000 dimensions, so larger ones are refused
    before anything is created. ``quantization`` and ``shards`` are recorded, not applied (pgvector
    0.6 has no ``halfvec``; a PostgreSQL table has no shards).

Payload indexes
    One GIN index (``jsonb_path_ops``) over the payload serves every ``where`` equality
    (``payload @> '{"key": value}'``), whatever fields the spec names.

Scores
    cosine: cosine similarity; dot: inner product (both higher is better); euclid:
    Euclidean distance (lower is better). Hits come best first.

Writes
    A batch deletes its ids and copies its rows in with ``COPY ... FROM STDIN (FORMAT BINARY)``,

langchain-postgres' shared table
    ``PGVector``'s ``langchain_pg_embedding`` holds every collection's rows, keyed by
    ``collection_id`` (``langchain_pg_collection``); its document id is the key of the whole
    table. Collection ``kb`` is ``langchain_pg_embedding.kb``, an alias from the start: its
    live version (``langchain_pg_embedding.kb__v1`` until a cut-over) is the collection's rows
    in that table, every other version a table of the tool; a cut-over moves the rows in one
    transaction, never touching another collection's (``shared_table``).

Modules, bottom up: ``layout`` (catalog names, limits, name rules, SQL helpers),
``server`` (pgserver's embedded PostgreSQL), ``connection`` (the psycopg connection,
error mapping, retries, catalog lookups), ``tables`` (applications' own tables),
``store`` (``TableStore``: tables and views), ``shared_table`` (the SQL of the shared
table) and ``shared_store`` (``PgvectorStore``, the ``VectorStore``). Here:
``PgvectorBackend``, which the ``reindexer.backends`` entry point names; importing it
imports no client library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from reindexer.adapters.addressing import StoreLocation, parse_embedded_path, parse_server_address, secret_from_env
from reindexer.adapters.backend import Backend
from reindexer.adapters.base import VectorStore
from reindexer.adapters.pgvector.layout import (
    ANN_INDEXES,
    MAX_DOC_ID_BYTES,
    NAME_RULE,
    check_ann_params,
    check_dim,
    check_name,
)
from reindexer.adapters.pgvector.shared_store import PgvectorStore
from reindexer.errors import UsageError

__all__ = ["PgvectorBackend", "PgvectorStore"]


class PgvectorBackend(Backend):
    """``pgvector+local:PATH`` (pgserver's embedded PostgreSQL), ``pgvector://HOST[:5432]/DB``."""

    name = "pgvector"
    schemes: ClassVar[tuple[str, ...]] = ("pgvector+local", "pgvector")
    examples: ClassVar[tuple[str, ...]] = ("pgvector+local:PATH", "pgvector://HOST:PORT/DB")
    secret_env = "PGPASSWORD"
    # The registry reads this to leave embedded paths out of its credentials check.
    embedded_scheme = "pgvector+local"
    default_port = 5432
    name_rule = NAME_RULE
    max_doc_id_bytes = MAX_DOC_ID_BYTES
    ann_indexes = ANN_INDEXES

    def validate_collection_name(self, name: str, what: str = "collection") -> None:
        check_name(name, what)

    def validate_dim(self, dim: int) -> None:
        check_dim(dim)

    def validate_index_params(self, index_params: dict[str, Any]) -> None:
        check_ann_params(index_params)

    def parse(self, scheme: str, rest: str, base_dir: Path | None) -> StoreLocation:
        if scheme == self.embedded_scheme:
            p = parse_embedded_path(scheme, rest, base_dir)
            return StoreLocation(scheme, self.name, True, str(p), f"{scheme}:{p}")
        url = f"{scheme}:{rest}"
        if "?" in rest or "#" in rest:
            raise UsageError(
                f"store URL {url} has options; pgvector URLs are pgvector://HOST:PORT/DB",
                hint="set libpq's environment variables (PGSSLMODE, PGCONNECT_TIMEOUT, ...) instead",
            )
        if not rest.startswith("//"):
            raise UsageError(f"store URL {url} has no host", hint="use pgvector://HOST:PORT/DB")
        authority, _, db = rest[2:].partition("/")
        host_port = parse_server_address(url, f"//{authority}", self.default_port, self.secret_env)
        if not db or "/" in db:
            raise UsageError(f"store URL {url} names no database", hint="use pgvector://HOST:PORT/DB")
        return StoreLocation(scheme, self.name, False, f"{host_port}/{db}", f"{scheme}://{host_port}/{db}")

    def exists(self, location: StoreLocation) -> bool:
        return not location.embedded or Path(location.target).exists()

    def open(self, location: StoreLocation) -> VectorStore:
        if location.embedded:
            return PgvectorStore(path=location.target)
        host_port, _, db = location.target.partition("/")
        host, _, port = host_port.rpartition(":")
        return PgvectorStore(
            host=host, port=int(port), dbname=db, password=secret_from_env(self.secret_env), location=location.url
        )
