"""A real PostgreSQL server for team-state tests: the pgserver package, in a temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver", reason="pip install pgserver (the test extra) for PostgreSQL tests")
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' for PostgreSQL tests")
    folder = tmp_path_factory.mktemp("pg")
    try:
        server = pgserver.get_server(str(folder), cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - pgserver's own binaries failed to start here
        pytest.skip(f"pgserver could not start PostgreSQL: {exc}")
    uri = server.get_uri()
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path):
    """A fresh state store URL on each engine; PostgreSQL gets a database of its own per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    import uuid

    import sqlalchemy as sa

    base = request.getfixturevalue("postgres_url")
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
