"""The state store: sqlmodel over SQLite by default, any SQLAlchemy URL for teams."""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import bindparam, delete, event, func
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session, col, create_engine, select

from reindexer.errors import (
    LeaseHeldError,
    LeaseLostError,
    NotFoundError,
    ReindexError,
    StateUnavailableError,
    UsageError,
)
from reindexer.retry import call_state_with_retries
from reindexer.state.models import (
    SCHEMA_VERSION,
    AuditEvent,
    IndexVersion,
    Lease,
    LedgerEntry,
    LogicalCollection,
    Meta,
    ModelVersion,
    TrafficRecord,
    aware,
    saved_id,
    utcnow,
)
from reindexer.state.schema import (
    SchemaUpgrade,
    check_sqlite_file,
    current_revision,
    open_schema,
    upgrade_schema,
)

DEFAULT_STATE_URL = "sqlite:///.reindex/state.db"


def redact_db_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def this_holder() -> str:
    """Who holds a lease: user, host, pid and pid namespace, so a dead holder can be recognised."""
    user, host = actor()
    return f"{user}@{host} pid {os.getpid()} ns {_pid_namespace()}"


#: one chunk of a streamed diff: the ledger's hashes of a list of ids (an expanding IN, compiled once)
_LEDGER = LedgerEntry.__table__  # type: ignore[attr-defined]
_LEDGER_HASHES = core_select(_LEDGER.c.doc_id, _LEDGER.c.content_hash).where(
    _LEDGER.c.index_version_id == bindparam("version"), _LEDGER.c.doc_id.in_(bindparam("ids", expanding=True))
)
#: the same over one stretch of the key (SQLite), bounded: a sparse chunk falls back to the lookup
_LEDGER_RANGE = (
    core_select(_LEDGER.c.doc_id, _LEDGER.c.content_hash)
    .where(
        _LEDGER.c.index_version_id == bindparam("version"),
        _LEDGER.c.doc_id >= bindparam("lo"),
        _LEDGER.c.doc_id <= bindparam("hi"),
    )
    .limit(bindparam("limit"))
)
_HOLDER = re.compile(r"(?P<user>.*)@(?P<host>[^ ]*) pid (?P<pid>\d+) ns (?P<ns>\S+)")


def holder_is_gone(holder: str) -> bool:
    """True only when the holder was a process on this host, in this pid namespace, that no longer runs.

    A killed apply leaves its lease behind; waiting out the TTL would block the
    re-run that resumes it. Anything we cannot prove dead is treated as alive.
    """
    m = _HOLDER.fullmatch(holder)
    if m is None or m["host"] != socket.gethostname() or m["ns"] != _pid_namespace() or m["ns"] == "-":
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


#: SQLSTATE classes a retry may cure: connection exception, insufficient resources (too many
#: connections), operator intervention (the server shutting down, starting up), and a lost race.
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01")
#: A refusal at connect time that no retry changes (it has no SQLSTATE there, only the server's words).
_PERMANENT = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied")


def is_transient(exc: BaseException) -> bool:
    """A state database failure that a retry may cure: the connection refused, lost, or the server restarting.

    Either SQLAlchemy's wrapper or the driver's own exception (at connect time). Never true of SQLite's
    errors, which the callers do not retry (a locked file already waits 30 s in SQLite itself).
    """
    driver_error: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, (OperationalError, InterfaceError)):
            return False
        driver_error = exc.orig
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(_TRANSIENT_SQLSTATES)
    if type(driver_error).__name__ not in ("OperationalError", "InterfaceError"):
        return False
    return not any(phrase in str(driver_error) for phrase in _PERMANENT)


P = ParamSpec("P")
T = TypeVar("T")


