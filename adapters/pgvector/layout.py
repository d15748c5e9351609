"""The pgvector adapter's vocabulary: its catalog names and limits, name and dimension rules, and SQL helpers.

Plain functions and constants shared by the other modules of the package: the
metrics' operator classes and scores, index names, ``where`` as JSONB containment,
a view's grants as statements, the ANN index (HNSW or IVFFlat: its settings resolved
for a row count, the memory its build wants, its DDL, a timed build over random
vectors that is rolled back), and the psycopg modules (imported on first use, so
importing the backend imports no client library). No connection is held here.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any

from reindexer.adapters.base import Point
from reindexer.adapters.names import SAFE_NAME_RULE, safe_name_problem
from reindexer.errors import UsageError

CATALOG = "reindexer_collections"
ALIASES = "reindexer_aliases"
#: pgvector's HNSW (and IVFFlat) indexes take a ``vector`` of at most this many dimensions.
MAX_INDEXED_DIM = 2000
#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
MAX_IDENTIFIER_BYTES = 63
#: A btree entry must fit in a third of a page (about 2,700 bytes); kept below it.
MAX_DOC_ID_BYTES = 2048

#: metric -> (operator class of its HNSW index, distance operator)
OPS = {"cosine": ("vector_cosine_ops", "<=>"), "dot": ("vector_ip_ops", "<#>"), "euclid": ("vector_l2_ops", "<->")}
HNSW_DEFAULTS = {"hnsw_m": 16, "hnsw_ef_construct": 64}
#: the ANN indexes a version can have (``index_params["ann_index"]``): HNSW unless IVFFlat is named
ANN_INDEXES = ("hnsw", "ivfflat")
#: pgvector's most IVFFlat lists
MAX_IVF_LISTS = 32768
#: pgvector's advice for IVFFlat's lists: rows / 1000 up to a million rows, sqrt(rows) above
IVF_ROWS_PER_LIST = 1000
IVF_SQRT_ABOVE = 1_000_000
#: IVFFlat's k-means runs over 50 sampled rows a list, at least 10,000 (pgvector 0.6's ivfbuild.c), all in
#: maintenance_work_mem: a build that needs more fails ("memory required is N MB"); with no more sampled rows
#: than lists, pgvector takes them as the centers and checks nothing
IVF_SAMPLES_PER_LIST = 50
IVF_MIN_SAMPLES = 10_000
#: bytes an element of an HNSW graph takes while it is built, besides 4 a dimension and 32 a neighbour slot
#: (m): fitted to pgvector 0.6's "hnsw graph no longer fits into maintenance_work_mem after N tuples" at
#: 128 to 768 dimensions and m 8 and 16 (within 3%); past that point the build goes on on disk, slower
HNSW_ELEMENT_BYTES = 200
#: PostgreSQL's min_parallel_table_scan_size default: a smaller table is indexed by one process, a larger one
#: gets a worker more each time it is three times as large (compute_parallel_worker)
PARALLEL_TABLE_BYTES = 8 * 2**20
EXTENSION_HINT = (
    "run `CREATE EXTENSION vector;` in that database as a role allowed to create it "
    "(a superuser, or the database owner where pgvector is marked trusted), then re-run"
)
NAME_RULE = (
    f"{SAFE_NAME_RULE.replace('at most 255 characters', f'at most {MAX_IDENTIFIER_BYTES} characters')} "
    f"(a PostgreSQL identifier); not {CATALOG} or {ALIASES}"
)


def check_name(name: str, what: str = "collection") -> None:
    """``UsageError`` for a name that cannot be a table or view of this backend."""
    problem = safe_name_problem(name)
    if problem is None and len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        problem = f"it is {len(name)} characters long"
    if problem is None and name in (CATALOG, ALIASES):
        problem = "reindexer keeps its own catalog under that name"
    if problem is not None:
        raise UsageError(
            f"{name!r} is not a valid pgvector {what} name: {problem}",
            hint=f"pgvector {what} names: {NAME_RULE}",
        )


def check_dim(dim: int) -> None:
    """``UsageError`` for a dimension pgvector cannot index."""
    if dim > MAX_INDEXED_DIM:
        raise UsageError(
            f"dimension {dim} is above {MAX_INDEXED_DIM}, the most pgvector indexes (HNSW, IVFFlat) "
            "for the vector type",
            hint="choose a model of at most 2,000 dimensions (or truncate its embeddings: --truncate-dim) for pgvector",
        )


def ivfflat_lists(rows: int) -> int:
    """pgvector's advice for a table of ``rows`` rows: rows / 1000 up to a million, sqrt(rows) above."""
    lists = rows // IVF_ROWS_PER_LIST if rows <= IVF_SQRT_ABOVE else math.isqrt(rows)
    return max(1, min(MAX_IVF_LISTS, lists))


