"""Alembic's entry point for the state schema. Always online, on the connection reindexer hands over."""

from alembic import context

from reindexer.state.revisions import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("reindexer's migrations run through `reindex state upgrade` or on open, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