def _retried(method: Callable[Concatenate[StateStore, P], T]) -> Callable[Concatenate[StateStore, P], T]:
    """Run a state method again from the start when a server database drops or refuses the connection.

    Each method is one transaction, so a retry repeats it whole. One whose commit reached the server
    but whose answer was lost is applied once more: ledger rows are replaced, not added, and a lease
    recognises its own token, but a run's counters count the batch twice and an audit event can appear
    twice. That window is the instant between the server's commit and its answer.
    """

    @functools.wraps(method)
    def run(self: StateStore, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.sqlite_path is not None or self.engine.dialect.name == "sqlite":
            return method(self, *args, **kwargs)
        return call_state_with_retries(lambda: method(self, *args, **kwargs), self.shown_url, is_transient)

    return run


def actor() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = os.environ.get("USER", "unknown")
    return user, socket.gethostname()


class StateStore:
    """The state database. ``create=False`` (read-only commands) never creates one: missing is exit 3."""

    def __init__(self, url: str = DEFAULT_STATE_URL, base_dir: Path | None = None, create: bool = True):
        self.url = _absolute_sqlite(url, base_dir, create)
        self.shown_url = redact_db_url(self.url)
        self.sqlite_path = _sqlite_path(self.url)
        # resource -> token of every lease this store holds: its commits are fenced by them (_check_fences)
        self._fences: dict[str, str] = {}
        self._pending_tokens: dict[str, str] = {}
        self._fence_lock = threading.Lock()
        if self.sqlite_path is not None:
            check_sqlite_file(self.sqlite_path, create)
        self.engine = _make_engine(self.url)
        try:
            self.opened = self._open_schema(create, upgrade=self.sqlite_path is not None)
        except BaseException:
            self.engine.dispose()
            raise

    # -- setup -------------------------------------------------------------
    def _open_schema(self, create: bool, upgrade: bool) -> SchemaUpgrade:
        shown = redact_db_url(self.url)
        try:
            opened = open_schema(
                self.engine, shown, create=create, upgrade_on_open=upgrade, sqlite_path=self.sqlite_path
            )
        except OperationalError as exc:
            raise _unopenable(shown, exc) from None
        except DatabaseError as exc:
            raise UsageError(
                f"the state database {shown} cannot be read: {exc.orig}",
                hint="restore it from a backup, or point --state / REINDEX_STATE elsewhere",
            ) from None
        self._stamp_meta()
        self._audit_upgrade(opened)
        return opened

    def _audit_upgrade(self, done: SchemaUpgrade) -> None:
        if done.upgraded:
            self.audit(
                "state-upgrade",
                None,
                from_revision=done.from_revision or "none",
                to_revision=done.to_revision,
                backup=done.backup,
            )

    def _stamp_meta(self) -> None:
        with Session(self.engine) as s:
            changed = False
            if s.get(Meta, "store_id") is None:
                s.add(Meta(key="store_id", value=uuid.uuid4().hex))
                changed = True
            version = s.get(Meta, "schema_version")
            if version is None or version.value != str(SCHEMA_VERSION):
                # Releases before migrations refuse a state whose schema_version is above theirs (1).
                s.merge(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
                changed = True
            if changed:
                s.commit()

    @classmethod
    def upgrade(cls, url: str = DEFAULT_STATE_URL, base_dir: Path | None = None) -> SchemaUpgrade:
        """`reindex state upgrade`: bring an existing state to the newest schema revision; never creates one."""
        url = _absolute_sqlite(url, base_dir, create=False)
        path = _sqlite_path(url)
        if path is not None:
            check_sqlite_file(path, create=False)
        engine = _make_engine(url)
        shown = redact_db_url(url)
        try:
            done = upgrade_schema(engine, shown, path)
        except OperationalError as exc:
            raise _unopenable(shown, exc) from None
        finally:
            engine.dispose()
        state = cls(url)  # stamps the meta rows
        state._audit_upgrade(done)
        state.close()
        return done

    @property
    def schema_revision(self) -> str | None:
        return current_revision(self.engine)

    @property
    def store_id(self) -> str:
        with Session(self.engine) as s:
            row = s.get(Meta, "store_id")
        if row is None:  # every open stamps it; only a state edited by hand lacks it
            raise ReindexError("the state database has no store_id", hint="open it once with a writing command")
        return row.value

    @_retried
    def _meta_row(self, key: str) -> Meta | None:
        with self._session() as s:
            return s.get(Meta, key)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for a caller's own statements. It reconnects (with retries) like every method, but
        a connection lost in the middle of its transaction ends the command with exit 5: nothing of
        that transaction was written, and the command can be run again."""
        try:
            with self._session() as s:
                yield s
        except DBAPIError as exc:
            if self.sqlite_path is None and is_transient(exc):
                reason = str(exc.orig).strip().splitlines()
                raise StateUnavailableError(
                    f"lost the connection to the state database {self.shown_url} during a transaction: "
                    f"{reason[0] if reason else type(exc.orig).__name__}",
                    hint="nothing of that transaction was written; re-run once the database is back "
                    "(an interrupted apply resumes with `reindex apply --resume COLLECTION`)",
                ) from None
            raise

    @contextmanager
    def _session(self, fenced: bool = True) -> Iterator[Session]:
        """``fenced``: its commit checks this store's leases first (every session but the leases' own)."""
        with Session(self.engine, expire_on_commit=False) as s:
            if fenced:
                event.listen(s, "before_commit", self._check_fences)
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- models ------------------------------------------------------------
    @_retried
    def get_model(self, fingerprint: str) -> ModelVersion | None:
        with self._session() as s:
            return s.get(ModelVersion, fingerprint)

    def model_of(self, version: IndexVersion) -> ModelVersion:
        """The model that made ``version``: the foreign key keeps it registered while the version is."""
        model = self.get_model(version.model_fingerprint)
        if model is None:
            raise NotFoundError(
                f"{version.physical_name} was made by model {version.model_fingerprint[:12]}, "
                "which this state store has not registered"
            )
        return model

    @_retried
    def find_model(self, ref: str) -> ModelVersion:
        """A model by full or short fingerprint, ``name@short`` label, or name (newest)."""
        with self._session() as s:
            fp = ref.split("@", 1)[1] if "@" in ref else ref
            rows = s.exec(select(ModelVersion).where(col(ModelVersion.fingerprint).startswith(fp))).all()
            if len(rows) == 1:
                return rows[0]
            rows = s.exec(
                select(ModelVersion).where(ModelVersion.name == ref).order_by(col(ModelVersion.created_at).desc())
            ).all()
            if rows:
                return rows[0]
        raise NotFoundError(f"no registered model version {ref!r}", hint="see `reindex model list`")

    @_retried
    def save_model(self, model: ModelVersion) -> ModelVersion:
        with self._session() as s:
            existing = s.get(ModelVersion, model.fingerprint)
            if existing is not None:
                return existing
            s.add(model)
            s.commit()
            return model

    @_retried
    def list_models(self) -> list[ModelVersion]:
        with self._session() as s:
            return list(s.exec(select(ModelVersion).order_by(col(ModelVersion.created_at))).all())

    # -- collections and versions -----------------------------------------
    @_retried
    def get_collection(self, store_url: str, name: str) -> LogicalCollection | None:
        with self._session() as s:
            return s.exec(
                select(LogicalCollection).where(
                    LogicalCollection.store_url == store_url, LogicalCollection.name == name
                )
            ).first()

    @_retried
    def ensure_collection(self, store_url: str, name: str, text_field: str = "text") -> LogicalCollection:
        found = self.get_collection(store_url, name)
        if found is not None:
            return found
        with self._session() as s:
            row = LogicalCollection(store_url=store_url, name=name, text_field=text_field)
            s.add(row)
            s.commit()
            return row

    @_retried
    def list_collections(self, store_url: str) -> list[LogicalCollection]:
        with self._session() as s:
            return list(
                s.exec(
                    select(LogicalCollection)
                    .where(LogicalCollection.store_url == store_url)
                    .order_by(LogicalCollection.name)
                ).all()
            )

    @_retried
    def versions(self, collection_id: int) -> list[IndexVersion]:
        with self._session() as s:
            return list(
                s.exec(
                    select(IndexVersion)
                    .where(IndexVersion.collection_id == collection_id)
                    .order_by(IndexVersion.version)
                ).all()
            )

    @_retried
    def get_version(self, version_id: int) -> IndexVersion:
        with self._session() as s:
            row = s.get(IndexVersion, version_id)
        if row is None:
            raise NotFoundError(f"no index version with id {version_id}")
        return row

    @_retried
    def version_by_physical(self, collection_id: int, physical: str) -> IndexVersion | None:
        with self._session() as s:
            return s.exec(
                select(IndexVersion).where(
                    IndexVersion.collection_id == collection_id, IndexVersion.physical_name == physical
                )
            ).first()

    @_retried
    def next_version_number(self, collection_id: int) -> int:
        with self._session() as s:
            top = s.exec(
                select(func.max(IndexVersion.version)).where(IndexVersion.collection_id == collection_id)
            ).one()
        return (top or 0) + 1

    @_retried
    def save(self, row: Any) -> Any:
        with self._session() as s:
            if isinstance(row, IndexVersion):
                row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    @_retried
    def set_status(self, version: IndexVersion, status: str, **fields: Any) -> IndexVersion:
        with self._session() as s:
            row = _version_row(s, saved_id(version))
            row.status = status
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
        return row

    @_retried
    def transition(
        self,
        changes: dict[int, dict[str, Any]],
        audits: Iterable[tuple[str, str | None, str, str | None, dict[str, Any]]] = (),
        drop_ledgers: Iterable[int] = (),
        clear_pending: str | None = None,
    ) -> dict[int, IndexVersion]:
        """Several versions' fields, their audit events, dropped ledgers and a cleared intent, in one transaction.

        ``audits`` holds (action, collection, result, plan_fingerprint, detail).
        A crash leaves either all of it or none of it.
        """
        user, host = actor()
        now = utcnow()
        with self._session() as s:
            rows = {}
            for version_id, fields in changes.items():
                row = _version_row(s, version_id)
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated_at = now
                s.add(row)
                rows[version_id] = row
            for version_id in drop_ledgers:
                s.exec(delete(LedgerEntry).where(col(LedgerEntry.index_version_id) == version_id))
            for action, collection, result, fingerprint, detail in audits:
                s.add(
                    AuditEvent(
                        user=user,
                        host=host,
                        action=action,
                        collection=collection,
                        plan_fingerprint=fingerprint,
                        result=result,
                        detail=detail,
                    )
                )
            if clear_pending is not None:
                pending = s.get(Meta, clear_pending)
                if pending is not None:
                    s.delete(pending)
            s.commit()
            for row in rows.values():
                s.refresh(row)
        return rows

    # -- adopt and forget: a collection's records made or removed in one transaction --
    @_retried
    def record_adoption(
        self,
        store_url: str,
        name: str,
        text_field: str,
        model: ModelVersion,
        version: IndexVersion,
        ledger_rows: Iterable[tuple[str, str]],
        audit_detail: dict[str, Any],
    ) -> IndexVersion:
        """The model, the collection, its live version, its ledger and the audit event, all or nothing.

        ``version.collection_id`` is filled in here. A crash before the commit leaves the
        state as it was, so running adopt again is the repair.
        """
        user, host = actor()
        now = utcnow()
        with self._session() as s:
            s.merge(model)
            lc = s.exec(
                select(LogicalCollection).where(
                    LogicalCollection.store_url == store_url, LogicalCollection.name == name
                )
            ).first()
            if lc is None:
                lc = LogicalCollection(store_url=store_url, name=name, text_field=text_field)
                s.add(lc)
                s.flush()
            version.collection_id = lc.id
            version.updated_at = now
            s.add(version)
            s.flush()
            rows = [
                dict(
                    index_version_id=version.id,
                    doc_id=d,
                    content_hash=h,
                    model_fingerprint=model.fingerprint,
                    updated_at=now,
                )
                for d, h in ledger_rows
            ]
            if rows:
                s.bulk_insert_mappings(LedgerEntry, rows)
            s.add(AuditEvent(user=user, host=host, action="adopt", collection=name, result="ok", detail=audit_detail))
            s.commit()
            s.refresh(version)
        return version

    @_retried
    def forget_collection(self, collection_id: int, pending: str, audit_detail: dict[str, Any]) -> None:
        """Every record of one logical collection (versions, ledgers, runs, plans, its intent), then the audit event."""
        from reindexer.state.models import PlanRecord, Run

        user, host = actor()
        with self._session() as s:
            lc = s.get(LogicalCollection, collection_id)
            if lc is None:
                return
            version_ids = list(s.exec(select(IndexVersion.id).where(IndexVersion.collection_id == collection_id)).all())
            for chunk in _chunks(version_ids, 500):
                s.exec(delete(LedgerEntry).where(col(LedgerEntry.index_version_id).in_(chunk)))
                s.exec(delete(Run).where(col(Run.index_version_id).in_(chunk)))
            s.exec(delete(IndexVersion).where(col(IndexVersion.collection_id) == collection_id))
            s.exec(delete(PlanRecord).where(col(PlanRecord.collection_id) == collection_id))
            intent = s.get(Meta, pending)
            if intent is not None:
                s.delete(intent)
            s.add(
                AuditEvent(user=user, host=host, action="forget", collection=lc.name, result="ok", detail=audit_detail)
            )
            s.delete(lc)
            s.commit()

    # -- intents: a step that changes the store, recorded before it does -----
    @_retried
    def get_pending(self, key: str) -> dict[str, Any] | None:
        with self._session() as s:
            row = s.get(Meta, key)
        return None if row is None else json.loads(row.value)

    @_retried
    def set_pending(self, key: str, intent: dict[str, Any]) -> None:
        with self._session() as s:
            row = s.get(Meta, key) or Meta(key=key, value="")
            row.value = json.dumps(intent, default=str)
            s.add(row)
            s.commit()

    # -- ledger ------------------------------------------------------------
    @_retried
    def ledger(self, version_id: int) -> dict[str, str]:
        """doc_id -> content hash for one index version."""
        with self._session() as s:
            rows = s.exec(
                select(LedgerEntry.doc_id, LedgerEntry.content_hash).where(LedgerEntry.index_version_id == version_id)
            ).all()
        return {doc_id: h for doc_id, h in rows}

    @_retried
    def ledger_hashes(self, version_id: int, doc_ids: list[str]) -> dict[str, str]:
        """doc_id -> content hash for those of ``doc_ids`` the version's ledger holds: one chunk of a streamed diff."""
        # Core statements on one connection: the ORM's session and row objects cost as much as SQLite's lookup.
        if not doc_ids:
            return {}
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                # Sources are mostly read in id order, so a chunk's ids are one stretch of the ledger's
                # key: one range read is about twice as fast as looking the ids up. (SQLite compares
                # text by UTF-8 bytes, Python by code points: the same order. PostgreSQL's collation
                # may differ from both, so there the ids are always looked up.)
                wanted = set(doc_ids)
                limit = 2 * len(wanted) + 16
                rows = conn.execute(
                    _LEDGER_RANGE, {"version": version_id, "lo": min(wanted), "hi": max(wanted), "limit": limit}
                ).all()
                if len(rows) < limit:
                    return {doc_id: h for doc_id, h in rows if doc_id in wanted}
            found: dict[str, str] = {}
            for chunk in _chunks(doc_ids, 900):
                found.update(conn.execute(_LEDGER_HASHES, {"version": version_id, "ids": chunk}).all())
            return found

    def ledger_id_pages(self, version_id: int, page: int = 2000) -> Iterator[list[str]]:
        """The version's ledger ids in id order, a page at a time (keyset paging: memory stays flat)."""
        last: str | None = None
        while True:
            q = select(LedgerEntry.doc_id).where(LedgerEntry.index_version_id == version_id)
            if last is not None:
                q = q.where(LedgerEntry.doc_id > last)
            ids = self._ids(q.order_by(LedgerEntry.doc_id).limit(page))
            if not ids:
                return
            yield ids
            last = ids[-1]

    @_retried
    def _ids(self, query: Any) -> list[str]:
        with self._session() as s:
            return list(s.exec(query).all())

    @_retried
    def ledger_count(self, version_id: int) -> int:
        with self._session() as s:
            return s.exec(
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.index_version_id == version_id)
            ).one()

    @_retried
    def record_batch(
        self,
        version_id: int,
        model_fingerprint: str,
        upserted: Iterable[tuple[str, str]],
        deleted: Iterable[str] = (),
        run_id: int | None = None,
        checkpoint: dict[str, Any] | None = None,
        embedded: int = 0,
        copied: int = 0,
    ) -> None:
        """Ledger rows for one written batch and the run's checkpoint, in one transaction."""
        upserted = list(upserted)
        deleted = list(deleted)
        now = utcnow()
        with self._session() as s:
            if upserted:
                ids = [d for d, _ in upserted]
                for chunk in _chunks(ids, 500):
                    s.exec(
                        delete(LedgerEntry).where(
                            col(LedgerEntry.index_version_id) == version_id, col(LedgerEntry.doc_id).in_(chunk)
                        )
                    )
                s.bulk_insert_mappings(
                    LedgerEntry,
                    [
                        dict(
                            index_version_id=version_id,
                            doc_id=d,
                            content_hash=h,
                            model_fingerprint=model_fingerprint,
                            updated_at=now,
                        )
                        for d, h in upserted
                    ],
                )
            for chunk in _chunks(deleted, 500):
                s.exec(
                    delete(LedgerEntry).where(
                        col(LedgerEntry.index_version_id) == version_id, col(LedgerEntry.doc_id).in_(chunk)
                    )
                )
            if run_id is not None:
                from reindexer.state.models import Run

                run = s.get(Run, run_id)
                if run is None:
                    raise NotFoundError(f"no run with id {run_id} to checkpoint")
                run.batches += 1
                run.embedded += embedded
                run.copied += copied
                run.deleted += len(deleted)
                if checkpoint is not None:
                    run.checkpoint = checkpoint
                s.add(run)
            s.commit()

    @_retried
    def drop_ledger(self, version_id: int) -> None:
        with self._session() as s:
            s.exec(delete(LedgerEntry).where(col(LedgerEntry.index_version_id) == version_id))
            s.commit()

    # -- audit -------------------------------------------------------------
    @_retried
    def audit(
        self,
        action: str,
        collection: str | None,
        result: str = "ok",
        plan_fingerprint: str | None = None,
        **detail: Any,
    ) -> None:
        user, host = actor()
        with self._session() as s:
            s.add(
                AuditEvent(
                    user=user,
                    host=host,
                    action=action,
                    collection=collection,
                    plan_fingerprint=plan_fingerprint,
                    result=result,
                    detail=detail,
                )
            )
            s.commit()

    @_retried
    def history(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        with self._session() as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
            if collection is not None:
                q = q.where(AuditEvent.collection == collection)
            return list(s.exec(q).all())

    # -- shadow traffic ----------------------------------------------------
    @_retried
    def record_traffic(self, records: list[TrafficRecord]) -> None:
        if not records:
            return
        with self._session() as s:
            s.add_all(records)
            s.commit()

    @_retried
    def traffic(
        self, store_url: str, collection: str, since: datetime | None = None, shadow: str | None = None
    ) -> list[TrafficRecord]:
        with self._session() as s:
            q = select(TrafficRecord).where(
                TrafficRecord.store_url == store_url, TrafficRecord.collection == collection
            )
            if since is not None:
                q = q.where(TrafficRecord.at >= since)
            if shadow is not None:
                q = q.where(TrafficRecord.shadow == shadow)
            return list(s.exec(q.order_by(TrafficRecord.id)).all())

    # -- leases ------------------------------------------------------------
    # A lease is a row (resource, holder, token, expiry). Its token also fences: while this store holds
    # a lease, every transaction it commits first checks, under a row lock, that the lease row still
    # carries its token (``_check_fences``). A holder cut off from the database past the expiry, whose lease
    # another process has since taken over, therefore writes nothing more when it reconnects.
    @_retried
    def acquire_lease(self, resource: str, ttl: timedelta, holder: str | None = None) -> Lease:
        """Take the lease on ``resource`` or raise ``LeaseHeldError``; expired leases are taken over."""
        holder = holder or this_holder()
        now = utcnow()
        token = self._pending_tokens.setdefault(resource, uuid.uuid4().hex)
        with self._session(fenced=False) as s:
            current = s.get(Lease, resource, with_for_update=True)
            if current is not None and current.token == token:
                # The commit of an earlier attempt reached the database; only its answer was lost.
                return self._hold(current)
            if current is not None and aware(current.expires_at) > now and not holder_is_gone(current.holder):
                self._pending_tokens.pop(resource, None)
                raise LeaseHeldError(
                    f"{resource} is locked by {current.holder} since {current.acquired_at:%Y-%m-%d %H:%M:%S} UTC",
                    hint="wait for it to finish (or pass --wait); a stale lease expires at "
                    f"{current.expires_at:%H:%M:%S} UTC",
                )
            if current is not None:
                # Take over an expired lease only if nobody else just did: delete by its old token.
                taken = s.exec(delete(Lease).where(col(Lease.resource) == resource, col(Lease.token) == current.token))
                if taken.rowcount != 1:
                    s.rollback()
                    self._pending_tokens.pop(resource, None)
                    raise LeaseHeldError(f"{resource} was just locked by another process")
            lease = Lease(resource=resource, holder=holder, token=token, acquired_at=now, expires_at=now + ttl)
            s.add(lease)
            try:
                s.commit()
            except IntegrityError as exc:  # a concurrent acquirer inserted first
                s.rollback()
                self._pending_tokens.pop(resource, None)
                raise LeaseHeldError(f"{resource} was just locked by another process") from exc
            return self._hold(lease)

    def _hold(self, lease: Lease) -> Lease:
        with self._fence_lock:
            self._pending_tokens.pop(lease.resource, None)
            self._fences[lease.resource] = lease.token
        return lease

    @_retried
    def renew_lease(self, lease: Lease, ttl: timedelta) -> None:
        """Push the expiry on; ``LeaseLostError`` if another process has taken the lease over meanwhile."""
        with self._session(fenced=False) as s:
            row = s.get(Lease, lease.resource, with_for_update=True)
            if row is None or row.token != lease.token:
                raise self._lost(lease.resource, row)
            row.expires_at = utcnow() + ttl
            s.add(row)
            s.commit()

    @_retried
    def release_lease(self, lease: Lease) -> None:
        with self._fence_lock:
            if self._fences.get(lease.resource) == lease.token:
                del self._fences[lease.resource]
        with self._session(fenced=False) as s:
            row = s.get(Lease, lease.resource, with_for_update=True)
            if row is not None and row.token == lease.token:
                s.delete(row)
                s.commit()

    def _check_fences(self, s: Session) -> None:
        """Before a commit: abort it if any lease this store holds has been taken over (LeaseLostError).

        The session's writes go first and the check last: SQLite has then begun its write transaction
        (no other writer can commit until ours ends), and PostgreSQL's share lock on the lease row keeps
        a taker's FOR UPDATE waiting until ours commits, so a takeover is either wholly before this
        transaction (and refuses it) or wholly after it.
        """
        with self._fence_lock:
            fences = dict(self._fences)
        if not fences:
            return
        s.flush()
        rows = s.exec(select(Lease).where(col(Lease.resource).in_(list(fences))).with_for_update(read=True)).all()
        found = {row.resource: row for row in rows}
        for resource, token in fences.items():
            row = found.get(resource)
            if row is None or row.token != token:
                raise self._lost(resource, row)

    @staticmethod
    def _lost(resource: str, row: Lease | None) -> LeaseLostError:
        now = f"held by {row.holder} since {row.acquired_at:%H:%M:%S} UTC" if row is not None else "removed"
        return LeaseLostError(
            f"lost the lease on {resource}, now {now}: it expired while this process could not renew it "
            "(the state database out of reach) and was taken over, so this process stopped before its next write",
            hint="nothing more was written by this process; see `reindex status` and `reindex history`, and "
            "re-run (an interrupted apply resumes with `reindex apply --resume COLLECTION`) once the other "
            "holder is done",
        )


def _version_row(s: Session, version_id: int) -> IndexVersion:
    row = s.get(IndexVersion, version_id)
    if row is None:
        raise NotFoundError(f"no index version with id {version_id}")
    return row


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _absolute_sqlite(url: str, base_dir: Path | None, create: bool = True) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"not a database URL: {url!r}",
            hint="use sqlite:///path/state.db or postgresql+psycopg://user@host/db",
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def sqlite_file(url: str, base_dir: Path | None = None) -> Path | None:
    """The file a SQLite state URL names (relative to ``base_dir``), or None for a server database."""
    return _sqlite_path(_absolute_sqlite(url, base_dir, create=False))


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


def _unopenable(shown_url: str, exc: OperationalError) -> ReindexError:
    """A database server's refusal, as the error a user can act on: missing, not allowed, or unreachable."""
    text = str(exc.orig)
    if "does not exist" in text and "database" in text:
        return NotFoundError(
            f"no database for the state at {shown_url}",
            hint="check --state / REINDEX_STATE, or create the database (createdb) first",
        )
    if "password authentication failed" in text or "permission denied" in text or "readonly" in text:
        return UsageError(
            f"not allowed to use the state database {shown_url}: {text.splitlines()[0]}",
            hint="check the user, password and grants in --state / REINDEX_STATE",
        )
    if "unable to open database file" in text:
        return UsageError(
            f"cannot open the state database {shown_url}: {text}",
            hint="check the file's folder exists and is writable, or point --state elsewhere",
        )
    return ReindexError(
        f"cannot open the state store {shown_url}: {text.splitlines()[0] if text else exc}",
        hint="check --state / REINDEX_STATE",
    )


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers run beside a writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        engine = create_engine(url, pool_pre_ping=True, connect_args=_server_connect_args(url))
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise UsageError(f"cannot use state URL {redact_db_url(url)}: {exc}") from None
    shown = redact_db_url(url)

    @event.listens_for(engine, "do_connect")
    def _connect_with_retries(dialect, _record, cargs, cparams):
        # Every new connection (the first, and the one pool_pre_ping makes after a server restart) waits
        # out a server that is down or restarting, within the retry policy, then gives up with exit 5.
        dbapi = dialect.loaded_dbapi
        kinds = (dbapi.OperationalError, dbapi.InterfaceError)
        return call_state_with_retries(
            lambda: dialect.connect(*cargs, **cparams), shown, lambda e: isinstance(e, kinds) and is_transient(e)
        )

    return engine


def _server_connect_args(url: str) -> dict[str, Any]:
    """libpq time-outs, so a server that stops answering (a network partition) fails and is retried
    instead of hanging: connecting, and a connection whose packets go unacknowledged. The URL's own
    settings win."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    defaults = {
        "connect_timeout": int(float(os.environ.get("REINDEX_CONNECT_TIMEOUT", "10"))),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }
    return {k: v for k, v in defaults.items() if k not in parsed.query}
