"""langchain-postgres' shared table: one ``langchain_pg_embedding`` for every collection, keyed by collection.

langchain-postgres' ``PGVector`` (``langchain_postgres.vectorstores``, 0.0.x) keeps every
collection in two tables::

    langchain_pg_collection(uuid PRIMARY KEY, name UNIQUE, cmetadata json)
    langchain_pg_embedding(id varchar PRIMARY KEY, collection_id uuid REFERENCES
                           langchain_pg_collection ON DELETE CASCADE,
                           embedding vector, document varchar, cmetadata jsonb)

and on every call looks its collection up by name (``get_by_name``) and reads or
writes the rows of that uuid. The document id is the primary key of the whole
table, not of one collection, so two versions of a collection can never both be
rows of it. A collection ``kb`` is addressed as ``langchain_pg_embedding.kb``;
that name is an alias whose live version (``langchain_pg_embedding.kb__v1``
until the first cut-over) *is* the collection's rows in the shared table (the
"slice"), and every other version is a table of the tool named by it, with the
shared table's columns but ``collection_id``. A cut-over moves rows, in one
transaction: the slice into a new table of the outgoing version, the incoming
version's table into the slice (under the collection's uuid), that table
dropped. The collection's row in ``langchain_pg_collection`` is locked for the
move (an application's insert of a new row waits for it) but never changed, and
no statement here reads or writes a row of another collection: every one is
bounded by ``collection_id``, and an id that another collection holds is
refused (``ConflictError``) rather than overwritten.

Plain functions over a connection (the caller's transaction); the routing of names
is ``shared_store.py``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.adapters.names import safe_name_problem
from reindexer.adapters.pgvector.layout import (
    MAX_IDENTIFIER_BYTES,
    OPS,
    containment,
    jsonb,
    point_of,
    sql_module,
)
from reindexer.adapters.pgvector.tables import Column, TableLayout, ann_metric, payload_of, read_layout, row_of
from reindexer.errors import ConflictError, NotFoundError, UsageError

SHARED_TABLE = "langchain_pg_embedding"
COLLECTION_TABLE = "langchain_pg_collection"
KEY_COLUMN = "collection_id"
#: ``langchain_pg_embedding.NAME`` names the collection NAME of the shared table.
PREFIX = f"{SHARED_TABLE}."
_VERSION = re.compile(r"(?P<collection>.+)__v(?P<number>[0-9]+)")
ADDRESSING_HINT = (
    f"address one collection of it as {PREFIX}NAME (NAME as in {COLLECTION_TABLE}.name), "
    f"e.g. `reindex adopt {PREFIX}NAME --model PATH --text-field document`"
)


@dataclass(frozen=True)
class SharedName:
    """A name under ``langchain_pg_embedding.``: the collection's alias, or one of its versions."""

    collection: str
    version: int | None  # None: the alias (the logical name)

    @property
    def alias(self) -> str:
        return f"{PREFIX}{self.collection}"

    def version_name(self, number: int) -> str:
        return f"{self.alias}__v{number}"

    @property
    def first(self) -> str:
        """The live version of a collection no cut-over has moved yet: its rows as the application made them."""
        return self.version_name(1)


def parse_name(name: str) -> SharedName | None:
    """``langchain_pg_embedding.kb`` -> (kb, None); ``langchain_pg_embedding.kb__v2`` -> (kb, 2); else None."""
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        return None
    rest = name[len(PREFIX) :]
    found = _VERSION.fullmatch(rest)
    return SharedName(found["collection"], int(found["number"])) if found else SharedName(rest, None)


def addressable(collection: str) -> bool:
    """Whether langchain's collection name makes a name the tool can hold (its versions' included)."""
    alias = f"{PREFIX}{collection}"
    return (
        safe_name_problem(alias) is None
        and len(alias.encode("utf-8")) + len("__v99") <= MAX_IDENTIFIER_BYTES
        and _VERSION.fullmatch(collection) is None  # kb__v2 would read as a version of kb
    )


