"""A PostgreSQL server with pgvector for the ``pgvector://`` store tests: pgserver's binaries, on loopback.

pgserver itself starts PostgreSQL on a Unix socket only (that is what ``pgvector+local:``
uses). The server tests need what an operator's server looks like: a TCP port, a role
with a password (scram-sha-256) and databases made by hand. So this fixture runs
pgserver's ``initdb`` and ``pg_ctl`` itself, listening on 127.0.0.1 alone, with:

- ``vectors``: a database with the vector extension, where the contract suite runs;
- ``plain``: a database without it, for the bad-input tests.

The role's password reaches the tests through ``PGUSER``/``PGPASSWORD``, never a URL.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PgvectorServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, db: str = "vectors") -> str:
        return f"pgvector://{self.host}:{self.port}/{db}"

    def env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PGUSER", self.user)
        monkeypatch.setenv("PGPASSWORD", self.password)
        monkeypatch.delenv("PGPASSWORD_FILE", raising=False)

    def connect(self, db: str = "vectors"):
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=db, autocommit=True
        )


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgvectorServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        pytest.importorskip("pgserver", reason="pip install 'reindexer[pgvector]' for the pgvector tests")
    pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")
    from pgserver import _commands
    from pgserver.utils import find_suitable_port

    folder = tmp_path_factory.mktemp("pgvector-server")
    pgdata = folder / "data"
    pgdata.mkdir()
    password = secrets.token_hex(12)
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own system user runs it
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(pgdata)
        import pwd

        entry = pwd.getpwnam(user)
        for path in (pgdata, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        _commands.initdb(
            [
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=utf8",
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
            ],
            pgdata=pgdata,
            user=user,
        )
        port = find_suitable_port("127.0.0.1")
        _commands.pg_ctl(
            ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "start"],
            pgdata=pgdata,
            user=user,
            timeout=60,
        )
    except Exception as exc:  # noqa: BLE001 - pgserver's binaries could not run here
        pytest.skip(f"could not start PostgreSQL from pgserver's binaries: {exc}")
    server = PgvectorServer("127.0.0.1", port, "postgres", password)
    try:
        with server.connect("postgres") as conn:
            conn.execute("CREATE DATABASE vectors")
            conn.execute("CREATE DATABASE plain")
        with server.connect("vectors") as conn:
            conn.execute("CREATE EXTENSION vector")
        yield server
    finally:
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)


@pytest.fixture
def empty_pgvector_server(pgvector_server: PgvectorServer, monkeypatch: pytest.MonkeyPatch) -> PgvectorServer:
    """The session's server with its credentials in the environment and its database emptied of collections."""
    from reindexer.adapters import open_store

    pgvector_server.env(monkeypatch)
    with open_store(pgvector_server.url()) as s:
        for alias in s.list_aliases():
            s.drop_alias(alias)
        for name in s.list_collections():
            s.drop_collection(name)
    return pgvector_server


def pgvector_local_url(tmp_path: Path) -> str:
    return f"pgvector+local:{tmp_path / 'pg'}"
