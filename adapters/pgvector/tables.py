"""Applications' own tables: how a table's columns map to points, and how a new version copies its shape.

A table the tool makes has the layout ``id text, embedding vector(n), payload jsonb``
(``TableLayout.own``). An application's table (langchain-postgres' ``PGVectorStore``:
``langchain_id uuid PRIMARY KEY, content text NOT NULL, embedding vector(n) NOT NULL,
langchain_metadata json``; a hand-made one) is read as it is: the document id is
its one-column primary key as text, the vector its one ``vector`` column, and the
payload every other column by name, as JSON (``to_jsonb``: json and jsonb columns
as nested values, a uuid or a timestamp as its text). Writes go back through
``jsonb_populate_recordset``, so PostgreSQL turns each value into its column's type.

The model tag of a point (``MODEL_KEY``) lives in the table's JSON column where it
has exactly one (langchain-postgres' ``langchain_metadata``), as it lives in the
payload on Qdrant, and is lifted out of it on read: an application that rewrites a
row writes its own metadata without the tag, so the catch-up finds the row, where a
column the tool added would keep the old tag through the application's
``ON CONFLICT DO UPDATE`` of the other columns (and would change its schema). A table
without a JSON column keeps the model in the catalog only (``holds_point_tags``).

A new version of an application's table is made from ``read_schema``'s
``CollectionSchema``: the same columns with their types, defaults and NOT NULL, the
same primary key and the same other indexes (the ANN index aside: ``finish_writes``
builds it after the load), the vector column's dimension the plan's. A generated
column (LlamaIndex's hybrid ``text_search_tsv``) is generated again and never
written; a ``serial`` key's sequence (LlamaIndex's ``id bigserial``) is shared by
every version and released from the original table (``release_shared_sequences``);
an identity column, whose sequence cannot be shared, is refused before a copy
(``check_columns_copyable``). Other constraints (CHECK, foreign keys) and triggers
are not copied. No connection is held here: every function is given one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reindexer.adapters.base import DOC_ID_KEY, MODEL_KEY, Point
from reindexer.adapters.collection_schema import CollectionSchema, FieldSchema
from reindexer.adapters.pgvector.layout import jsonb, sql_module
from reindexer.errors import BackendError, UsageError

#: operator class of an ANN index -> the tool's metric
_METRIC_OF_OPCLASS = {"vector_cosine_ops": "cosine", "vector_ip_ops": "dot", "vector_l2_ops": "euclid"}
_JSON_TYPES = ("json", "jsonb")
#: pg_attribute's attgenerated and attidentity codes
_GENERATED = {"s": "stored", "v": "virtual"}
_IDENTITY = {"a": "always", "d": "by default"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type: "uuid", "text", "vector(384)", "json", "character varying(20)"
    not_null: bool
    default: str | None  # the default's expression (a generated column's: its generation), as pg_get_expr writes it
    primary: bool
    #: "stored" (or PostgreSQL 18's "virtual") for a column computed from others (``GENERATED ALWAYS AS``):
    #: PostgreSQL writes it, never an INSERT (LlamaIndex's hybrid ``text_search_tsv``)
    generated: str | None = None
    #: "always" or "by default" for an identity column (``GENERATED ... AS IDENTITY``)
    identity: str | None = None


@dataclass(frozen=True)
class TableLayout:
    """Which column of a table is the id, the vector, the tag's home, and the payload."""

    columns: tuple[Column, ...]
    id_column: str
    vector_column: str
    dim: int
    #: the JSON column that holds the model tag of an application's table, or None
    tag_column: str | None
    #: True for the tool's own ``id text, embedding vector, payload jsonb`` layout
    own: bool

    @property
    def id_type(self) -> str:
        return next(c.type for c in self.columns if c.name == self.id_column)

    @property
    def payload_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.name not in (self.id_column, self.vector_column)]


