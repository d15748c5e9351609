"""State tables. Times are UTC; JSON columns hold plain dicts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional, Protocol, overload

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from reindexer.model_identity import short_fingerprint, version_label

#: What reindex_meta.schema_version says. The revision itself lives in reindex_alembic_version
#: (reindexer/state/revisions.py); 2 marks a state managed by migrations, which releases before them
#: (schema_version 1) refuse as newer instead of writing to it.
SCHEMA_VERSION = 2


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: datetime | None) -> str | None: ...
def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z, whatever the database gave back (SQLite drops the zone)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.isoformat(timespec="seconds") + "Z"


def aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


class _Keyed(Protocol):
    @property
    def id(self) -> Optional[int]: ...


def saved_id(row: _Keyed) -> int:
    """The primary key of a row that has been saved (read back, or flushed): None only before that."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: save it before passing it on")
    return row.id


class Meta(SQLModel, table=True):
    __tablename__ = "reindex_meta"
    key: str = Field(primary_key=True)
    value: str


class ModelVersion(SQLModel, table=True):
    __tablename__ = "reindex_model_version"
    fingerprint: str = Field(primary_key=True)
    name: str = Field(index=True)
    path: str
    dim: int
    similarity: str  # cosine | dot | euclid
    max_seq_length: Optional[int] = None
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Training facts, filled by post-training hooks.
    base_model: Optional[str] = None
    train_data: Optional[str] = None
    run_id: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def short(self) -> str:
        return short_fingerprint(self.fingerprint)

    @property
    def label(self) -> str:
        return version_label(self.name, self.fingerprint)


class LogicalCollection(SQLModel, table=True):
    __tablename__ = "reindex_collection"
    __table_args__ = (UniqueConstraint("store_url", "name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    store_url: str
    name: str = Field(index=True)
    text_field: str = "text"
    created_at: datetime = Field(default_factory=utcnow)


class IndexVersion(SQLModel, table=True):
    """One physical collection behind a logical one; holds vectors of exactly one model."""

    __tablename__ = "reindex_index_version"
    __table_args__ = (UniqueConstraint("collection_id", "version"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="reindex_collection.id", index=True)
    version: int
    physical_name: str
    model_fingerprint: str = Field(foreign_key="reindex_model_version.fingerprint")
    dim: int
    metric: str
    index_params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # planned, building, built, verified, evaluated, live, retired, dropped, failed
    status: str = "planned"
    plan_id: Optional[str] = None
    # The version that was live when this one was cut over: rollback returns to it.
    previous_id: Optional[int] = None
    point_count: Optional[int] = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    live_since: Optional[datetime] = None
    retired_at: Optional[datetime] = None


class PlanRecord(SQLModel, table=True):
    __tablename__ = "reindex_plan"
    id: str = Field(primary_key=True)
    collection_id: int = Field(foreign_key="reindex_collection.id", index=True)
    inputs_fingerprint: str
    body: dict[str, Any] = Field(sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    """One execution of a plan (or a sync), checkpointed batch by batch."""

    __tablename__ = "reindex_run"
    id: Optional[int] = Field(default=None, primary_key=True)
    plan_id: Optional[str] = Field(default=None, index=True)
    index_version_id: int = Field(foreign_key="reindex_index_version.id", index=True)
    kind: str  # build | sync | catchup | copy
    status: str = "running"  # running | succeeded | failed
    embedded: int = 0
    deleted: int = 0
    copied: int = 0
    batches: int = 0
    checkpoint: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    error: Optional[str] = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None


class LedgerEntry(SQLModel, table=True):
    """doc_id -> content hash embedded into one index version, by one model version."""

    __tablename__ = "reindex_ledger"
    # The catch-up reads a version's rows newer than its mark (ledger_changes_since): without this
    # index, a walk over every row of the version (revision 0002).
    __table_args__ = (Index("ix_reindex_ledger_index_version_id_updated_at", "index_version_id", "updated_at"),)
    index_version_id: int = Field(foreign_key="reindex_index_version.id", primary_key=True)
    doc_id: str = Field(primary_key=True)
    content_hash: str
    model_fingerprint: str
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "reindex_audit"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    user: str
    host: str
    action: str  # plan, apply, cutover, rollback, gc, adopt, sync, migrate, gate-forced
    collection: Optional[str] = Field(default=None, index=True)
    plan_fingerprint: Optional[str] = None
    result: str = "ok"  # ok | failed | refused
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Lease(SQLModel, table=True):
    """Who may change a logical collection right now."""

    __tablename__ = "reindex_lease"
    resource: str = Field(primary_key=True)
    holder: str
    token: str
    acquired_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class TrafficRecord(SQLModel, table=True):
    """One live query mirrored to a shadow version: the label-free A/B of real traffic."""

    __tablename__ = "reindex_traffic"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    store_url: str
    collection: str = Field(index=True)
    live: str  # physical collections
    shadow: str = Field(index=True)
    live_model: str
    shadow_model: str
    k: int
    # sha256 of the query text; the text itself only when the operator enables it.
    query_hash: str
    query_text: Optional[str] = None
    live_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    shadow_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    overlap: float
    rbo: float
    live_ms: float
    shadow_ms: float