@dataclass(frozen=True)
class SharedLayout:
    """The shared table's columns as langchain-postgres made them."""

    columns: tuple[Column, ...]
    #: why the tool cannot take it on (another layout of the same name), or None
    problem: str | None = None

    @property
    def vector_type(self) -> str:
        return next(c.type for c in self.columns if c.name == "embedding")

    @property
    def dim(self) -> int | None:
        """The dimension every row must have (``vector(384)``), or None for an untyped ``vector`` column."""
        found = re.fullmatch(r"vector\((\d+)\)", self.vector_type)
        return int(found[1]) if found else None

    @property
    def version_columns(self) -> tuple[Column, ...]:
        """A version table's columns: the shared table's but ``collection_id``."""
        return tuple(c for c in self.columns if c.name != KEY_COLUMN)

    def rows(self, dim: int) -> TableLayout:
        """The slice as the tool reads it: id, vector, payload columns, the tag in the one JSON column."""
        payload = [c for c in self.version_columns if c.name not in ("id", "embedding")]
        json_columns = [c.name for c in payload if c.type in ("json", "jsonb")]
        tag = json_columns[0] if len(json_columns) == 1 else None
        return TableLayout(self.version_columns, "id", "embedding", dim, tag, own=False)


def read_shared_layout(conn: Any) -> SharedLayout | None:
    """The shared table's layout; None where the schema has no such table (or a table of that name that is
    not keyed by collection, which is then an application's table like any other)."""
    table = read_layout(conn, SHARED_TABLE)
    if table is None or KEY_COLUMN not in {c.name for c in table.columns}:
        return None
    has_collections = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "WHERE c.relname = %s AND c.relkind = 'r'",
        (COLLECTION_TABLE,),
    ).fetchone()
    problem = None
    if table.id_column != "id":
        # langchain_community's PGVector: a generated uuid key, the document's own id in custom_id.
        problem = (
            f"its rows are keyed on {table.id_column!r}, not on the document id (langchain_community's "
            "older PGVector layout); only langchain-postgres' layout (id PRIMARY KEY) is supported"
        )
    elif has_collections is None:
        problem = f"there is no {COLLECTION_TABLE} table beside it"
    return SharedLayout(table.columns, problem)


# -- the collection row ------------------------------------------------------------
def collection_uuid(conn: Any, collection: str, lock: bool = False) -> Any:
    """The uuid of langchain's collection ``collection``; ``lock``: FOR UPDATE, which holds back an
    application's insert of a new row into it (its foreign key check) until the transaction ends."""
    sql = sql_module()
    row = conn.execute(
        sql.SQL("SELECT uuid FROM {} WHERE name = %s{}").format(
            sql.Identifier(COLLECTION_TABLE), sql.SQL(" FOR UPDATE" if lock else "")
        ),
        (collection,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no collection {collection!r} in {COLLECTION_TABLE}")
    return row[0]


def collection_names(conn: Any) -> list[str]:
    sql = sql_module()
    rows = conn.execute(sql.SQL("SELECT name FROM {} ORDER BY name").format(sql.Identifier(COLLECTION_TABLE)))
    return [str(r[0]) for r in rows.fetchall()]


def slice_shape(conn: Any, layout: SharedLayout, uuid: Any) -> tuple[int, str]:
    """(dim, metric) of a collection's rows, for a live version the catalog does not know yet: the column's
    dimension, else the rows' own (one, or the collection is refused); the metric of an ANN index on the
    shared column, else cosine (PGVector's default distance strategy)."""
    dim = layout.dim
    if dim is None:
        sql = sql_module()
        dims = conn.execute(
            sql.SQL("SELECT DISTINCT vector_dims(embedding) FROM {} WHERE {} = %s LIMIT 2").format(
                sql.Identifier(SHARED_TABLE), sql.Identifier(KEY_COLUMN)
            ),
            (uuid,),
        ).fetchall()
        if len(dims) != 1:
            raise UsageError(
                "the collection's rows have no vectors yet"
                if not dims
                else f"the collection's rows hold vectors of {dims[0][0]} and {dims[1][0]} dimensions (two models)",
                hint="adopt a collection whose rows one model made",
            )
        dim = int(dims[0][0])
    metric = ann_metric(conn, SHARED_TABLE, layout.rows(dim)) or "cosine"
    return dim, metric


# -- rows of one collection ---------------------------------------------------------
def _payload(layout: TableLayout) -> Any:
    """The payload of a row ``t``: its payload columns by name, as one JSONB object (as tables.py reads a table)."""
    sql = sql_module()
    parts = [sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier("t", c)) for c in layout.payload_columns]
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts))