def read_layout(conn: Any, table: str) -> TableLayout | None:
    """The layout of ``table`` in the current schema; None unless it is a table with one vector column
    and a one-column primary key (what a collection is here)."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), "
        "coalesce(a.attnum = ANY(i.indkey), false), t.typname, a.atttypmod, a.attgenerated, a.attidentity "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
        "WHERE c.relname = %s AND c.relkind = 'r' ORDER BY a.attnum",
        (table,),
    ).fetchall()
    columns = tuple(
        Column(str(r[0]), str(r[1]), bool(r[2]), r[3], bool(r[4]), _GENERATED.get(r[7]), _IDENTITY.get(r[8]))
        for r in rows
    )
    vectors = [(str(r[0]), int(r[6])) for r in rows if r[5] == "vector"]
    keys = [c.name for c in columns if c.primary]
    if len(vectors) != 1 or len(keys) != 1:
        return None
    (vector, dim), key = vectors[0], keys[0]
    own = [(c.name, c.type.split("(")[0]) for c in columns] == [
        ("id", "text"),
        ("embedding", "vector"),
        ("payload", "jsonb"),
    ]
    json_columns = [c.name for c in columns if c.type in _JSON_TYPES and c.name not in (key, vector)]
    tag = None if own or len(json_columns) != 1 else json_columns[0]
    return TableLayout(columns, key, vector, dim, tag, own)


def application_tables(conn: Any) -> list[str]:
    """Tables of the current schema that read as collections: one vector column, a one-column primary key."""
    rows = conn.execute(
        "SELECT DISTINCT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "AND n.nspname = current_schema() JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "AND NOT a.attisdropped JOIN pg_type t ON t.oid = a.atttypid AND t.typname = 'vector' "
        "WHERE c.relkind = 'r'"
    ).fetchall()
    return [str(r[0]) for r in rows if read_layout(conn, str(r[0])) is not None]


def ann_metric(conn: Any, table: str, layout: TableLayout) -> str | None:
    """The metric of an HNSW or IVFFlat index the application built on its vector column, if any."""
    row = conn.execute(
        "SELECT o.opcname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %s AND a.attnum = i.indkey[0] "
        "JOIN pg_opclass o ON o.oid = i.indclass[0] WHERE c.relname = %s LIMIT 1",
        (layout.vector_column, table),
    ).fetchone()
    return None if row is None else _METRIC_OF_OPCLASS.get(str(row[0]))


def other_indexes(conn: Any, table: str, layout: TableLayout) -> dict[str, dict[str, Any]]:
    """The table's indexes but its primary key and its ANN indexes, each as a name-free definition
    (``USING btree (content)``) that a new version can create again on itself."""
    rows = conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid), i.indisunique, am.amname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "AND n.nspname = current_schema() JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = ic.relam WHERE c.relname = %s AND NOT i.indisprimary",
        (table,),
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for definition, unique, method in rows:
        if method in ("hnsw", "ivfflat"):
            continue  # the tool builds the version's ANN index itself, after the load
        using = re.sub(r"^.*? ON (ONLY )?\S+ ", "", str(definition))
        out[using] = {"unique": bool(unique), "using": using}
    return out


def table_schema(conn: Any, table: str, layout: TableLayout, metric: str) -> CollectionSchema:
    """``table``'s shape as a ``CollectionSchema``: its columns, primary key and other indexes."""
    fields = tuple(
        FieldSchema(
            name=c.name,
            kind="vector" if c.name == layout.vector_column else c.type.lower(),
            params={"dim": layout.dim} if c.name == layout.vector_column else _column_params(c),
            primary=c.primary,
            nullable=not c.not_null,
            default=c.default,
        )
        for c in layout.columns
    )
    return CollectionSchema(
        backend="pgvector",
        fields=fields,
        vector=layout.vector_column,
        metric=metric,
        indexes=other_indexes(conn, table, layout),
    )


def _column_params(c: Column) -> dict[str, str]:
    """How PostgreSQL fills the column, where it does: ``{"generated": "stored"}``, ``{"identity": "always"}``."""
    return {k: v for k, v in (("generated", c.generated), ("identity", c.identity)) if v}


