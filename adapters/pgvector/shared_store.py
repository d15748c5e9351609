"""``PgvectorStore``: the pgvector ``VectorStore``, langchain-postgres' shared table included.

``TableStore`` (store.py) serves tables and views. This class routes the names under
``langchain_pg_embedding.`` (shared_table.py says what they mean): the collection's alias
and its live version read and write the collection's rows of the shared table; a version
that is not live is a table of the tool and goes to ``TableStore`` like any other; a
cut-over moves rows in one transaction. Every other name costs nothing here: routing
looks at the name's prefix before any query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from reindexer.adapters.base import (
    META_ANN_INDEX,
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    MODEL_KEY,
    CollectionSpec,
    Hit,
    Point,
)
from reindexer.adapters.collection_schema import CollectionSchema
from reindexer.adapters.metadata import validate_spec
from reindexer.adapters.pgvector.layout import (
    ALIASES,
    ANN_INDEXES,
    CATALOG,
    check_dim,
    check_name,
    jsonb,
    score,
    sql_module,
)
from reindexer.adapters.pgvector.shared_table import (
    ADDRESSING_HINT,
    PREFIX,
    SHARED_TABLE,
    SharedLayout,
    SharedName,
    addressable,
    collection_names,
    collection_uuid,
    count_rows,
    create_version_table,
    delete_rows,
    move_in,
    page_rows,
    parse_name,
    read_shared_layout,
    retrieve_rows,
    search_rows,
    slice_shape,
    tag_rows,
    vector_is_typed,
    write_rows,
)
from reindexer.adapters.pgvector.store import TableStore
from reindexer.adapters.pgvector.tables import TableLayout
from reindexer.errors import BackendError, ConflictError, NotFoundError, UsageError


@dataclass(frozen=True)
class _Version:
    """What a shared name means now: the version it names, whether that is live (the collection's rows)."""

    shared: SharedName
    name: str
    live: bool
    dim: int
    metric: str
    metadata: dict[str, Any]
    rows: TableLayout


class PgvectorStore(TableStore):
    """A PostgreSQL database as a vector store: tables, views, and langchain-postgres' shared table."""

    _shared_layout: SharedLayout | None = None  # read once found: the table's columns do not change under the tool

    # -- names ---------------------------------------------------------------
    def _shared_layout_now(self) -> SharedLayout | None:
        """The shared table's layout (the caller holds a ``_call``); None where there is no such table."""
        if self._shared_layout is None:
            self._shared_layout = read_shared_layout(self._client)
        return self._shared_layout

    def _shared(self, name: str) -> SharedName | None:
        """``name`` as a name under ``langchain_pg_embedding.``; None for every other name, without a query."""
        if name != SHARED_TABLE and not name.startswith(PREFIX):
            return None
        layout = self._call(self._shared_layout_now, f"read {SHARED_TABLE}")
        if layout is not None and layout.problem is not None:
            raise UsageError(f"{SHARED_TABLE} on {self.location} cannot be re-indexed by collection: {layout.problem}")
        if name == SHARED_TABLE:
            if layout is None:
                return None  # a table of that name that is not langchain-postgres': an application's table
            raise UsageError(
                f"{SHARED_TABLE} on {self.location} is langchain-postgres' table of every PGVector collection; "
                "the tool re-indexes one collection of it at a time",
                hint=ADDRESSING_HINT,
            )
        if layout is None:
            raise NotFoundError(
                f"no {SHARED_TABLE} table on {self.location}",
                hint=f"{PREFIX}NAME names a collection of langchain-postgres' PGVector table",
            )
        shared = parse_name(name)
        if shared is None or not addressable(shared.collection):
            raise UsageError(
                f"{name!r} does not name a collection of {SHARED_TABLE} the tool can hold",
                hint="its collection name must make a valid name with the prefix and a __vN suffix "
                "(ASCII letters, digits, '_', '-', '.'; at most 63 bytes in all), and not end in __vN itself",
            )
        return shared

    def _live_version_now(self, shared: SharedName) -> str:
        """The version whose rows the collection holds: the alias's recorded target, else ``__v1``."""
        if self._has_catalog or self._relation_kind(self._client, CATALOG) == "r":
            self._has_catalog = True
            sql = sql_module()
            row = self._client.execute(
                sql.SQL("SELECT target FROM {} WHERE alias = %s").format(sql.Identifier(ALIASES)), (shared.alias,)
            ).fetchone()
            if row is not None:
                return str(row[0])
        return shared.first

    def _catalog_row(self, name: str) -> Any:
        if not self._has_catalog:
            return None
        sql = sql_module()
        return self._client.execute(
            sql.SQL("SELECT dim, metric, metadata FROM {} WHERE name = %s").format(sql.Identifier(CATALOG)), (name,)
        ).fetchone()

    def _version(self, name: str, shared: SharedName) -> _Version:
        def lookup() -> _Version:
            layout = self._shared_layout_now()
            assert layout is not None  # _shared checked it
            live = self._live_version_now(shared)
            version = live if shared.version is None else shared.version_name(shared.version)
            row = self._catalog_row(version)
            if row is not None:
                dim, metric, metadata = int(row[0]), str(row[1]), dict(row[2] or {})
            elif version == live:  # not adopted yet: the rows say
                dim, metric = slice_shape(self._client, layout, collection_uuid(self._client, shared.collection))
                metadata = {}
            else:
                raise NotFoundError(f"no collection or alias {name!r} on {self.location}")
            return _Version(shared, version, version == live, dim, metric, metadata, layout.rows(dim))

        return self._call(lookup, f"look up {name!r}")

    def _live(self, name: str) -> _Version | None:
        """The live version ``name`` means (the collection's rows), or None: a table's name, or not shared."""
        shared = self._shared(name)
        if shared is None:
            return None
        version = self._version(name, shared)
        return version if version.live else None

    def _target(self, name: str) -> tuple[str, int, str, dict[str, Any]]:
        shared = self._shared(name)
        if shared is None:
            return super()._target(name)
        v = self._version(name, shared)
        return v.name, v.dim, v.metric, v.metadata

    def resolve(self, name: str) -> str | None:
        self._shared(name)  # the shared table as a whole is refused, naming how to address one collection
        return super().resolve(name)

    # -- collections ---------------------------------------------------------
    def _shared_aliases(self) -> dict[str, str]:
        """alias -> live version, for every collection of the shared table the tool can name."""

        def run() -> dict[str, str]:
            layout = self._shared_layout_now()
            if layout is None or layout.problem is not None:
                return {}
            out = {}
            for collection in collection_names(self._client):
                if addressable(collection):
                    shared = SharedName(collection, None)
                    out[shared.alias] = self._live_version_now(shared)
            return out

        return self._call(run, f"list the collections of {SHARED_TABLE}")

    def list_collections(self) -> list[str]:
        names = set(super().list_collections())
        aliases = self._shared_aliases()
        if aliases or self._shared_layout is not None:
            names.discard(SHARED_TABLE)  # every collection's rows: never one collection
        return sorted(names | set(aliases.values()))

    def list_aliases(self) -> dict[str, str]:
        return {**super().list_aliases(), **self._shared_aliases()}

    def check_copyable(self, name: str, dim: int | None = None) -> None:
        """A version of another dimension than a typed shared column's is refused before apply records it."""
        if self._shared(name) is None:
            return super().check_copyable(name, dim)
        if dim is not None:
            self._check_dim_fits(dim)

    def _check_dim_fits(self, dim: int) -> None:
        layout = self._shared_layout
        assert layout is not None
        if layout.dim is not None and dim != layout.dim:
            raise UsageError(
                f"{SHARED_TABLE}.embedding on {self.location} is vector({layout.dim}): every collection's rows "
                f"must have {layout.dim} dimensions, so a version of {dim} could never be cut over",
                hint="keep the model's dimension, or have the application make the column untyped "
                "(PGVector without embedding_length) so that each collection can have its own",
            )

    def create_collection(self, spec: CollectionSpec) -> None:
        shared = self._shared(spec.name)
        if shared is None:
            return super().create_collection(spec)
        if shared.version is None:
            raise UsageError(
                f"{spec.name!r} is the collection itself; a version of it is named {spec.name}__vN",
                hint="the collection is made by the application (PGVector(collection_name=...))",
            )
        validate_spec(spec, ANN_INDEXES, "pgvector")
        check_name(spec.name)
        check_dim(spec.dim)
        self._check_dim_fits(spec.dim)
        layout = self._shared_layout
        assert layout is not None
        self._check_new_collection(spec.name, spec.name in self.list_aliases())
        metadata = dict(spec.metadata)
        metadata[META_PAYLOAD_INDEXES] = json.dumps(spec.payload_indexes, sort_keys=True)
        metadata[META_INDEX_PARAMS] = json.dumps(spec.index_params, sort_keys=True)
        sql = sql_module()

        def create() -> None:
            conn = self._client
            with conn.transaction():
                collection_uuid(conn, shared.collection)  # a version of a collection that exists
                self._ensure_catalog(conn)
                if self._relation_kind(conn, spec.name) is not None:
                    raise ConflictError(f"a table or view named {spec.name!r} already exists on {self.location}")
                self._layouts.pop(spec.name, None)
                create_version_table(conn, layout, spec.name, spec.dim)
                conn.execute(
                    sql.SQL("INSERT INTO {} (name, dim, metric, metadata) VALUES (%s, %s, %s, %s)").format(
                        sql.Identifier(CATALOG)
                    ),
                    (spec.name, spec.dim, spec.metric, jsonb(metadata)),
                )

        self._call(self._undoing_catalog(create), f"create collection {spec.name!r}")

    def read_schema(self, name: str) -> CollectionSchema | None:
        if self._shared(name) is not None:
            return None  # every version has the shared table's columns (shared_table.create_version_table)
        return super().read_schema(name)

    def holds_point_tags(self, name: str) -> bool:
        live = self._live(name)
        return super().holds_point_tags(name) if live is None else live.rows.tag_column is not None

    def finish_writes(self, name: str) -> None:
        shared = self._shared(name)
        if shared is not None:
            version = self._version(name, shared)
            typed = self._call(lambda: vector_is_typed(self._client, version.name), f"read {version.name!r}")
            # The collection's rows are in the application's table, its indexes the application's; a version
            # moved out of it has an untyped column that no ANN index takes (searched exactly).
            if version.live or not typed:
                return
        super().finish_writes(name)

    # -- points of the live version ---------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        live = self._live(name)
        if live is None:
            return super().upsert(name, points)
        if not points:
            return
        for p in points:
            if p.vector is None or len(p.vector) != live.dim:
                raise UsageError(f"point {p.doc_id!r} needs a vector of {live.dim} dimensions for {name!r}")
            if p.other_vectors:
                raise BackendError(f"{SHARED_TABLE} holds one vector per point")

        def write() -> None:
            conn = self._client
            with conn.transaction():
                write_rows(conn, live.rows, collection_uuid(conn, live.shared.collection), list(points))

        self._call(write, f"upsert {len(points)} points into {name!r}")

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        live = self._live(name)
        if live is None:
            return super().delete(name, doc_ids)
        if not doc_ids:
            return
        conn = self._client
        self._call(
            lambda: delete_rows(conn, live.rows, collection_uuid(conn, live.shared.collection), list(set(doc_ids))),
            f"delete {len(doc_ids)} points from {name!r}",
        )

    def count(self, name: str) -> int:
        live = self._live(name)
        if live is None:
            return super().count(name)
        return self._call(
            lambda: count_rows(self._client, collection_uuid(self._client, live.shared.collection)), f"count {name!r}"
        )

    def _pages(
        self, name: str, live: _Version, batch_size: int, with_vectors: bool, untagged: Any = None
    ) -> Iterator[list[Point]]:
        uuid = self._call(lambda: collection_uuid(self._client, live.shared.collection), f"look up {name!r}")
        after: str | None = None
        while True:
            page = self._call(
                lambda a=after: page_rows(self._client, live.rows, uuid, a, batch_size, with_vectors, untagged),
                f"scroll {name!r}",
            )
            if page:
                yield page
                after = page[-1].doc_id
            if len(page) < batch_size:
                return

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        live = self._live(name)
        if live is None:
            yield from super().scroll(name, batch_size, with_vectors)
            return
        yield from self._pages(name, live, batch_size, with_vectors)

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        live = self._live(name)
        if live is None or key != MODEL_KEY or live.rows.tag_column is None:
            yield from super().scroll_untagged(name, key, value, batch_size)
            return
        yield from self._pages(name, live, batch_size, False, untagged=value)

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        live = self._live(name)
        if live is None:
            return super().retrieve(name, doc_ids, with_vectors)
        unique = list(dict.fromkeys(doc_ids))
        if not unique:
            return []
        conn = self._client
        return self._call(
            lambda: retrieve_rows(conn, live.rows, collection_uuid(conn, live.shared.collection), unique, with_vectors),
            f"retrieve from {name!r}",
        )

    def search(self, name: str, vector: Sequence[float], k: int, where: dict[str, Any] | None = None) -> list[Hit]:
        if k <= 0:
            return []
        live = self._live(name)
        if live is None:
            return super().search(name, vector, k, where)
        if len(vector) != live.dim:
            raise UsageError(f"the query vector has {len(vector)} dimensions; {name!r} holds {live.dim}")
        from pgvector import Vector

        query = Vector([float(x) for x in vector])
        # An ANN index on the shared column holds every collection's rows, and the collection filter comes after
        # the index scan: ask it for more candidates, as for any filtered search.
        ef_search = min(1000, max(40, k) * 4)

        def run() -> list[tuple[Point, float]]:
            if self._ef_search != ef_search:
                sql = sql_module()
                self._client.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(ef_search)))
                self._ef_search = ef_search
            return search_rows(self._client, live.rows, live.shared.collection, live.metric, query, k, where)

        rows = self._call(run, f"search {name!r}")
        return [Hit(doc_id=p.doc_id, score=score(live.metric, d), payload=p.payload) for p, d in rows]

    def set_payload_key(self, name: str, points: Sequence[Point], key: str, value: Any | None) -> None:
        live = self._live(name)
        if live is None or key != MODEL_KEY or live.rows.tag_column is None:
            return super().set_payload_key(name, points, key, value)
        if not points:
            return
        conn = self._client
        ids = list({p.doc_id for p in points})
        self._call(
            lambda: tag_rows(conn, live.rows, collection_uuid(conn, live.shared.collection), ids, value),
            f"tag {len(ids)} points of {name!r}",
        )

    # -- the alias: a cut-over moves rows ----------------------------------------
    def set_alias(self, alias: str, collection: str) -> None:
        shared = self._shared(alias)
        if shared is None:
            return super().set_alias(alias, collection)
        target = parse_name(collection)
        if (
            shared.version is not None
            or target is None
            or target.version is None
            or target.collection != shared.collection
        ):
            raise UsageError(
                f"{alias!r} -> {collection!r}: a collection of {SHARED_TABLE} has one alias, "
                f"{PREFIX}NAME, and it points at a version of that collection, {PREFIX}NAME__vN"
            )
        layout = self._shared_layout
        assert layout is not None

        def swap() -> None:
            conn = self._client
            with conn.transaction():
                self._ensure_catalog(conn)
                uuid = collection_uuid(conn, shared.collection, lock=True)
                current = self._live_version_now(shared)
                if current == collection:
                    return
                incoming = self._catalog_row(collection)
                if incoming is None or self._relation_kind(conn, collection) != "r":
                    raise NotFoundError(f"no collection {collection!r} on {self.location}")
                if self._relation_kind(conn, current) is not None:
                    raise ConflictError(
                        f"a table named {current!r} exists on {self.location}, but that version's rows are the "
                        f"collection's rows in {SHARED_TABLE}",
                        hint=f"drop or rename the table {current!r} (not made by reindexer), then run this again",
                    )
                if layout.dim is not None and int(incoming[0]) != layout.dim:
                    raise UsageError(
                        f"{collection!r} holds {incoming[0]} dimensions; "
                        f"{SHARED_TABLE}.embedding is vector({layout.dim})"
                    )
                self._record_outgoing(conn, layout, current, uuid)
                move_in(conn, layout, uuid, current, collection)
                sql = sql_module()
                # The incoming version's index went with its table, and the outgoing one's new table has none.
                conn.execute(
                    sql.SQL("UPDATE {} SET metadata = metadata - %s::text WHERE name IN (%s, %s)").format(
                        sql.Identifier(CATALOG)
                    ),
                    (META_ANN_INDEX, current, collection),
                )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (alias, target) VALUES (%s, %s) ON CONFLICT (alias) DO UPDATE SET target = %s"
                    ).format(sql.Identifier(ALIASES)),
                    (alias, collection, collection),
                )
            self._layouts.clear()

        self._call(self._undoing_catalog(swap), f"set alias {alias!r} -> {collection!r}")

    def _undoing_catalog(self, fn: Any) -> Any:
        """``fn``, after whose failure the catalog is looked for again: a rolled-back transaction may have
        made it (``_ensure_catalog``) and taken it away again."""

        def run() -> Any:
            try:
                return fn()
            except BaseException:
                self._has_catalog = False
                raise

        return run

    def _record_outgoing(self, conn: Any, layout: SharedLayout, version: str, uuid: Any) -> None:
        """A catalog row for the version leaving the collection's rows (adopt records one; this is for one it
        did not), so that its table, made by the move, is a collection of the tool."""
        if self._catalog_row(version) is not None:
            return
        dim, metric = slice_shape(conn, layout, uuid)
        sql = sql_module()
        conn.execute(
            sql.SQL("INSERT INTO {} (name, dim, metric, metadata) VALUES (%s, %s, %s, '{{}}')").format(
                sql.Identifier(CATALOG)
            ),
            (version, dim, metric),
        )

    def drop_alias(self, alias: str) -> None:
        if self._shared(alias) is None:
            return super().drop_alias(alias)
        raise ConflictError(
            f"{alias!r} cannot be dropped: its live version is the collection's rows in {SHARED_TABLE}, "
            "which the application reads by the collection's name",
            hint="repoint it to another version (reindex cutover / rollback) instead",
        )