def _select(layout: TableLayout, with_vectors: bool) -> Any:
    sql = sql_module()
    return sql.SQL("t.id::text, {}, {}").format(_payload(layout), sql.SQL("t.embedding" if with_vectors else "NULL"))


def _points(layout: TableLayout, rows: list[Any]) -> list[Point]:
    points = [point_of(r) for r in rows]
    for p in points:
        p.payload = payload_of(layout, p.payload)
    return points


def _ids(layout: TableLayout) -> Any:
    sql = sql_module()
    return sql.SQL("t.id = ANY(CAST(%s AS {}[]))").format(sql.SQL(layout.id_type))


def count_rows(conn: Any, uuid: Any) -> int:
    sql = sql_module()
    query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
        sql.Identifier(SHARED_TABLE), sql.Identifier(KEY_COLUMN)
    )
    return int(conn.execute(query, (uuid,)).fetchone()[0])


def page_rows(
    conn: Any, layout: TableLayout, uuid: Any, after: str | None, size: int, with_vectors: bool, untagged: Any = None
) -> list[Point]:
    """One page of the collection's rows in id order after ``after``; ``untagged``: only the rows whose tag
    is not this value (the catch-up's filter, evaluated by PostgreSQL)."""
    sql = sql_module()
    tag_filter = sql.SQL("")
    params: list[Any] = [uuid, after, after]
    if untagged is not None and layout.tag_column is not None:
        tag_filter = sql.SQL(" AND NOT coalesce({}::jsonb, '{{}}') @> %s").format(
            sql.Identifier("t", layout.tag_column)
        )
        params.append(jsonb({MODEL_KEY: untagged}))
    query = sql.SQL(
        "SELECT {} FROM {} t WHERE t.{} = %s AND (%s::text IS NULL OR t.id > CAST(%s AS {})){} ORDER BY t.id LIMIT %s"
    ).format(
        _select(layout, with_vectors),
        sql.Identifier(SHARED_TABLE),
        sql.Identifier(KEY_COLUMN),
        sql.SQL(layout.id_type),
        tag_filter,
    )
    return _points(layout, conn.execute(query, [*params, size]).fetchall())


def retrieve_rows(conn: Any, layout: TableLayout, uuid: Any, ids: list[str], with_vectors: bool) -> list[Point]:
    sql = sql_module()
    query = sql.SQL("SELECT {} FROM {} t WHERE t.{} = %s AND {}").format(
        _select(layout, with_vectors), sql.Identifier(SHARED_TABLE), sql.Identifier(KEY_COLUMN), _ids(layout)
    )
    return _points(layout, conn.execute(query, (uuid, ids)).fetchall())


