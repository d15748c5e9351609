"""Store fixtures: every contract test runs on each vector store the machine can offer.

``store_url`` yields a store URL for a fresh, empty store:

- ``qdrant-local``: a new Qdrant local-mode folder per test;
- ``milvus-lite``: a new Milvus Lite ``.db`` per test;
- ``milvus-server``: the session's Milvus standalone (``milvus_server``), emptied
  before the test; what the test created is dropped afterwards;
- ``qdrant-server``: the Qdrant server named by ``QDRANT_URL``, if any;
- ``pgvector-local``: a new ``pgvector+local:`` data folder per test (pgserver's PostgreSQL);
- ``pgvector-server``: the session's PostgreSQL on loopback (``pgvector_server`` in
  tests/plugins/pgvector.py), reached as ``pgvector://127.0.0.1:PORT/vectors`` with
  ``PGUSER``/``PGPASSWORD`` set for the test; emptied before and after it;
- ``custom``: the store named by ``REINDEX_TEST_STORE_URL``, if set: any registered
  backend, a third party's included (docs/adapters.md). ``{tmp}`` in it becomes a
  fresh folder per test (for embedded stores); a server is emptied of what each
  test created, and what it held before is kept.

``milvus_server`` starts the real Milvus standalone of the ``milvus`` package once
per session. That server listens on all interfaces and talks to itself over the
machine's own address, so it only starts where this process's network namespace
has nothing but loopback (``make test`` arranges that with ``unshare -n``).
``REINDEX_TEST_MILVUS_URI`` points the tests at an external server instead.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Keep retries short in tests: two attempts, 50 ms apart.
os.environ.setdefault("REINDEX_RETRY_ATTEMPTS", "2")
os.environ.setdefault("REINDEX_RETRY_INITIAL", "0.05")
os.environ.setdefault("REINDEX_RETRY_MAX_SECONDS", "20")

LOOPBACK_ONLY_REASON = (
    "Milvus standalone listens on all interfaces; run the suite with `make test`, "
    "which runs it in a network namespace with only loopback (unshare -n)"
)
QDRANT_SERVER_REASON = "set QDRANT_URL to run against a Qdrant server; none can be installed here"
CUSTOM_REASON = "set REINDEX_TEST_STORE_URL to run the contract suite on another backend"

EMBEDDED_KINDS = ("qdrant-local", "milvus-lite")
SERVER_KINDS = ("milvus-server", "qdrant-server", "pgvector-server")
# pgvector+local is a data folder too, but no lock holds it to one process. The crash, pipeline and scale
# tests (which take EMBEDDED_KINDS) leave pgvector out, for the suite's time: tests/test_pgvector_flow.py
# walks every verb and the kill points on it instead, on the session's server and once on pgvector+local.
FOLDER_KINDS = (*EMBEDDED_KINDS, "pgvector-local")


def only_loopback() -> bool:
    """True when this process's network namespace has no interface but ``lo``.

    Asks the kernel for this namespace's interfaces: /sys/class/net shows the
    namespace sysfs was mounted in, which ``unshare -n`` does not change.
    """
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        try:
            lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
        except OSError:
            return False
        names = {line.split(":", 1)[0].strip() for line in lines}
    return names == {"lo"}


def _store_url_from_env(value: str, backend: str) -> str:
    """``http://h:p`` / ``https://h:p`` / a store URL, as a store URL."""
    if value.startswith(("http://", "https://")):
        secure = value.startswith("https://")
        rest = value.split("://", 1)[1].rstrip("/")
        return f"{backend}{'+https' if secure else ''}://{rest}"
    return value


