"""Re-embedding on Ray Data: the read and embed stages of a build spread over a Ray cluster.

``reindex apply PLAN --executor ray`` (or ``[apply] executor = "ray"``) runs the build
through ``reindexer.raydata.executor.sync_on_ray`` instead of the local executor (reindexer.build.stream); the
ledger, catch-up, verification, gate and cut-over stay the library's own. See docs/ray.md.
Ray is the optional extra ``reindexer[ray]``; nothing here imports it at module level.
"""

from __future__ import annotations

from typing import Any

from reindexer.errors import UsageError

EXECUTORS = ("local", "ray")
INSTALL_HINT = 'pip install "reindexer[ray]"'


def check_executor(executor: str | None) -> str:
    """The executor's name, refusing an unknown one or Ray when it is not installed (exit 2)."""
    name = (executor or "local").strip().lower()
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}", hint=f"use one of: {', '.join(EXECUTORS)}")
    if name == "ray":
        require_ray()
    return name


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]; plain ray lacks it
    except ImportError:
        raise UsageError(
            "the ray executor needs Ray Data, which is not installed",
            hint=f"{INSTALL_HINT}, or apply with --executor local",
        ) from None
    return ray


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS, else start a local one); True when this call started it.

    A process that already called ``ray.init`` (a test session, a notebook, a ``ray job``) keeps its connection.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    import os

    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
            configure_logging=True,
        )
    except ConnectionError as exc:
        raise UsageError(
            f"cannot join the Ray cluster at {address}: {exc}",
            hint="check --ray-address (ray://HOST:10001 or HOST:6379), or leave it out for a local Ray",
        ) from None
    return True