def search_rows(
    conn: Any, layout: TableLayout, collection: str, metric: str, vector: Any, k: int, where: dict[str, Any] | None
) -> list[tuple[Point, float]]:
    """The ``k`` nearest rows of the collection (looked up by name in the same statement, as PGVector does)."""
    sql = sql_module()
    contained = containment(where)
    query = sql.SQL(
        "SELECT t.id::text, {p}, t.embedding {op} %s AS distance FROM {t} t "
        "WHERE t.{key} = (SELECT uuid FROM {c} WHERE name = %s){w} ORDER BY distance LIMIT %s"
    ).format(
        p=_payload(layout),
        op=sql.SQL(OPS[metric][1]),
        t=sql.Identifier(SHARED_TABLE),
        key=sql.Identifier(KEY_COLUMN),
        c=sql.Identifier(COLLECTION_TABLE),
        w=sql.SQL(" AND {} @> %s").format(_payload(layout)) if contained is not None else sql.SQL(""),
    )
    params: list[Any] = [vector, collection]
    if contained is not None:
        params.append(jsonb(contained))
    rows = conn.execute(query, [*params, k]).fetchall()
    return [(_points(layout, [(r[0], r[1], None)])[0], float(r[2])) for r in rows]


def _refuse_foreign_ids(conn: Any, uuid: Any, ids_sql: Any, params: tuple[Any, ...]) -> None:
    """``ConflictError`` naming the ids (of ``ids_sql``) that rows of another collection hold."""
    sql = sql_module()
    rows = conn.execute(
        sql.SQL(
            "SELECT t.id, c.name FROM {t} t LEFT JOIN {c} c ON c.uuid = t.{key} "
            "WHERE t.id IN ({ids}) AND t.{key} IS DISTINCT FROM %s ORDER BY t.id LIMIT 5"
        ).format(
            t=sql.Identifier(SHARED_TABLE),
            c=sql.Identifier(COLLECTION_TABLE),
            key=sql.Identifier(KEY_COLUMN),
            ids=ids_sql,
        ),
        (*params, uuid),
    ).fetchall()
    if rows:
        held = ", ".join(f"{r[0]!r} (collection {r[1]!r})" for r in rows)
        raise ConflictError(
            f"document ids already held by another collection of {SHARED_TABLE}: {held}",
            hint=f"{SHARED_TABLE} keys every collection's rows on one id column; give these documents other ids",
        )


def write_rows(conn: Any, layout: TableLayout, uuid: Any, points: list[Point]) -> None:
    """Insert or replace these points among the collection's rows (the caller's transaction); an id that
    another collection holds is refused, never overwritten."""
    sql = sql_module()
    rows: dict[str, dict[str, Any]] = {}
    for p in points:
        rows[p.doc_id] = {**row_of(layout, p, [float(x) for x in p.vector or []]), KEY_COLUMN: str(uuid)}
    ids = list(rows)
    _refuse_foreign_ids(conn, uuid, sql.SQL("SELECT unnest(CAST(%s AS {}[]))").format(sql.SQL(layout.id_type)), (ids,))
    names = [c.name for c in layout.columns if any(c.name in r for r in rows.values())]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in [*names, KEY_COLUMN])
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names if n != "id")
    written = conn.execute(
        sql.SQL(
            "INSERT INTO {t} ({c}) SELECT {c} FROM jsonb_populate_recordset(NULL::{t}, %s) "
            "ON CONFLICT (id) DO UPDATE SET {u} WHERE {t}.{key} = %s RETURNING id"
        ).format(t=sql.Identifier(SHARED_TABLE), c=columns, u=updates, key=sql.Identifier(KEY_COLUMN)),
        (jsonb(list(rows.values())), uuid),
    ).fetchall()
    if len(written) != len(rows):  # another collection took one of the ids since the check: nothing is kept
        _refuse_foreign_ids(
            conn, uuid, sql.SQL("SELECT unnest(CAST(%s AS {}[]))").format(sql.SQL(layout.id_type)), (ids,)
        )
        raise ConflictError(f"{len(rows) - len(written)} of {len(rows)} rows were not written to {SHARED_TABLE}")


