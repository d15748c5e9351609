"""The pgvector adapter's vocabulary: its catalog names and limits, name and dimension rules, and SQL helpers.

Plain functions and constants shared by the other modules of the package: the
metrics' operator classes and scores, index names, ``where`` as JSONB containment,
a view's grants as statements, and the psycopg modules (imported on first use, so
importing the backend imports no client library). No connection is held here.
"""

from __future__ import annotations

import hashlib
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
