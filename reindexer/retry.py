"""Bounded retries for transient backend failures, shared by every adapter."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from reindexer.errors import BackendUnavailableError, TransientBackendError

T = TypeVar("T")


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