def delete_rows(conn: Any, layout: TableLayout, uuid: Any, ids: list[str]) -> None:
    sql = sql_module()
    conn.execute(
        sql.SQL("DELETE FROM {} t WHERE t.{} = %s AND {}").format(
            sql.Identifier(SHARED_TABLE), sql.Identifier(KEY_COLUMN), _ids(layout)
        ),
        (uuid, ids),
    )


def tag_rows(conn: Any, layout: TableLayout, uuid: Any, ids: list[str], value: Any | None) -> None:
    """Set (or, for None, remove) the model tag in the tag column of these rows; nothing else is written,
    the vectors least of all."""
    sql = sql_module()
    column = sql.Identifier(layout.tag_column or "")
    change = (
        sql.SQL("coalesce({}::jsonb, '{{}}') - %s::text").format(column)
        if value is None
        else sql.SQL("coalesce({}::jsonb, '{{}}') || jsonb_build_object(%s::text, %s)").format(column)
    )
    params: tuple[Any, ...] = (MODEL_KEY,) if value is None else (MODEL_KEY, jsonb(value))
    conn.execute(
        sql.SQL("UPDATE {} t SET {} = {} WHERE t.{} = %s AND {}").format(
            sql.Identifier(SHARED_TABLE), column, change, sql.Identifier(KEY_COLUMN), _ids(layout)
        ),
        (*params, uuid, ids),
    )


# -- version tables and the cut-over ---------------------------------------------
def create_version_table(conn: Any, layout: SharedLayout, table: str, dim: int | None) -> None:
    """A version's table: the shared table's columns but ``collection_id``, keyed on ``id``; the vector
    ``vector(dim)`` (a build's, indexable), or for None the shared column's own type (a version moved out
    of the slice: whatever the slice held moves, even a row an application wrote with another model)."""
    sql = sql_module()
    parts = []
    for c in layout.version_columns:
        kind = (f"vector({int(dim)})" if dim is not None else layout.vector_type) if c.name == "embedding" else c.type
        column = sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(kind))
        if c.default is not None:
            column = sql.SQL("{} DEFAULT {}").format(column, sql.SQL(c.default))
        parts.append(sql.SQL("{} NOT NULL").format(column) if c.not_null else column)
    parts.append(sql.SQL("PRIMARY KEY (id)"))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), sql.SQL(", ").join(parts)))


def move_in(conn: Any, layout: SharedLayout, uuid: Any, outgoing: str, incoming: str) -> int:
    """The cut-over's rows, in the caller's transaction (``uuid`` locked by it): the collection's rows into a
    new table ``outgoing``, the rows of ``incoming`` into the collection, ``incoming`` dropped. How many moved in."""
    sql = sql_module()
    _refuse_foreign_ids(conn, uuid, sql.SQL("SELECT id FROM {}").format(sql.Identifier(incoming)), ())
    names = [c.name for c in layout.version_columns]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    create_version_table(conn, layout, outgoing, None)
    conn.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM {t} WHERE {key} = %s RETURNING {c}) "
            "INSERT INTO {out} ({c}) SELECT {c} FROM moved"
        ).format(
            t=sql.Identifier(SHARED_TABLE), key=sql.Identifier(KEY_COLUMN), c=columns, out=sql.Identifier(outgoing)
        ),
        (uuid,),
    )
    moved = conn.execute(
        sql.SQL("INSERT INTO {t} ({c}, {key}) SELECT {c}, %s FROM {inc}").format(
            t=sql.Identifier(SHARED_TABLE), c=columns, key=sql.Identifier(KEY_COLUMN), inc=sql.Identifier(incoming)
        ),
        (uuid,),
    ).rowcount
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(incoming)))
    return int(moved)


def vector_is_typed(conn: Any, table: str) -> bool:
    """Whether ``table``'s ``embedding`` column has a dimension (an ANN index needs one)."""
    row = conn.execute(
        "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "WHERE c.relname = %s AND a.attname = 'embedding' AND NOT a.attisdropped",
        (table,),
    ).fetchone()
    return row is not None and int(row[0]) > 0