def ivfflat_probes(lists: int) -> int:
    """pgvector's advice for the lists a query scans: sqrt(lists)."""
    return max(1, round(math.sqrt(lists)))


def check_ann_params(index_params: dict[str, Any]) -> None:
    """``UsageError`` for IVFFlat settings pgvector cannot build (the shared checks are ``validate_spec``'s)."""
    lists = index_params.get("ivf_lists")
    if isinstance(lists, int) and lists > MAX_IVF_LISTS:
        raise UsageError(
            f"ivf_lists {lists} is above {MAX_IVF_LISTS}, the most IVFFlat lists pgvector builds",
            hint="leave --ivf-lists out for pgvector's advice (rows / 1000, sqrt(rows) above a million rows)",
        )


def ann_settings(index_params: dict[str, Any], rows: int) -> dict[str, Any]:
    """The ANN index a version of ``rows`` rows gets: its kind and parameters, the defaults filled in.

    HNSW: the recorded m and ef_construction, else pgvector's 16 and 64. IVFFlat: the recorded lists, else
    pgvector's advice for ``rows``; the recorded probes, else sqrt(lists), at most the lists.
    """
    if index_params.get("ann_index", "hnsw") == "ivfflat":
        lists = int(index_params.get("ivf_lists") or ivfflat_lists(rows))
        probes = int(index_params.get("ivf_probes") or ivfflat_probes(lists))
        return {"kind": "ivfflat", "lists": lists, "probes": min(probes, lists)}
    settings = {**HNSW_DEFAULTS, **{k: v for k, v in index_params.items() if k in HNSW_DEFAULTS}}
    return {"kind": "hnsw", "m": int(settings["hnsw_m"]), "ef_construction": int(settings["hnsw_ef_construct"])}


def build_memory(settings: dict[str, Any], dim: int, rows: int) -> int:
    """Bytes of maintenance_work_mem the build of ``settings``'s index over ``rows`` rows wants: HNSW's
    whole graph (past it the build slows), IVFFlat's k-means (past it the build fails: ``ivfflat_kmeans``)."""
    if settings["kind"] == "hnsw":
        return rows * (4 * dim + 32 * settings["m"] + HNSW_ELEMENT_BYTES)
    lists = settings["lists"]
    vector = (8 + 4 * dim + 7) // 8 * 8
    most = max(IVF_MIN_SAMPLES, IVF_SAMPLES_PER_LIST * lists)
    samples = min(rows, most)
    # pgvector 0.6's ElkanKmeans: the sample array (allocated for the most samples), the centers twice, a lower
    # bound per sample and list, half the distances between centers, a few arrays per sample and per list
    # (this sum gives its "memory required is N MB" exactly at 64 to 384 dimensions and 50 to 1,000 lists)
    return most * vector + 2 * lists * vector + 4 * samples * lists + 4 * lists * lists + 8 * samples + 16 * lists


def ivfflat_kmeans(settings: dict[str, Any], rows: int) -> bool:
    """Whether pgvector runs (and checks the memory of) its k-means: more sampled rows than lists."""
    most = max(IVF_MIN_SAMPLES, IVF_SAMPLES_PER_LIST * settings["lists"])
    return min(rows, most) > settings["lists"]


def parallel_workers(rows: int, dim: int, allowed: int) -> int:
    """The parallel maintenance workers PostgreSQL gives a build over a table of ``rows`` vectors of ``dim``
    (a row: the vector, its key and payload counted as 64 bytes), at most ``allowed``."""
    size, threshold, workers = rows * (4 * dim + 64), PARALLEL_TABLE_BYTES, 0
    while size >= threshold and workers < allowed:
        workers, threshold = workers + 1, threshold * 3
    return workers


def index_sql(index: str, table: str, column: str, metric: str, settings: dict[str, Any]) -> Any:
    """``CREATE INDEX IF NOT EXISTS`` for ``settings``'s index on ``table``'s vector ``column``."""
    sql = sql_module()
    if settings["kind"] == "ivfflat":
        using, options = sql.SQL("ivfflat"), sql.SQL("lists = {}").format(sql.Literal(int(settings["lists"])))
    else:
        using = sql.SQL("hnsw")
        options = sql.SQL("m = {}, ef_construction = {}").format(
            sql.Literal(int(settings["m"])), sql.Literal(int(settings["ef_construction"]))
        )
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({} {}) WITH ({})").format(
        sql.Identifier(index), sql.Identifier(table), using, sql.Identifier(column), sql.SQL(OPS[metric][0]), options
    )


def build_session(conn: Any) -> dict[str, int]:
    """Inside a build's transaction: ``REINDEX_PG_MAINTENANCE_WORK_MEM`` and ``REINDEX_PG_PARALLEL_WORKERS``
    set for it where given; returns what the build has (maintenance_work_mem in bytes, parallel workers)."""
    memory = os.environ.get("REINDEX_PG_MAINTENANCE_WORK_MEM")
    if memory:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
    workers = os.environ.get("REINDEX_PG_PARALLEL_WORKERS")
    if workers:
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, true)", (workers,))
    return build_limits(conn)