def check_columns_copyable(table: str, layout: TableLayout) -> None:
    """Refuse (exit 2) a table whose rows no new version could be given: an identity column's sequence
    belongs to that column, so no other table can draw its ids from it (release_shared_sequences)."""
    for c in layout.columns:
        if c.identity:
            raise UsageError(
                f"{table!r}'s column {c.name!r} is an identity column (GENERATED {c.identity.upper()} AS IDENTITY): "
                "its sequence belongs to that column, so versions of the table cannot share it and the ids the "
                "application writes into them would collide",
                hint=f"give {c.name!r} a sequence default instead: ALTER TABLE {table} ALTER COLUMN {c.name} DROP "
                f"IDENTITY; CREATE SEQUENCE {table}_{c.name}_seq; SELECT setval('{table}_{c.name}_seq', "
                f"max({c.name})) FROM {table}; ALTER TABLE {table} ALTER COLUMN {c.name} SET DEFAULT "
                f"nextval('{table}_{c.name}_seq')",
            )


def create_from_schema(conn: Any, table: str, schema: CollectionSchema, dim: int) -> None:
    """``CREATE TABLE`` with ``schema``'s columns (the vector column of ``dim``), key and other indexes.

    A generated column is generated again (from the same expression); a sequence a default draws
    from is shared with the table the schema was read from (release_shared_sequences)."""
    sql = sql_module()
    parts = []
    for f in schema.fields:
        kind = f"vector({int(dim)})" if f.name == schema.vector else f.kind
        column = sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(kind))
        if f.params.get("identity"):
            raise BackendError(f"{f.name!r} is an identity column: a new version cannot share its sequence")
        if f.params.get("generated"):
            column = sql.SQL("{} GENERATED ALWAYS AS ({}) {}").format(
                column, sql.SQL(f.default), sql.SQL(f.params["generated"].upper())
            )
        elif f.default is not None:
            column = sql.SQL("{} DEFAULT {}").format(column, sql.SQL(f.default))
        if not f.nullable:
            column = sql.SQL("{} NOT NULL").format(column)
        parts.append(column)
    keys = [sql.Identifier(f.name) for f in schema.fields if f.primary]
    parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(keys)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), sql.SQL(", ").join(parts)))
    for index in schema.indexes.values():
        conn.execute(
            sql.SQL("CREATE {}INDEX ON {} {}").format(
                sql.SQL("UNIQUE " if index.get("unique") else ""), sql.Identifier(table), sql.SQL(index["using"])
            )
        )
    release_shared_sequences(conn, table)


def release_shared_sequences(conn: Any, table: str) -> list[str]:
    """Make the sequences ``table``'s defaults draw from belong to no table; the ones released.

    A ``serial``/``bigserial`` key (LlamaIndex's ``PGVectorStore``: ``id bigserial``) draws from a
    sequence ``OWNED BY`` the application's table. A version copies the default
    (``nextval('data_kb_id_seq'::regclass)``), so every version draws from that one sequence and a
    row the application writes into any of them gets an id no version holds: the catch-up and a
    rollback carry rows across with their ids and never meet a second row of the same id. Owned
    by the original table, though, the sequence would go with it: PostgreSQL refuses to drop that
    table while another's default depends on its sequence (migrate's drop of the original, gc,
    forget). Released, it outlives every version; a sequence no default uses any more is the
    application's to drop.
    """
    sql = sql_module()
    rows = conn.execute(
        "SELECT DISTINCT n.nspname, s.relname FROM pg_attrdef ad "
        "JOIN pg_depend uses ON uses.classid = 'pg_attrdef'::regclass AND uses.objid = ad.oid "
        "AND uses.refclassid = 'pg_class'::regclass "
        "JOIN pg_class s ON s.oid = uses.refobjid AND s.relkind = 'S' "
        "JOIN pg_namespace n ON n.oid = s.relnamespace "
        "JOIN pg_depend owner ON owner.classid = 'pg_class'::regclass AND owner.objid = s.oid "
        "AND owner.refclassid = 'pg_class'::regclass AND owner.deptype = 'a' "
        "WHERE ad.adrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace "
        "AND cn.nspname = current_schema() WHERE c.relname = %s)",
        (table,),
    ).fetchall()
    for schema_name, sequence in rows:
        conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY NONE").format(sql.Identifier(schema_name, sequence)))
    return [str(r[1]) for r in rows]


