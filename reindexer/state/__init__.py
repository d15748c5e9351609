"""The state store: model versions, collections, index versions, plans, runs, ledger, audit, leases."""

from reindexer.state.database import DEFAULT_STATE_URL, redact_db_url  # noqa: F401
from reindexer.state.models import (  # noqa: F401
    AuditEvent,
    IndexVersion,
    Lease,
    LedgerEntry,
    LogicalCollection,
    ModelVersion,
    PlanRecord,
    Run,
    TrafficRecord,
)
from reindexer.state.store import StateStore  # noqa: F401
