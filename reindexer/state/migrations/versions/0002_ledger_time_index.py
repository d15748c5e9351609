"""An index on the ledger's time within a version: the catch-up's changes pass reads only what is new.

The catch-up before every cut-over and rollback asks the live version's ledger for the rows recorded
since the last catch-up (``ledger_changes_since``). Without this index SQLite and PostgreSQL walk
every ledger row of the version to find the few newer ones: 0.17 s at 10^6 rows (SQLite, warm),
growing with the collection, where the cut-over of an unchanged collection should not.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_reindex_ledger_index_version_id_updated_at"


def upgrade() -> None:
    have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("reindex_ledger")}
    if INDEX not in have:
        op.create_index(INDEX, "reindex_ledger", ["index_version_id", "updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="reindex_ledger")
