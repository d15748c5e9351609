"""Kill points: the named places where a step has changed the store but not yet the state.

The crash tests set ``REINDEX_TEST_KILL_AT`` to one name (or several, comma
separated) and the process SIGKILLs itself when it reaches that point, so a
window of microseconds, such as the one between an alias swap and the state
write that records it, is hit every time rather than by luck. Unset (always,
outside the tests), a kill point costs one environment lookup.

Every step that changes two things (the store and the state) names its kill
point here, and tests/test_crash.py kills the process there and checks that the
next command repairs what it left.
"""

from __future__ import annotations

import os
import signal

ENV = "REINDEX_TEST_KILL_AT"

KILL_POINTS = {
    "adopt-before-record": "adopt tagged the points and set the collection's metadata; the state has no record yet",
    "before-alias-swap": "the intent of a cut-over, rollback or apply is recorded; the alias has not moved",
    "after-alias-swap": "the alias has moved; the state still names the old live version",
    "gc-after-drop": "gc dropped a retired version's collection; the state still calls it retired",
    "migrate-after-drop": "migrate dropped the original collection; the alias of its name does not exist yet",
    "migrate-after-alias": "migrate created the alias; the state still names the original as live",
    "ray-before-ledger": "a Ray build wrote a batch to the store; the ledger does not record it yet",
}


def kill_point(name: str) -> None:
    """SIGKILL this process here when the crash tests ask for ``name``."""
    assert name in KILL_POINTS, name
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        _kill()


def _kill() -> None:  # in-process tests replace this by an exception
    os.kill(os.getpid(), signal.SIGKILL)
