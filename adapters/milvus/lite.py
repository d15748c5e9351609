"""Milvus Lite's quirks: one in-process server per .db file, its lock, and settling after a crash.

Milvus Lite runs inside this process, one server per .db path: the stores open on a
path are counted so that the last one to close releases the path and its lock for
other processes (``release``). A process killed mid-write leaves a write-ahead log
that the next one settles on opening (``settle_after_unclean_exit``). Functions
over paths and clients; the store itself is ``reindexer.adapters.milvus.store``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


# Milvus Lite runs in-process, one server per .db path; count our stores per path
# so the last one to close releases the path (and its lock) for other processes.
LITE_USERS: dict[str, int] = {}

LITE_GUARD = threading.Lock()


def lite_path_of(client: Any) -> str | None:
    """The .db file behind an application's Milvus Lite client, or None for a server.

    pymilvus rewrites a .db URI to the loopback port of an in-process Lite server;
    milvus-lite's server manager is the only place that maps the port back.
    """
    address = getattr(getattr(client, "_config", None), "address", "") or ""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return None
    for path, entry in dict(getattr(server_manager_instance, "_servers", {})).items():
        if address.endswith(f":{entry[-1]}"):
            return path
    return None


def collections_with_leftover_wal(path: str) -> list[str]:
    """Collections of a closed Milvus Lite store that still hold write-ahead log files.

    Milvus Lite 3.x keeps ``collections/NAME/wal/wal_data_N.arrow`` while it runs and removes
    them on a clean shutdown; one left behind means the last process did not exit cleanly.
    """
    root = Path(path) / "collections"
    try:
        return sorted(wal.parent.name for wal in root.glob("*/wal") if any(wal.glob("*.arrow")))
    except OSError:
        return []


def lite_lock_held(path: str) -> bool:
    """True when another process holds Milvus Lite's LOCK file in ``path``."""
    lock_file = os.path.join(path, "LOCK")
    if not os.path.exists(lock_file):
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return False
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def settle_after_unclean_exit(client: Any, names: list[str], timeout: float) -> None:
    """Flush the collections ``names`` of a Milvus Lite store just opened (see why below)."""
    # A process killed inside Milvus Lite's flush can leave the flushed rows both in a data
    # file and in the write-ahead log the flush was about to delete. The next process to open
    # the store replays that log into memory and counts and returns every such row twice
    # (docs/benchmarks.md, "Crash fuzzing"); a flush right after opening merges them, so
    # every later read sees each row once. A clean exit leaves no log behind, so this costs
    # nothing then; after any other unclean exit the flush only persists what was logged.
    for name in names:
        try:
            client.flush(name, timeout=timeout)
        except Exception:  # noqa: BLE001 - a collection dropped since, or not one of ours
            log.debug("settling Milvus Lite collection %s failed", name, exc_info=True)
        else:
            log.info("Milvus Lite: %s was left mid-write by an earlier process; flushed its log", name)


def clear_half_created_collection(path: str, name: str) -> bool:
    """Remove what a process killed inside Milvus Lite's ``create_collection`` left of ``name``.

    Milvus Lite makes ``collections/NAME/`` first and writes its ``schema.json`` after; the
    collection exists only once the schema is there. A kill between the two leaves a folder
    that Milvus Lite does not count as a collection yet refuses to create again ("File
    exists"), so the resumed apply could never make its shadow. Called by the process that
    holds the store's lock (its in-process server is open), just before it creates ``name``.
    """
    folder = Path(path) / "collections" / name
    if not folder.is_dir() or (folder / "schema.json").exists():
        return False
    shutil.rmtree(folder)
    log.warning("Milvus Lite: removed %s, left half-created by a process killed while creating it", folder)
    return True


def release(path: str) -> None:
    """One store on ``path`` closed: the last one releases Milvus Lite's server there, and its lock."""
    with LITE_GUARD:
        left = LITE_USERS.get(path, 1) - 1
        if left > 0:
            LITE_USERS[path] = left
            return
        LITE_USERS.pop(path, None)
        try:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(path)
        except Exception:  # noqa: BLE001
            log.debug("releasing Milvus Lite for %s failed", path, exc_info=True)
