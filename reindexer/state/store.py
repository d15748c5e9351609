"""The state store: models, collections, index versions, plans, runs, the ledger, audit, leases.

``StateStore`` is the one object callers use (``ws.state``): sqlmodel over SQLite by default, any
SQLAlchemy URL for teams. Its methods are grouped by job in modules of their own: opening the
database and retrying (reindexer.state.database), the ledger (reindexer.state.ledger), leases
(reindexer.state.leases); the schema's revisions are reindexer.state.revisions, the tables
reindexer.state.models. Every read and write of the state goes through a method here, so no caller
builds its own query.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Session, col, select

from reindexer.errors import NotFoundError, ReindexError, UsageError
from reindexer.state.database import (
    DEFAULT_STATE_URL,
    absolute_url,
    make_engine,
    redact_db_url,
    retried,
    sqlite_path,
    unopenable,
)
from reindexer.state.leases import Leases, actor
from reindexer.state.ledger import Ledger, chunks
from reindexer.state.models import (
    SCHEMA_VERSION,
    AuditEvent,
    IndexVersion,
    LedgerEntry,
    LogicalCollection,
    Meta,
    ModelVersion,
    PlanRecord,
    Run,
    TrafficRecord,
    saved_id,
    utcnow,
)
from reindexer.state.revisions import SchemaUpgrade, check_sqlite_file, current_revision, open_schema, upgrade_schema


class StateStore(Leases, Ledger):
    """The state database. ``create=False`` (read-only commands) never creates one: missing is exit 3."""

    def __init__(self, url: str = DEFAULT_STATE_URL, base_dir: Path | None = None, create: bool = True):
        super().__init__(url, base_dir, create)
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
            raise unopenable(shown, exc) from None
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
        url = absolute_url(url, base_dir, create=False)
        path = sqlite_path(url)
        if path is not None:
            check_sqlite_file(path, create=False)
        engine = make_engine(url)
        shown = redact_db_url(url)
        try:
            done = upgrade_schema(engine, shown, path)
        except OperationalError as exc:
            raise unopenable(shown, exc) from None
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

    @retried
    # -- models ------------------------------------------------------------
    @retried
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

    @retried
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

    @retried
    def save_model(self, model: ModelVersion) -> ModelVersion:
        with self._session() as s:
            existing = s.get(ModelVersion, model.fingerprint)
            if existing is not None:
                return existing
            s.add(model)
            s.commit()
            return model

    @retried
    def list_models(self) -> list[ModelVersion]:
        with self._session() as s:
            return list(s.exec(select(ModelVersion).order_by(col(ModelVersion.created_at))).all())

    # -- collections and versions -----------------------------------------
    @retried
    def get_collection(self, store_url: str, name: str) -> LogicalCollection | None:
        with self._session() as s:
            return s.exec(
                select(LogicalCollection).where(
                    LogicalCollection.store_url == store_url, LogicalCollection.name == name
                )
            ).first()

    @retried
    def ensure_collection(self, store_url: str, name: str, text_field: str = "text") -> LogicalCollection:
        found = self.get_collection(store_url, name)
        if found is not None:
            return found
        with self._session() as s:
            row = LogicalCollection(store_url=store_url, name=name, text_field=text_field)
            s.add(row)
            s.commit()
            return row

    @retried
    def list_collections(self, store_url: str) -> list[LogicalCollection]:
        with self._session() as s:
            return list(
                s.exec(
                    select(LogicalCollection)
                    .where(LogicalCollection.store_url == store_url)
                    .order_by(LogicalCollection.name)
                ).all()
            )

    @retried
    def versions(self, collection_id: int) -> list[IndexVersion]:
        with self._session() as s:
            return list(
                s.exec(
                    select(IndexVersion)
                    .where(IndexVersion.collection_id == collection_id)
                    .order_by(IndexVersion.version)
                ).all()
            )

    @retried
    def get_version(self, version_id: int) -> IndexVersion:
        with self._session() as s:
            row = s.get(IndexVersion, version_id)
        if row is None:
            raise NotFoundError(f"no index version with id {version_id}")
        return row

    @retried
    def version_by_physical(self, collection_id: int, physical: str) -> IndexVersion | None:
        with self._session() as s:
            return s.exec(
                select(IndexVersion).where(
                    IndexVersion.collection_id == collection_id, IndexVersion.physical_name == physical
                )
            ).first()

    @retried
    def next_version_number(self, collection_id: int) -> int:
        with self._session() as s:
            top = s.exec(
                select(func.max(IndexVersion.version)).where(IndexVersion.collection_id == collection_id)
            ).one()
        return (top or 0) + 1

    @retried
    def save(self, row: Any) -> Any:
        with self._session() as s:
            if isinstance(row, IndexVersion):
                row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    @retried
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

    @retried
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
    @retried
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

    @retried
    def forget_collection(self, collection_id: int, pending: str, audit_detail: dict[str, Any]) -> None:
        """Every record of one logical collection (versions, ledgers, runs, plans, its intent), then the audit event."""
        user, host = actor()
        with self._session() as s:
            lc = s.get(LogicalCollection, collection_id)
            if lc is None:
                return
            version_ids = list(s.exec(select(IndexVersion.id).where(IndexVersion.collection_id == collection_id)).all())
            for chunk in chunks(version_ids, 500):
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
    @retried
    def get_pending(self, key: str) -> dict[str, Any] | None:
        with self._session() as s:
            row = s.get(Meta, key)
        return None if row is None else json.loads(row.value)

    @retried
    def set_pending(self, key: str, intent: dict[str, Any]) -> None:
        with self._session() as s:
            row = s.get(Meta, key) or Meta(key=key, value="")
            row.value = json.dumps(intent, default=str)
            s.add(row)
            s.commit()

    # -- meta: small named values (watermarks, catch-up marks, rate history) --
    # Each of these runs in one `session()`, as a caller's own statements: a connection lost mid-way
    # ends the command (exit 5) instead of repeating a write.
    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
        return None if row is None else row.value

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Set every ``key: value`` of ``values``, in one transaction."""
        with self.session() as s:
            for key, value in values.items():
                row = s.get(Meta, key) or Meta(key=key, value="")
                row.value = value
                s.add(row)
            s.commit()

    def append_meta_list(self, key: str, entry: Any, keep: int) -> None:
        """Append ``entry`` to the JSON list under ``key`` and keep its last ``keep``: read and written in one
        transaction, so two writers do not lose each other's entry."""
        with self.session() as s:
            row = s.get(Meta, key) or Meta(key=key, value="[]")
            row.value = json.dumps((json.loads(row.value) + [entry])[-keep:])
            s.add(row)
            s.commit()

    # -- plans and runs ----------------------------------------------------
    def get_plan(self, plan_id: str) -> PlanRecord | None:
        with self.session() as s:
            return s.get(PlanRecord, plan_id)

    def version_of_plan(self, plan_id: str) -> IndexVersion | None:
        """The index version a plan built (or began to build), if any."""
        with self.session() as s:
            return s.exec(select(IndexVersion).where(IndexVersion.plan_id == plan_id)).first()

    def interrupt_runs(self, version_id: int | None, error: str) -> None:
        """Mark the version's runs still marked running as interrupted, with ``error`` (their process is gone)."""
        with self.session() as s:
            for stale in s.exec(select(Run).where(Run.index_version_id == version_id, Run.status == "running")).all():
                stale.status, stale.error = "interrupted", error
                s.add(stale)
            s.commit()

    def finish_run(self, run_id: int | None, error: str | None = None) -> None:
        """A run succeeded, or failed with ``error``."""
        with self.session() as s:
            row = s.get(Run, run_id)
            if row is None:
                raise NotFoundError(f"no run with id {run_id} to finish")
            row.status = "failed" if error else "succeeded"
            row.error = error
            row.finished_at = utcnow()
            s.add(row)
            s.commit()

    def succeeded_run_starts(self, version_id: int, kinds: Iterable[str]) -> list[datetime]:
        """When each succeeded run of those ``kinds`` (build, copy, sync, ...) on the version began."""
        with self.session() as s:
            return list(
                s.exec(
                    select(Run.started_at).where(
                        Run.index_version_id == version_id,
                        col(Run.kind).in_(tuple(kinds)),
                        Run.status == "succeeded",
                    )
                ).all()
            )

    # -- audit -------------------------------------------------------------
    @retried
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

    @retried
    def history(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        with self._session() as s:
            q = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
            if collection is not None:
                q = q.where(AuditEvent.collection == collection)
            return list(s.exec(q).all())

    # -- shadow traffic ----------------------------------------------------
    @retried
    def record_traffic(self, records: list[TrafficRecord]) -> None:
        if not records:
            return
        with self._session() as s:
            s.add_all(records)
            s.commit()

    @retried
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


def _version_row(s: Session, version_id: int) -> IndexVersion:
    row = s.get(IndexVersion, version_id)
    if row is None:
        raise NotFoundError(f"no index version with id {version_id}")
    return row