def build_limits(conn: Any) -> dict[str, int]:
    """maintenance_work_mem (bytes) and max_parallel_maintenance_workers as a build would have them: the
    environment's settings where given (``build_session``), else the server's."""
    row = conn.execute(
        "SELECT pg_size_bytes(COALESCE(%s, current_setting('maintenance_work_mem'))), "
        "COALESCE(%s, current_setting('max_parallel_maintenance_workers'))::int",
        (
            _memory_setting(os.environ.get("REINDEX_PG_MAINTENANCE_WORK_MEM")),
            os.environ.get("REINDEX_PG_PARALLEL_WORKERS"),
        ),
    ).fetchone()
    return {"maintenance_work_mem": int(row[0]), "parallel_workers": int(row[1])}


def _memory_setting(value: str | None) -> str | None:
    """A memory setting as pg_size_bytes reads it: a bare number is kilobytes to PostgreSQL's settings."""
    if value and value.strip().isdigit():
        return f"{value.strip()} kB"
    return value or None


def time_build(conn: Any, dim: int, metric: str, settings: dict[str, Any], rows: int, seed: int = 0) -> float:
    """Seconds pgvector takes to build ``settings``'s index over ``rows`` random unit vectors of ``dim``
    dimensions, in a temporary table inside a transaction that is rolled back: nothing is left behind.

    Random vectors have no clusters, the hardest case for HNSW's greedy search: real embeddings build
    no slower. A table this small is built by one process, with the session's build settings, and at least
    the maintenance_work_mem it needs: this times a build in memory (the estimate counts one past it).
    """
    import numpy as np
    from psycopg import Rollback

    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sql = sql_module()
    table = "reindexer_index_probe"
    with conn.transaction():
        limits = build_session(conn)
        wanted = build_memory(settings, dim, rows) + 2**20
        if limits["maintenance_work_mem"] < wanted:
            conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{wanted // 1024} kB",))
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} (embedding vector({})) ON COMMIT DROP").format(
                sql.Identifier(table), sql.Literal(dim)
            )
        )
        with conn.cursor() as cur:
            with cur.copy(
                sql.SQL("COPY {} (embedding) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table))
            ) as copy:
                copy.set_types(["vector"])
                for vector in vectors:
                    copy.write_row((vector,))
        started = time.perf_counter()
        conn.execute(index_sql(index_name(settings["kind"], table), table, "embedding", metric, settings))
        seconds = time.perf_counter() - started
        raise Rollback()  # the temporary table and its index go with the transaction
    return seconds


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise UsageError(
            "the pgvector backend needs psycopg 3 and pgvector", hint="pip install 'reindexer[pgvector]'"
        ) from None
    return psycopg


def sql_module() -> Any:
    from psycopg import sql

    return sql


def jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def index_name(kind: str, table: str) -> str:
    """A name of at most 63 bytes for an index of ``table``, whatever the table's name."""
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:12]
    return f"reindex_{kind}_{digest}"


def score(metric: str, distance: float) -> float:
    if metric == "cosine":
        return 1.0 - distance  # <=> is the cosine distance
    if metric == "dot":
        return -distance  # <#> is the negative inner product
    return distance


def point_of(row: Any) -> Point:
    vector = row[2]
    if vector is not None:
        vector = [float(x) for x in (vector.to_list() if hasattr(vector, "to_list") else vector)]
    return Point(doc_id=str(row[0]), vector=vector, payload=dict(row[1] or {}))


def containment(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """``where`` as a JSONB document for ``payload @>``: dotted keys become nested objects."""
    if not where:
        return None
    out: dict[str, Any] = {}
    for key, value in where.items():
        if not (isinstance(value, (bool, int, float, str))):
            raise UsageError(f"where: {key!r} must equal a string, number or boolean, not {type(value).__name__}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"where: {key!r} conflicts with another condition on {part!r}")
            node = child
        node[leaf] = value
    return out


def grants(conn: Any, relation: str) -> list[Any]:
    """GRANT statements re-creating the privileges others hold on ``relation`` (a dropped view loses them)."""
    from psycopg import sql

    rows = conn.execute(
        "SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = current_schema() AND c.relname = %s AND a.grantee <> c.relowner",
        (relation,),
    ).fetchall()
    statements = []
    for grantee, privilege, grantable in rows:
        role = (
            sql.SQL("PUBLIC")
            if int(grantee) == 0
            else sql.Identifier(conn.execute("SELECT rolname FROM pg_roles WHERE oid = %s", (grantee,)).fetchone()[0])
        )
        statements.append(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege),
                sql.Identifier(relation),
                role,
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL(""),
            )
        )
    return statements
