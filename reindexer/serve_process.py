"""Running `reindex serve` as a process: its listening socket, its store held, uvicorn stopping gracefully.

Not here: the app itself (reindexer.serve.create_app), which an application may also
mount or run in a server of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reindexer.errors import ReindexError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from reindexer.workspace import Workspace

GRACE_SECONDS = 20  # in-flight requests get this long after SIGTERM (Kubernetes waits 30 s by default)


def hold_store(ws: Workspace) -> None:
    """Open the workspace's store now, saying plainly when an embedded one is held elsewhere."""
    from reindexer.errors import StoreLockedError

    try:
        ws.store  # noqa: B018 - the property opens the store
    except StoreLockedError:
        raise StoreLockedError(
            f"reindex serve needs the embedded store {ws.location.target} to itself, and another process holds it",
            hint="embedded stores (qdrant+local:, milvus+lite:) allow one process per data folder: stop the other "
            "process (another `reindex serve`, an application, a reindex command), or keep the collections on a "
            "server (qdrant://HOST:PORT or milvus://HOST:PORT), which serve and the admin commands can share",
        ) from None


def listen(host: str, port: int):
    """A socket bound to host:port (0: any free port), or ConflictError naming why not."""
    import socket

    from reindexer.errors import ConflictError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConflictError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or stop what holds this one",
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(app: FastAPI, sock, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT, then stop gracefully.

    uvicorn stops accepting, lets in-flight requests finish (up to GRACE_SECONDS),
    runs the app's shutdown (which closes the Searchers) and returns.
    """
    import signal

    import uvicorn

    logging_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        # stderr for everything: the tool keeps stdout for machine output.
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": log_level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": log_level.upper(), "propagate": False},
        },
    }
    config = uvicorn.Config(
        app,
        log_config=logging_config,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=GRACE_SECONDS,
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught, with the handler it found, once it has stopped.
    # Found handlers that do nothing make a graceful stop end the process with 0, not 143.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise ReindexError("reindex serve did not start; see the log above")
