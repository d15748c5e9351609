"""What every command works in: the effective config, the state store and a vector store."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from reindexer.adapters import VectorStore, open_store, parse_store_url
from reindexer.adapters.backend import Backend
from reindexer.adapters.registry import backends
from reindexer.config import Config, load_config
from reindexer.devices import runtime, runtime_from, set_runtime
from reindexer.errors import LeaseHeldError, LeaseLostError, NotFoundError
from reindexer.state import StateStore
from reindexer.state.database import sqlite_file

LEASE_TTL = timedelta(minutes=10)


def lease_ttl() -> timedelta:
    """How long a lease lives unrenewed: LEASE_TTL, or REINDEX_LEASE_TTL seconds (the fault tests shorten it)."""
    seconds = os.environ.get("REINDEX_LEASE_TTL")
    return timedelta(seconds=float(seconds)) if seconds else LEASE_TTL


class Workspace:
    """``read_only``: for commands that only look (status, history, eval, verify): a missing state is exit 3."""

    def __init__(self, config: Config, state: StateStore | None = None, read_only: bool = False):
        self.config = config
        self.read_only = read_only
        self.location = parse_store_url(config.store_url, config.base_dir)
        self.store_url = self.location.url
        # A writing command opens it on first use, so input refused before then leaves no new state file.
        self._state: StateStore | None = state
        self._store: VectorStore | None = None
        if read_only:
            self.state  # noqa: B018 - a command that only reads meets a missing or bad state first, before the store

        # The executor, the planner and the query side build their embedders without a config in hand.
        set_runtime(
            runtime_from(config.device, config.devices, config.precision, config.embed_batch_size, config.threads)
        )

    @classmethod
    def open(
        cls, store: str | None = None, state: str | None = None, cwd: Path | None = None, read_only: bool = False
    ) -> Workspace:
        return cls(load_config(store_url=store, state_url=state, cwd=cwd), read_only=read_only)

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.config.state_url, self.config.base_dir, create=not self.read_only)
        return self._state

    @state.setter
    def state(self, value: StateStore) -> None:
        self._state = value

    def state_exists(self) -> bool:
        """Whether the state is there to read without creating it (a server database always counts)."""
        if self._state is not None:
            return True
        path = sqlite_file(self.config.state_url, self.config.base_dir)
        return path is None or path.exists()

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.config.store_url, self.config.base_dir)
        return self._store

    def use_runtime(self, **changes: object) -> None:
        """Run models as ``changes`` say (devices, precision, batch_size, threads) from now on, over the config."""
        current = runtime()
        merged = {k: getattr(current, k) for k in ("device", "devices", "precision", "batch_size", "threads")}
        merged.update({k: v for k, v in changes.items() if v is not None})
        set_runtime(runtime_from(**merged))

    @property
    def backend(self) -> Backend:
        """The kind of store the URL names: its rules (names, ids, metrics) without opening it."""
        return backends()[self.location.backend]

    def require_store(self) -> VectorStore:
        """The store, for a command that only reads: a missing embedded store is NotFoundError (exit 3),
        not a new empty one made by opening it."""
        if self._store is None and not self.backend.exists(self.location):
            raise NotFoundError(
                f"no store at {self.location.target} ({self.store_url})",
                hint="check --store, REINDEX_STORE or [store] url in reindex.toml; "
                "`reindex plan COLLECTION --model PATH --source FILE` and apply create a new store",
            )
        return self.store

    @property
    def batch_size(self) -> int:
        """Documents per upsert and checkpoint."""
        return self.config.batch_size

    @property
    def embed_batch_size(self) -> int | None:
        """Texts per encode batch; None lets the Embedder choose the device's default."""
        return self.config.embed_batch_size

    @contextmanager
    def lease(self, collection: str, wait: float = 0) -> Iterator[object]:
        """Hold the collection's lease for the duration, renewed in the background every third of its TTL.

        With ``wait`` > 0, a held lease is retried every couple of seconds for up to
        that many seconds before LeaseHeldError (exit 4) is raised. The renewal keeps a
        holder's lease alive through long steps that write nothing (verify, evaluate, wait
        at the gate); a holder that cannot reach the state database cannot renew it, so
        after the TTL another process may take it over, and the fence in the state store
        stops this one before its next write (LeaseLostError, exit 4).
        """
        ttl = lease_ttl()
        deadline = time.monotonic() + wait
        while True:
            try:
                lease = self.state.acquire_lease(self.lease_name(collection), ttl)
                break
            except LeaseHeldError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(deadline - time.monotonic(), 0.05)))
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(lease, ttl, stop), name="reindex-lease", daemon=True)
        heartbeat.start()
        try:
            yield lease
        finally:
            stop.set()
            heartbeat.join(timeout=5)
            self.state.release_lease(lease)

    def _heartbeat(self, lease, ttl: timedelta, stop: threading.Event) -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            try:
                self.state.renew_lease(lease, ttl)
            except LeaseLostError:
                return  # the holder's next write is refused by the fence and says so
            except Exception:  # noqa: BLE001 - the database away (exit 5 after its retries): try next beat
                continue

    def renew(self, lease) -> None:
        self.state.renew_lease(lease, lease_ttl())

    def lease_name(self, collection: str) -> str:
        return f"{self.store_url}#{collection}"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._state is not None:
            self._state.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
