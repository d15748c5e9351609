"""Bounded retries for transient failures: the vector store's (every adapter) and the state database's."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from reindexer.errors import BackendUnavailableError, StateUnavailableError, TransientBackendError

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry_policy() -> tuple[int, float, float]:
    """(attempts, first wait, total seconds), overridable by REINDEX_RETRY_* for tests and ops."""
    attempts = int(os.environ.get("REINDEX_RETRY_ATTEMPTS", "6"))
    initial = float(os.environ.get("REINDEX_RETRY_INITIAL", "0.5"))
    budget = float(os.environ.get("REINDEX_RETRY_MAX_SECONDS", "60"))
    return max(attempts, 1), initial, budget


def call_with_retries(fn: Callable[[], T], what: str) -> T:
    """Run ``fn``, retrying ``TransientBackendError`` with exponential back-off and jitter."""
    attempts, initial, budget = retry_policy()
    retrying = Retrying(
        retry=retry_if_exception_type(TransientBackendError),
        stop=stop_after_attempt(attempts) | stop_after_delay(budget),
        wait=wait_exponential_jitter(initial=initial, max=max(initial, 10.0), jitter=initial),
        reraise=False,
    )
    try:
        return retrying(fn)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise BackendUnavailableError(
            f"{what}: backend unavailable after {exc.last_attempt.attempt_number} attempts: {last}",
            hint="check that the vector database is running and reachable, then re-run; "
            "an interrupted apply resumes where it stopped",
        ) from last


def call_state_with_retries(fn: Callable[[], T], shown_url: str, transient: Callable[[BaseException], bool]) -> T:
    """Run ``fn`` against the state database, retrying what ``transient`` accepts under the same policy.

    Gives up with StateUnavailableError (exit 5) naming the attempts, the time spent and ``shown_url``,
    which the caller has already redacted: the message never holds the password.
    """
    attempts, initial, budget = retry_policy()
    started = time.monotonic()
    retrying = Retrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(attempts) | stop_after_delay(budget),
        wait=wait_exponential_jitter(initial=initial, max=max(initial, 10.0), jitter=initial),
        before_sleep=lambda rs: log.warning(
            "the state database %s did not answer (attempt %d of %d): %s; retrying in %.1fs",
            shown_url,
            rs.attempt_number,
            attempts,
            _first_line(rs.outcome.exception() if rs.outcome else None),
            rs.next_action.sleep if rs.next_action else 0.0,
        ),
        reraise=False,
    )
    try:
        return retrying(fn)
    except RetryError as exc:
        raise StateUnavailableError(
            f"the state database {shown_url} is unavailable after {exc.last_attempt.attempt_number} attempts "
            f"over {time.monotonic() - started:.1f}s: {_first_line(exc.last_attempt.exception())}",
            hint="check that the database server is running and reachable (REINDEX_RETRY_ATTEMPTS and "
            "REINDEX_RETRY_MAX_SECONDS set how long to wait), then re-run; an interrupted apply resumes "
            "with `reindex apply --resume COLLECTION`",
        ) from None


def _first_line(exc: BaseException | None) -> str:
    lines = str(getattr(exc, "orig", None) or exc or "").strip().splitlines()
    return lines[0] if lines else type(exc).__name__
