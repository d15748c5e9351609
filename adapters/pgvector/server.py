"""The embedded PostgreSQL of ``pgvector+local:PATH``: pgserver's server, one per data folder and process.

Stores of one process open on the same folder share one server, counted here;
processes share it through pgserver's own list of holders, so the server stops when
the last of them closes it. Nothing about tables or SQL here.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from reindexer.errors import BackendError, UsageError

log = logging.getLogger(__name__)

_servers_lock = threading.Lock()
_servers: dict[str, list[Any]] = {}  # folder -> [pgserver.PostgresServer, stores open on it]


def acquire_server(folder: Path) -> str:
    """A connection URI for pgserver's PostgreSQL on ``folder``, started if need be."""
    with _servers_lock:
        entry = _servers.get(str(folder))
        if entry is None:
            try:
                with warnings.catch_warnings():
                    # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp.
                    warnings.simplefilter("ignore")
                    import pgserver
            except ImportError:
                raise UsageError(
                    "pgvector+local needs the pgserver package", hint="pip install 'reindexer[pgvector]'"
                ) from None
            if folder.exists() and any(folder.iterdir()) and not (folder / "PG_VERSION").exists():
                raise UsageError(
                    f"{folder} is not empty and holds no PostgreSQL data folder",
                    hint="point pgvector+local: at a new folder, or at one it made before",
                )
            try:
                folder.parent.mkdir(parents=True, exist_ok=True)
                server = pgserver.get_server(folder, cleanup_mode="stop")
            except Exception as exc:  # noqa: BLE001 - pgserver raises subprocess and OS errors alike
                raise BackendError(
                    f"cannot start the embedded PostgreSQL in {folder}: {type(exc).__name__}: {exc}",
                    hint=f"its log is {folder / 'log'}",
                ) from None
            entry = _servers[str(folder)] = [server, 0]
        entry[1] += 1
        return str(entry[0].get_uri())


def release_server(folder: Path) -> None:
    with _servers_lock:
        entry = _servers.get(str(folder))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _servers[str(folder)]
        server = entry[0]
        try:
            _forget_dead_holders(server)
            # Stops the server when no other process has it open (pgserver counts them on disk).
            server.cleanup()
        except Exception:  # noqa: BLE001 - closing must not fail
            log.debug("stopping the embedded PostgreSQL in %s failed", folder, exc_info=True)
        # pgserver keeps a handle per folder; a later open in this process must register anew.
        type(server)._instances.pop(server.pgdata, None)


def _forget_dead_holders(server: Any) -> None:
    """Take killed processes off pgserver's list of holders: one killed with SIGKILL never took its pid off,
    and the server would then outlive every process that uses it."""
    import psutil  # pgserver's own dependency

    with type(server)._lock:
        holders = server.global_process_id_list
        holders.put([pid for pid in holders.get() if pid == os.getpid() or psutil.pid_exists(pid)])
