"""An optional webhook, called on cut-over, rollback and gate refusal.

POSTs a small JSON event to the configured URL ([collections.NAME] webhook,
[defaults] webhook, or REINDEX_WEBHOOK_URL), with a bearer token from
REINDEX_WEBHOOK_TOKEN(_FILE) when set. Failures are retried with back-off and
then logged: a notification never fails or undoes the operation it reports.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from reindexer.adapters.registry import secret_from_env
from reindexer.state.models import iso, utcnow

log = logging.getLogger(__name__)


class _Retryable(Exception):
    pass


def webhook_url(config: Any, collection: str) -> str | None:
    conf = config.collection(collection) if config is not None else {}
    return conf.get("webhook") or os.environ.get("REINDEX_WEBHOOK_URL") or getattr(config, "webhook", None)


def notify(url: str | None, event: str, collection: str, attempts: int = 4, **detail: Any) -> bool:
    """Send one event; True when the receiver accepted it."""
    if not url:
        return False
    body = json.dumps({"event": event, "collection": collection, "at": iso(utcnow()), **detail}, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "reindexer"}
    token = secret_from_env("REINDEX_WEBHOOK_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"

    @retry(
        retry=retry_if_exception_type(_Retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.2, max=5),
        reraise=True,
    )
    def send() -> None:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(f"HTTP {exc.code}") from None
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(str(exc)) from None

    try:
        send()
        return True
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        log.warning("webhook %s for %s failed: %s", event, collection, exc)
        return False