@dataclass
class MilvusServerHandle:
    url: str  # store URL, milvus://127.0.0.1:PORT
    uri: str  # pymilvus URI, http://127.0.0.1:PORT
    server: Any = None  # milvus.MilvusServer when this session owns it

    @property
    def can_restart(self) -> bool:
        return self.server is not None

    def restart(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 1 s) and start it again on the same port."""
        if self.server is None:
            pytest.skip("REINDEX_TEST_MILVUS_URI names an external server; it is not restarted")
        self.server.stop()
        self.server.start()


def _bind_reusable(port: int) -> socket.socket | None:
    # The milvus package probes ports without SO_REUSEADDR, so after a restart the
    # old port (in TIME_WAIT) looks taken and the server would move to another one.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


# Shorter internal intervals than the defaults, for a test server only: a load
# completes in about 1 s instead of 3 s and a Strong read waits about 50 ms, not 200;
_FAST_QUERYCOORD = (
    "\nqueryCoord:\n"
    "  checkChannelInterval: 100\n"
    "  checkSegmentInterval: 100\n"
    "  leaderViewUpdateInterval: 0.1\n"
    "  collectionObserverInterval: 100\n"
)
_FAST_EXTRA = {
    "proxy.timeTickInterval": 50,
    "queryCoord.checkInterval": 200,
    "queryCoord.distPullInterval": 100,
    # A restarted server waits for the killed one's sessions to expire before it
    # serves loaded collections again: 10 s instead of 30.
    "common.session.ttl": 10,
}


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServerHandle]:
    external = os.environ.get("REINDEX_TEST_MILVUS_URI")
    if external:
        url = _store_url_from_env(external, "milvus")
        uri = external if external.startswith(("http://", "https://")) else "http" + url[len("milvus") :]
        yield MilvusServerHandle(url=url, uri=uri)
        return
    if not only_loopback():
        pytest.skip(LOOPBACK_ONLY_REASON)
    milvus = pytest.importorskip("milvus", reason="pip install milvus (the test extra) for the Milvus server tests")
    handle = start_milvus_server(milvus.default_server, tmp_path_factory.mktemp("milvus-server"))
    try:
        yield handle
    finally:
        handle.server.stop()


def start_milvus_server(server: Any, base_dir: Path) -> MilvusServerHandle:
    """Configure a ``milvus.MilvusServer`` for tests (fast intervals, a port kept across restarts) and start it.

    The session's server is ``milvus.default_server``; a test that stops a server starts one of its own.
    """
    config = server.config
    config.try_bind_port = _bind_reusable
    config.template_text = config.template_text.replace("\nqueryCoord:\n", _FAST_QUERYCOORD, 1)
    config.extra_configs.update(_FAST_EXTRA)
    server.show_startup_banner = False
    server.set_base_dir(str(base_dir))
    started = time.monotonic()
    server.start()
    port = server.listen_port
    server.listen_port = port  # keep the port across restarts
    print(f"\nMilvus standalone on 127.0.0.1:{port} started in {time.monotonic() - started:.1f}s")
    return MilvusServerHandle(url=f"milvus://127.0.0.1:{port}", uri=f"http://127.0.0.1:{port}", server=server)


def _names(url: str) -> tuple[set[str], set[str]]:
    from reindexer.adapters import open_store

    with open_store(url) as store:
        return set(store.list_collections()), set(store.list_aliases())


def _drop_new(url: str, keep: tuple[set[str], set[str]] | None) -> None:
    """Drop aliases, then collections, except those in ``keep`` (all when keep is None)."""
    from reindexer.adapters import open_store

    keep_collections, keep_aliases = keep or (set(), set())
    with open_store(url) as store:
        for alias in store.list_aliases():
            if alias not in keep_aliases:
                store.drop_alias(alias)
        for name in store.list_collections():
            if name not in keep_collections:
                store.drop_collection(name)


def _server_url(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "milvus-server":
        return request.getfixturevalue("milvus_server").url
    if kind == "pgvector-server":
        server = request.getfixturevalue("pgvector_server")
        server.env(request.getfixturevalue("monkeypatch"))  # credentials from the environment, never the URL
        return server.url()
    value = os.environ.get("QDRANT_URL")
    if not value:
        pytest.skip(QDRANT_SERVER_REASON)
    return _store_url_from_env(value, "qdrant")


def _embedded_url(kind: str, tmp_path: Path) -> str:
    if kind == "qdrant-local":
        return f"qdrant+local:{tmp_path / 'qdrant'}"
    if kind == "pgvector-local":
        return f"pgvector+local:{tmp_path / 'pg'}"
    return f"milvus+lite:{tmp_path / 'milvus.db'}"


def _url_for(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[str]:
    if kind in FOLDER_KINDS:
        yield _embedded_url(kind, tmp_path)
        return
    if kind == "custom":
        template = os.environ.get("REINDEX_TEST_STORE_URL")
        if not template:
            pytest.skip(CUSTOM_REASON)
        if "{tmp}" in template:
            yield template.replace("{tmp}", str(tmp_path))
            return
        keep = _names(template)
        yield template
        _drop_new(template, keep)
        return
    url = _server_url(request, kind)
    owned = (kind == "milvus-server" and not os.environ.get("REINDEX_TEST_MILVUS_URI")) or kind == "pgvector-server"
    # A server this session started is ours to empty; a shared one keeps what it had.
    keep = None if owned else _names(url)
    if owned:
        _drop_new(url, None)
    yield url
    _drop_new(url, keep)


@pytest.fixture(
    params=[
        pytest.param("qdrant-local", id="qdrant-local"),
        pytest.param("milvus-lite", id="milvus-lite"),
        pytest.param("milvus-server", id="milvus-server", marks=pytest.mark.server),
        pytest.param("qdrant-server", id="qdrant-server", marks=pytest.mark.server),
        pytest.param("pgvector-local", id="pgvector-local"),
        pytest.param("pgvector-server", id="pgvector-server", marks=pytest.mark.server),
        pytest.param("custom", id="custom"),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for a fresh, empty store, on every backend."""
    yield from _url_for(request, request.param, tmp_path)


@pytest.fixture(params=[pytest.param(k, id=k) for k in EMBEDDED_KINDS])
def embedded_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for a fresh embedded store (Qdrant local, Milvus Lite)."""
    yield from _url_for(request, request.param, tmp_path)


@pytest.fixture
def store(store_url: str):
    """The store behind ``store_url``, opened with ``open_store`` and closed afterwards."""
    from reindexer.adapters import open_store

    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()
