"""Client exceptions as reindexer's errors: what every adapter's mapping falls back on.

An adapter maps its own client's exceptions first (``VectorStore._map``); what is
left becomes a ``TransientBackendError`` (connection failures and timeouts, worth
retrying) or a ``BackendError``, with secrets redacted from the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reindexer.errors import BackendError, ReindexError, TransientBackendError


def grpc_transient_codes(*extra: str) -> frozenset[Any]:
    """gRPC status codes worth retrying (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, and ``extra``)."""
    import grpc

    names = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", *extra)
    return frozenset(getattr(grpc.StatusCode, n) for n in names)


def map_common_error(exc: BaseException, where: str, redact: Callable[[str], str]) -> ReindexError:
    """What is left once an adapter has mapped its client's own exceptions."""
    text = redact(str(exc))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientBackendError(f"{where}: {type(exc).__name__}: {text}")
    return BackendError(f"{where}: {type(exc).__name__}: {text}")
