"""``TableStore``: the ``VectorStore`` operations on PostgreSQL tables and views.

Collections are tables (``create_collection`` makes them and records them in the
catalog), points are rows written by ``COPY``, searches are ``ORDER BY`` the
metric's distance operator, and an alias is a view repointed in one transaction.
The connection, the error mapping and the catalog lookups are ``connection.py``'s;
``shared_store.PgvectorStore`` adds langchain-postgres' shared table on top.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from reindexer.adapters.base import (
    DOC_ID_KEY,
    META_ANN_INDEX,
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    MODEL_KEY,
    CollectionInfo,
    CollectionSpec,
    Hit,
    Point,
)
from reindexer.adapters.collection_schema import CollectionSchema
from reindexer.adapters.metadata import check_metadata, split_metadata, validate_spec
from reindexer.adapters.pgvector.connection import PgConnection
from reindexer.adapters.pgvector.layout import (
    ALIASES,
    ANN_INDEXES,
    CATALOG,
    OPS,
    ann_settings,
    build_limits,
    build_memory,
    build_session,
    check_ann_params,
    check_dim,
    check_name,
    containment,
    grants,
    index_name,
    index_sql,
    ivfflat_kmeans,
    jsonb,
    parallel_workers,
    point_of,
    psycopg_module,
    score,
    sql_module,
    time_build,
)
from reindexer.adapters.pgvector.tables import (
    TableLayout,
    application_tables,
    check_columns_copyable,
    create_from_schema,
    id_match,
    payload_of,
    payload_sql,
    row_of,
    select_list,
    table_schema,
    write_rows,
)
from reindexer.errors import BackendError, ConflictError, UsageError

log = logging.getLogger(__name__)


class TableStore(PgConnection):
    """A PostgreSQL database (server or embedded) as a vector store: tables, rows, views."""

    # -- collections ---------------------------------------------------------
    def list_collections(self) -> list[str]:
        sql = sql_module()

        def run() -> list[str]:
            # An application's table (one vector column, a one-column key) is a collection too: adopt takes it on.
            names = set(application_tables(self._client))
            if not self._has_catalog and self._relation_kind(self._client, CATALOG) != "r":
                return sorted(names)
            self._has_catalog = True
            rows = self._client.execute(
                sql.SQL(
                    "SELECT c.name FROM {} c JOIN pg_class r ON r.relname = c.name AND r.relkind = 'r' "
                    "JOIN pg_namespace n ON n.oid = r.relnamespace AND n.nspname = current_schema() ORDER BY c.name"
                ).format(sql.Identifier(CATALOG))
            ).fetchall()
            return sorted(names | {str(r[0]) for r in rows})

        return self._call(run, "list collections")

    def create_collection(self, spec: CollectionSpec) -> None:
        validate_spec(spec, ANN_INDEXES, "pgvector")
        check_ann_params(spec.index_params)
        check_name(spec.name)
        check_dim(spec.dim)  # plan refuses it first; this guards other callers
        self._check_new_collection(spec.name, spec.name in self.list_aliases())
        sql = sql_module()
        table = sql.Identifier(spec.name)
        metadata = dict(spec.metadata)
        metadata[META_PAYLOAD_INDEXES] = json.dumps(spec.payload_indexes, sort_keys=True)
        metadata[META_INDEX_PARAMS] = json.dumps(spec.index_params, sort_keys=True)

        def create() -> None:
            conn = self._client
            with conn.transaction():
                self._ensure_catalog(conn)
                if self._relation_kind(conn, spec.name) is not None:
                    raise ConflictError(
                        f"a table or view named {spec.name!r} that reindexer did not make exists on {self.location}"
                    )
                self._layouts.pop(spec.name, None)
                if spec.schema is not None and spec.schema.backend == self.backend:
                    # An application's table: its columns, key and indexes again (tables.py).
                    create_from_schema(conn, spec.name, spec.schema, spec.dim)
                else:
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {} (id text PRIMARY KEY, embedding vector({}) NOT NULL, "
                            "payload jsonb NOT NULL DEFAULT '{{}}')"
                        ).format(table, sql.Literal(spec.dim))
                    )
                if spec.payload_indexes and spec.schema is None:
                    conn.execute(
                        sql.SQL("CREATE INDEX {} ON {} USING gin (payload jsonb_path_ops)").format(
                            sql.Identifier(index_name("gin", spec.name)), table
                        )
                    )
                conn.execute(
                    sql.SQL("INSERT INTO {} (name, dim, metric, metadata) VALUES (%s, %s, %s, %s)").format(
                        sql.Identifier(CATALOG)
                    ),
                    (spec.name, spec.dim, spec.metric, jsonb(metadata)),
                )

        self._call(create, f"create collection {spec.name!r}")

    def drop_collection(self, name: str) -> None:
        self._check_droppable(name, lambda: name in self.list_aliases())
        sql = sql_module()

        def drop() -> None:
            with self._client.transaction():
                self._ensure_catalog(self._client)  # an application's table may have no catalog row
                self._client.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                self._client.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(CATALOG)), (name,))
            self._layouts.pop(name, None)

        self._call(drop, f"drop collection {name!r}")

    def describe(self, name: str) -> CollectionInfo:
        _, dim, metric, raw = self._target(name)
        metadata, indexes, params = split_metadata(raw)
        return CollectionInfo(
            name=name,
            dim=dim,
            metric=metric,
            metadata=metadata,
            payload_indexes=indexes or {},
            index_params=params or {},
            ann_index=_built_index(raw),
        )

    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        check_metadata(metadata)
        target, dim, metric, _ = self._target(name)
        sql = sql_module()

        def merge() -> None:
            # An application's table gets its catalog row here, when adopt records its model: the table is untouched.
            with self._client.transaction():
                self._ensure_catalog(self._client)
                self._client.execute(
                    sql.SQL(
                        "INSERT INTO {c} (name, dim, metric, metadata) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET metadata = {c}.metadata || EXCLUDED.metadata"
                    ).format(c=sql.Identifier(CATALOG)),
                    (target, dim, metric, jsonb(metadata)),
                )

        self._call(merge, f"set metadata of {target!r}")

    def read_schema(self, name: str) -> CollectionSchema | None:
        """An application's table as a ``CollectionSchema`` (tables.py); None for the tool's own layout."""
        target, _, metric, _ = self._target(name)
        layout = self._call(lambda: self._layout(target), f"read the columns of {target!r}")
        if layout is None or layout.own:
            return None
        return self._call(lambda: table_schema(self._client, target, layout, metric), f"read the schema of {target!r}")

    def holds_point_tags(self, name: str) -> bool:
        layout = self._table_layout(self._target(name)[0])
        return layout.own or layout.tag_column is not None

    def check_copyable(self, name: str, dim: int | None = None) -> None:
        """An application's table with an identity column is refused before migrate or apply copies it (tables.py)."""
        target = self._target(name)[0]
        layout = self._call(lambda: self._layout(target), f"read the columns of {target!r}")
        if layout is not None:
            check_columns_copyable(target, layout)

    def _table_layout(self, target: str) -> TableLayout:
        layout = self._call(lambda: self._layout(target), f"read the columns of {target!r}")
        if layout is None:
            raise BackendError(f"{target!r} on {self.location} has no single vector column and one-column key")
        return layout

    # -- points --------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        target, dim, _, _ = self._target(name)
        if not points:
            return
        layout = self._table_layout(target)
        if not layout.own:
            self._upsert_rows(name, target, layout, dim, points)
            return
        from pgvector import Vector

        rows: dict[str, tuple[str, Any, dict[str, Any]]] = {}
        for p in points:
            if p.vector is None:
                raise UsageError(f"point {p.doc_id!r} has no vector")
            if len(p.vector) != dim:
                raise UsageError(f"point {p.doc_id!r} has a vector of {len(p.vector)} dimensions; {name!r} holds {dim}")
            if p.other_vectors:
                raise BackendError("pgvector collections the tool makes hold one vector per point")
            payload = {k: v for k, v in p.payload.items() if k != DOC_ID_KEY}
            rows[p.doc_id] = (p.doc_id, Vector([float(x) for x in p.vector]), payload)  # the last one wins
        sql = sql_module()

        table = sql.Identifier(target)

        def write() -> None:
            # An upsert replaces whole points: delete the batch's ids, then COPY the rows straight in, in one
            # transaction (readers see the old points or the new). Measured here at about 10,000 rows/s for
            # 384 dimensions, against 6,000 to 8,000 through a staging table and INSERT ... ON CONFLICT.
            conn = self._client
            with conn.transaction():
                conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(table), (list(rows),))
                with conn.cursor() as cur:
                    with cur.copy(
                        sql.SQL("COPY {} (id, embedding, payload) FROM STDIN (FORMAT BINARY)").format(table)
                    ) as copy:
                        copy.set_types(["text", "vector", "jsonb"])
                        for row in rows.values():
                            copy.write_row(row)

        self._call(write, f"upsert {len(rows)} points into {name!r}")

    def _upsert_rows(self, name: str, target: str, layout: TableLayout, dim: int, points: Sequence[Point]) -> None:
        """An upsert into an application's table: its columns typed by PostgreSQL from JSON rows (tables.py)."""
        rows: dict[str, dict[str, Any]] = {}
        for p in points:
            if p.vector is None or len(p.vector) != dim:
                raise UsageError(f"point {p.doc_id!r} needs a vector of {dim} dimensions for {name!r}")
            if p.other_vectors:
                raise BackendError(f"{target!r} holds one vector per point")
            rows[p.doc_id] = row_of(layout, p, [float(x) for x in p.vector])  # the last one wins

        def write() -> None:
            with self._client.transaction():
                write_rows(self._client, target, layout, list(rows.values()))

        self._call(write, f"upsert {len(rows)} points into {name!r}")

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        target = self._target(name)[0]
        if not doc_ids:
            return
        sql = sql_module()
        match = id_match(self._table_layout(target))
        self._call(
            lambda: self._client.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(target), match), (list(set(doc_ids)),)
            ),
            f"delete {len(doc_ids)} points from {name!r}",
        )

    def count(self, name: str) -> int:
        target = self._target(name)[0]
        sql = sql_module()
        row = self._call(
            lambda: self._client.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(target))).fetchone(),
            f"count {name!r}",
        )
        return int(row[0])

    @staticmethod
    def _points(layout: TableLayout, rows: list[Any]) -> list[Point]:
        points = [point_of(r) for r in rows]
        if not layout.own:
            for p in points:
                p.payload = payload_of(layout, p.payload)
        return points

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        target = self._target(name)[0]
        yield from self._table_pages(name, target, self._table_layout(target), batch_size, with_vectors)

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """The rows whose ``key`` is missing or another value, found by PostgreSQL: only they leave the server,
        where the interface's default would read every row's payload to look at its tag (the catch-up's read)."""
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        target = self._target(name)[0]
        layout = self._table_layout(target)
        sql = sql_module()
        if layout.own:
            tag = sql.SQL("t.payload -> %s")
        elif key == MODEL_KEY and layout.tag_column is not None:  # the tag lives in the table's JSON column
            tag = sql.SQL("CAST({} AS jsonb) -> %s").format(sql.Identifier("t", layout.tag_column))
        else:  # an application's columns by name: the default's filter
            yield from super().scroll_untagged(name, key, value, batch_size)
            return
        untagged = sql.SQL("{} IS DISTINCT FROM to_jsonb(CAST(%s AS text))").format(tag)
        yield from self._table_pages(name, target, layout, batch_size, False, untagged, (key, value))

    def _table_pages(
        self,
        name: str,
        target: str,
        layout: TableLayout,
        batch_size: int,
        with_vectors: bool,
        condition: Any = None,
        params: tuple[Any, ...] = (),
    ) -> Iterator[list[Point]]:
        """Pages of ``target``'s rows (those meeting ``condition``, if given) in key order, each page read after
        the last key of the one before: no cursor is held open between pages."""
        sql = sql_module()
        key = sql.Identifier("t", layout.id_column)
        query = sql.SQL(
            "SELECT {} FROM {} t WHERE (%s::text IS NULL OR {} > CAST(%s AS {})) {} ORDER BY {} LIMIT %s"
        ).format(
            select_list(layout, with_vectors),
            sql.Identifier(target),
            key,
            sql.SQL(layout.id_type),
            sql.SQL("AND {}").format(condition) if condition is not None else sql.SQL(""),
            key,
        )
        after: str | None = None
        while True:
            rows = self._call(
                lambda a=after: self._client.execute(query, (a, a, *params, batch_size)).fetchall(), f"scroll {name!r}"
            )
            if rows:
                yield self._points(layout, rows)
                after = rows[-1][0]
            if len(rows) < batch_size:
                return

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        target = self._target(name)[0]
        unique = list(dict.fromkeys(doc_ids))
        if not unique:
            return []
        layout = self._table_layout(target)
        sql = sql_module()
        query = sql.SQL("SELECT {} FROM {} t WHERE {}").format(
            select_list(layout, with_vectors), sql.Identifier(target), id_match(layout)
        )
        rows = self._call(lambda: self._client.execute(query, (unique,)).fetchall(), f"retrieve from {name!r}")
        return self._points(layout, rows)

    def search(
        self,
        name: str,
        vector: Sequence[float],
        k: int,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        from pgvector import Vector

        target, dim, metric, raw = self._target(name)
        if len(vector) != dim:
            raise UsageError(f"the query vector has {len(vector)} dimensions; {name!r} holds {dim}")
        contained = containment(where)
        ops, operator = OPS[metric]
        layout = self._table_layout(target)
        sql = sql_module()
        query = sql.SQL(
            "SELECT {id}::text, {payload}, {v} {op} %s AS distance FROM {t} t {w} ORDER BY distance LIMIT %s"
        ).format(
            id=sql.Identifier("t", layout.id_column),
            payload=payload_sql(layout),
            v=sql.Identifier("t", layout.vector_column),
            op=sql.SQL(operator),
            t=sql.Identifier(target),
            w=sql.SQL("WHERE {} @> %s").format(payload_sql(layout)) if contained is not None else sql.SQL(""),
        )
        params: list[Any] = [Vector([float(x) for x in vector])]
        if contained is not None:
            params.append(jsonb(contained))
        params.append(k)
        # HNSW returns at most ef_search rows, and a filter is applied after the index scan: both ask for more.
        ef_search = min(1000, max(40, k) * (4 if contained is not None else 1))
        # IVFFlat scans the recorded probes' lists (pgvector's default is one), four times as many under a filter.
        built = _built_index(raw)
        probes = None
        if built.get("kind") == "ivfflat":
            probes = min(int(built["lists"]), int(built["probes"]) * (4 if contained is not None else 1))

        def run() -> list[Any]:
            # session settings, sent only when they change: one round trip a query
            if probes is not None and self._ivfflat_probes != probes:
                self._client.execute(sql.SQL("SET ivfflat.probes = {}").format(sql.Literal(probes)))
                self._ivfflat_probes = probes
            elif probes is None and self._ef_search != ef_search:
                self._client.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(ef_search)))
                self._ef_search = ef_search
            return list(self._client.execute(query, params).fetchall())

        rows = self._call(run, f"search {name!r}")
        hits = [Hit(doc_id=str(r[0]), score=score(metric, float(r[2])), payload=dict(r[1] or {})) for r in rows]
        if not layout.own:
            for h in hits:
                h.payload = payload_of(layout, h.payload)
        return hits

    def finish_writes(self, name: str) -> None:
        """Build the ANN index (HNSW, or IVFFlat with its lists learnt from the rows) once the bulk load is in:
        far quicker than growing it row by row. What was built, over how many rows and in how long, goes into
        the catalog's metadata (``describe().ann_index``): searches read IVFFlat's probes there."""
        target, dim, metric, raw = self._target(name)
        if META_INDEX_PARAMS not in raw:
            return  # an application's own table, adopted: its indexes are the application's to make
        _, _, params = split_metadata(raw)
        sql = sql_module()
        vector = self._table_layout(target).vector_column
        names = [index_name(kind, target) for kind in ANN_INDEXES]

        def build() -> dict[str, Any] | None:
            conn = self._client
            if conn.execute("SELECT 1 FROM pg_class WHERE relname = ANY(%s)", (names,)).fetchone():
                return None
            with conn.transaction():
                limits = build_session(conn)
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(target))).fetchone()
                rows = int(count[0])
                settings = ann_settings(params or {}, rows)
                started = time.monotonic()
                conn.execute(index_sql(index_name(settings["kind"], target), target, vector, metric, settings))
                seconds = time.monotonic() - started
                built = {**settings, **limits, "rows": rows, "dim": dim, "seconds": round(seconds, 3)}
                built["memory"] = build_memory(settings, dim, rows)
                built["built_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                conn.execute(
                    sql.SQL("UPDATE {} SET metadata = metadata || %s WHERE name = %s").format(sql.Identifier(CATALOG)),
                    (jsonb({META_ANN_INDEX: json.dumps(built, sort_keys=True)}), target),
                )
            return built

        built = self._call(build, f"build the ANN index of {target!r}")
        if built is not None:
            log.info("%s: %s index of %s built in %.2fs", self.location, built["kind"], target, built["seconds"])

    def ann_index_plan(self, dim: int, metric: str, index_params: dict[str, Any], rows: int) -> dict[str, Any] | None:
        settings = ann_settings(index_params, rows)
        limits = self._call(lambda: build_limits(self._client), "read the index build settings")
        return {
            **settings,
            "memory": build_memory(settings, dim, rows),
            "maintenance_work_mem": limits["maintenance_work_mem"],
            # past maintenance_work_mem HNSW goes on building on disk; IVFFlat's k-means stops with an error
            "over_memory": "slows"
            if settings["kind"] == "hnsw"
            else "fails"
            if ivfflat_kmeans(settings, rows)
            else None,
            "parallel_workers": parallel_workers(rows, dim, limits["parallel_workers"]),
        }

    def time_index_build(self, dim: int, metric: str, settings: dict[str, Any], rows: int) -> float | None:
        return self._call(lambda: time_build(self._client, dim, metric, settings, rows), "time a small index build")

    # -- aliases -------------------------------------------------------------
    def list_aliases(self) -> dict[str, str]:
        sql = sql_module()

        def run() -> dict[str, str]:
            if not self._has_catalog and self._relation_kind(self._client, CATALOG) != "r":
                return {}
            self._has_catalog = True
            rows = self._client.execute(sql.SQL("SELECT alias, target FROM {}").format(sql.Identifier(ALIASES)))
            return {str(a): str(t) for a, t in rows.fetchall()}

        return self._call(run, "list aliases")

    def set_alias(self, alias: str, collection: str) -> None:
        self._check_alias_target(alias, collection)
        check_name(alias, "alias")
        current = self.list_aliases().get(alias)
        if current == collection:
            return
        sql = sql_module()
        view, table = sql.Identifier(alias), sql.Identifier(collection)
        psycopg = psycopg_module()

        def swap() -> None:
            conn = self._client
            with conn.transaction():
                self._ensure_catalog(conn)
                kind = self._relation_kind(conn, alias)
                if current is None and kind is not None:
                    raise ConflictError(
                        f"a table or view named {alias!r} that reindexer did not make exists on {self.location}",
                        hint="migrate it to a versioned name first, or choose another alias",
                    )
                create = sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(view, table)
                if kind == "v":
                    try:
                        with conn.transaction():  # a savepoint: the replace fails on a change of column type
                            conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}").format(view, table))
                    except (psycopg.errors.InvalidTableDefinition, psycopg.errors.FeatureNotSupported):
                        # A dimension change: drop and create in this same transaction, and keep the grants.
                        kept_grants = grants(conn, alias)
                        conn.execute(sql.SQL("DROP VIEW {}").format(view))
                        conn.execute(create)
                        for statement in kept_grants:
                            conn.execute(statement)
                else:
                    conn.execute(create)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (alias, target) VALUES (%s, %s) ON CONFLICT (alias) DO UPDATE SET target = %s"
                    ).format(sql.Identifier(ALIASES)),
                    (alias, collection, collection),
                )

        self._call(swap, f"set alias {alias!r} -> {collection!r}")

    def replace_by_alias(self, name: str, collection: str) -> bool:
        """The table ``name`` dropped and a view of that name over ``collection`` made in one transaction (DDL is
        transactional here): a reader waits on the table's lock, then reads the view. The privileges others held
        on the table are granted on the view, through which they go on reading and writing."""
        self._check_droppable(name, lambda: name in self.list_aliases())

        def both() -> None:
            conn = self._client
            try:
                with conn.transaction():
                    kept_grants = grants(conn, name)
                    self.drop_collection(name)  # its own transaction and the alias's become savepoints of this one
                    self.set_alias(name, collection)
                    for statement in kept_grants:
                        conn.execute(statement)
            except BaseException:
                self._has_catalog = False  # the rolled-back transaction may have made the catalog and taken it away
                raise

        self._call(both, f"replace {name!r} by an alias of {collection!r}")
        return True

    def drop_alias(self, alias: str) -> None:
        if alias not in self.list_aliases():
            return
        sql = sql_module()

        def drop() -> None:
            with self._client.transaction():
                self._client.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(alias)))
                self._client.execute(
                    sql.SQL("DELETE FROM {} WHERE alias = %s").format(sql.Identifier(ALIASES)), (alias,)
                )

        self._call(drop, f"drop alias {alias!r}")


def _built_index(raw: dict[str, Any]) -> dict[str, Any]:
    """The ANN index ``finish_writes`` recorded in a catalog row's metadata; empty before it built one."""
    try:
        built = json.loads(raw.get(META_ANN_INDEX) or "{}")
    except (TypeError, ValueError):
        return {}
    return built if isinstance(built, dict) else {}
