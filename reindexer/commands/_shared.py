"""What several verb modules share: the confirmation callback and its default, the webhook notice,
and the mirrored traffic a gate judges.

Private to reindexer.commands: only its verb modules import from here. Nothing here is a verb.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reindexer.state import IndexVersion, LogicalCollection
from reindexer.workspace import Workspace

#: Asked before a verb changes what applications see (the CLI prompts; --yes and Python answer yes).
ConfirmFn = Callable[[str], bool]


def always_confirm(_: str) -> bool:
    """The default ConfirmFn: yes to every question."""
    return True


def notify_webhook(ws: Workspace, event: str, collection: str, **detail: Any) -> None:
    """Tell the collection's configured webhook (if any) what a verb did (reindexer.notify)."""
    from reindexer.notify import notify, webhook_url

    notify(webhook_url(ws.config, collection), event, collection, **detail)


def traffic_against(ws: Workspace, lc: LogicalCollection, shadow: IndexVersion, live: IndexVersion | None):
    """Mirrored traffic of ``shadow`` against ``live`` (every record of the shadow when live is None)."""
    from reindexer.traffic import summarize

    records = ws.state.traffic(ws.store_url, lc.name, shadow=shadow.physical_name)
    if live is not None:
        records = [r for r in records if r.live == live.physical_name]
    return summarize(lc.name, records)
