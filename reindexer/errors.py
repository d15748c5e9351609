"""One error tree for the whole tool; every class carries its process exit code.

Adapters map their client's exceptions into this tree at the boundary, so the
planner, the build steps and the CLI never see a qdrant-client or pymilvus exception.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_BACKEND_UNAVAILABLE = 5
EXIT_GATE_REFUSED = 6
EXIT_VERIFICATION_FAILED = 7


class ReindexError(Exception):
    """Base of every error the tool raises on purpose.

    ``message`` says what is wrong; ``hint`` says how to fix it. Neither may
    contain secrets: callers pass redacted locations only.
    """

    exit_code = EXIT_UNEXPECTED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ReindexError):
    """Bad usage or bad input: a malformed file, a wrong model path, an empty corpus."""

    exit_code = EXIT_USAGE


class NotFoundError(ReindexError):
    exit_code = EXIT_NOT_FOUND


class ConflictError(ReindexError):
    """The world is not as the request assumed: drift, a held lease, a locked store."""

    exit_code = EXIT_CONFLICT


class DriftError(ConflictError):
    pass


class LeaseHeldError(ConflictError):
    pass


class LeaseLostError(LeaseHeldError):
    """This process's lease was taken over (it could not renew it in time): it stops before its next write."""


class StoreLockedError(ConflictError):
    """An embedded store (Qdrant local, Milvus Lite) is held open by another process."""


class BackendError(ReindexError):
    """A backend refused a request for a reason that retrying will not change."""

    exit_code = EXIT_UNEXPECTED


class TransientBackendError(BackendError):
    """A failure worth retrying: connection refused, time-out, 5xx, not loaded yet."""

    exit_code = EXIT_BACKEND_UNAVAILABLE


class BackendUnavailableError(BackendError):
    """Transient failures persisted through every retry."""

    exit_code = EXIT_BACKEND_UNAVAILABLE


class StateUnavailableError(BackendUnavailableError):
    """The state database (a PostgreSQL server) stayed unreachable through every retry."""


class GateRefusedError(ReindexError):
    """``result`` is what the apply built, verified and measured before the gate said no (None outside an apply).

    It is the apply's reindexer.commands.ApplyResult, carried here as an opaque object: the
    error tree sits below every other module, so it names no type of the layers above it.
    Whoever catches the error (the CLI, apply_from's report writer, hooks) knows what it holds.
    """

    exit_code = EXIT_GATE_REFUSED

    def __init__(self, message: str, hint: str | None = None, result: Any = None):
        super().__init__(message, hint)
        self.result = result


class VerificationError(ReindexError):
    exit_code = EXIT_VERIFICATION_FAILED