# -- rows of an application's table ------------------------------------------------
def payload_sql(layout: TableLayout) -> Any:
    """The payload of a row of the table aliased ``t``: the JSONB column of the tool's layout, else every
    column but the id and the vector as one JSONB object."""
    sql = sql_module()
    if layout.own:
        return sql.SQL("t.payload")
    return sql.SQL("(to_jsonb(t) - {}::text[])").format(sql.Literal([layout.id_column, layout.vector_column]))


def select_list(layout: TableLayout, with_vectors: bool) -> Any:
    """``id, payload, vector`` of a row of the table aliased ``t``, whatever its layout."""
    sql = sql_module()
    return sql.SQL("{}::text, {}, {}").format(
        sql.Identifier("t", layout.id_column),
        payload_sql(layout),
        sql.Identifier("t", layout.vector_column) if with_vectors else sql.SQL("NULL"),
    )


def payload_of(layout: TableLayout, payload: dict[str, Any]) -> dict[str, Any]:
    """A row's payload as the tool sees it: the model tag lifted out of the tag column."""
    if layout.tag_column is None:
        return payload
    nested = payload.get(layout.tag_column)
    if isinstance(nested, dict) and MODEL_KEY in nested:
        nested = dict(nested)
        payload = {**payload, MODEL_KEY: nested.pop(MODEL_KEY), layout.tag_column: nested}
    return payload


def row_of(layout: TableLayout, p: Point, vector: list[float]) -> dict[str, Any]:
    """A point as a JSON row of ``layout``'s columns (the tag put into the tag column)."""
    payload = {k: v for k, v in p.payload.items() if k != DOC_ID_KEY}
    tag = payload.pop(MODEL_KEY, None)
    unknown = sorted(set(payload) - set(layout.payload_columns))
    if unknown:
        raise UsageError(
            f"point {p.doc_id!r} has payload keys that are not columns of the table: {', '.join(unknown)}",
            hint=f"its columns: {', '.join(layout.payload_columns)}",
        )
    if tag is not None and layout.tag_column is not None:
        nested = payload.get(layout.tag_column)
        if nested is not None and not isinstance(nested, dict):
            raise BackendError(f"point {p.doc_id!r}: {layout.tag_column} is not a JSON object; it cannot hold a tag")
        payload[layout.tag_column] = {**(nested or {}), MODEL_KEY: tag}
    return {**payload, layout.id_column: p.doc_id, layout.vector_column: vector}


def write_rows(conn: Any, table: str, layout: TableLayout, rows: list[dict[str, Any]]) -> None:
    """Replace the rows of these ids by these rows, in the caller's transaction."""
    sql = sql_module()
    # PostgreSQL computes a generated column from the row (the value read is the one it would compute).
    names = [c.name for c in layout.columns if not c.generated and any(c.name in r for r in rows)]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} = ANY(CAST(%s AS {}[]))").format(
            sql.Identifier(table), sql.Identifier(layout.id_column), sql.SQL(layout.id_type)
        ),
        ([r[layout.id_column] for r in rows],),
    )
    # A row rewritten in place (adopt's tags) keeps its id, also where the id is GENERATED ALWAYS AS IDENTITY.
    overriding = "OVERRIDING SYSTEM VALUE " if any(c.identity == "always" for c in layout.columns) else ""
    conn.execute(
        sql.SQL("INSERT INTO {t} ({c}) {o}SELECT {c} FROM jsonb_populate_recordset(NULL::{t}, %s)").format(
            t=sql.Identifier(table), c=columns, o=sql.SQL(overriding)
        ),
        (jsonb(rows),),
    )


def id_match(layout: TableLayout) -> Any:
    """``id = ANY(%s)`` for a list of document ids (text), cast to the id column's type."""
    sql = sql_module()
    return sql.SQL("{} = ANY(CAST(%s AS {}[]))").format(sql.Identifier(layout.id_column), sql.SQL(layout.id_type))
