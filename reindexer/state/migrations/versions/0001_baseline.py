"""The state schema of reindexer 0.1: every table, created where missing.

States made before migrations existed have no revision and may lack tables added since the first
release (reindex_traffic); upgrading them runs this revision, which creates only what is absent.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _json(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=True)


def _real(name: str) -> sa.Column:
    return sa.Column(name, sa.Float(), nullable=False)


TABLES = {
    "reindex_meta": (
        [_text("key"), _text("value"), sa.PrimaryKeyConstraint("key")],
        [],
    ),
    "reindex_model_version": (
        [
            _text("fingerprint"),
            _text("name"),
            _text("path"),
            _int("dim"),
            _text("similarity"),
            _int("max_seq_length", True),
            _json("settings"),
            _text("base_model", True),
            _text("train_data", True),
            _text("run_id", True),
            _time("created_at"),
            sa.PrimaryKeyConstraint("fingerprint"),
        ],
        [("name",)],
    ),
    "reindex_collection": (
        [
            _int("id"),
            _text("store_url"),
            _text("name"),
            _text("text_field"),
            _time("created_at"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("store_url", "name"),
        ],
        [("name",)],
    ),
    "reindex_index_version": (
        [
            _int("id"),
            _int("collection_id"),
            _int("version"),
            _text("physical_name"),
            _text("model_fingerprint"),
            _int("dim"),
            _text("metric"),
            _json("index_params"),
            _text("status"),
            _text("plan_id", True),
            _int("previous_id", True),
            _int("point_count", True),
            _time("created_at"),
            _time("updated_at"),
            _time("live_since", True),
            _time("retired_at", True),
            sa.ForeignKeyConstraint(["collection_id"], ["reindex_collection.id"]),
            sa.ForeignKeyConstraint(["model_fingerprint"], ["reindex_model_version.fingerprint"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("collection_id", "version"),
        ],
        [("collection_id",)],
    ),
    "reindex_plan": (
        [
            _text("id"),
            _int("collection_id"),
            _text("inputs_fingerprint"),
            _json("body"),
            _time("created_at"),
            sa.ForeignKeyConstraint(["collection_id"], ["reindex_collection.id"]),
            sa.PrimaryKeyConstraint("id"),
        ],
        [("collection_id",)],
    ),
    "reindex_run": (
        [
            _int("id"),
            _text("plan_id", True),
            _int("index_version_id"),
            _text("kind"),
            _text("status"),
            _int("embedded"),
            _int("deleted"),
            _int("copied"),
            _int("batches"),
            _json("checkpoint"),
            _text("error", True),
            _time("started_at"),
            _time("finished_at", True),
            sa.ForeignKeyConstraint(["index_version_id"], ["reindex_index_version.id"]),
            sa.PrimaryKeyConstraint("id"),
        ],
        [("index_version_id",), ("plan_id",)],
    ),
    "reindex_ledger": (
        [
            _int("index_version_id"),
            _text("doc_id"),
            _text("content_hash"),
            _text("model_fingerprint"),
            _time("updated_at"),
            sa.ForeignKeyConstraint(["index_version_id"], ["reindex_index_version.id"]),
            sa.PrimaryKeyConstraint("index_version_id", "doc_id"),
        ],
        [],
    ),
    "reindex_audit": (
        [
            _int("id"),
            _time("at"),
            _text("user"),
            _text("host"),
            _text("action"),
            _text("collection", True),
            _text("plan_fingerprint", True),
            _text("result"),
            _json("detail"),
            sa.PrimaryKeyConstraint("id"),
        ],
        [("at",), ("collection",)],
    ),
    "reindex_lease": (
        [
            _text("resource"),
            _text("holder"),
            _text("token"),
            _time("acquired_at"),
            _time("expires_at"),
            sa.PrimaryKeyConstraint("resource"),
        ],
        [],
    ),
    "reindex_traffic": (
        [
            _int("id"),
            _time("at"),
            _text("store_url"),
            _text("collection"),
            _text("live"),
            _text("shadow"),
            _text("live_model"),
            _text("shadow_model"),
            _int("k"),
            _text("query_hash"),
            _text("query_text", True),
            _json("live_ids"),
            _json("shadow_ids"),
            _real("overlap"),
            _real("rbo"),
            _real("live_ms"),
            _real("shadow_ms"),
            sa.PrimaryKeyConstraint("id"),
        ],
        [("at",), ("collection",), ("shadow",)],
    ),
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for table, (columns, indexes) in TABLES.items():
        have: set[str] = set()
        if table in present:
            # An upgrade interrupted by an earlier release could leave a table without its indexes
            # (SQLite committed each CREATE on its own then); running it again completes them.
            have = {ix["name"] for ix in inspector.get_indexes(table) if ix["name"]}
        else:
            op.create_table(table, *columns)
        for cols in indexes:
            name = f"ix_{table}_{'_'.join(cols)}"
            if name not in have:
                op.create_index(name, table, list(cols), unique=False)


def downgrade() -> None:
    for table in reversed(list(TABLES)):
        op.drop_table(table)
