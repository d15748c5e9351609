"""Leases: one holder at a time per collection, and the fence that stops a holder who lost its lease.

A lease is a row (resource, holder, token, expiry) in the state database. Its token also fences:
while this store holds a lease, every transaction it commits first checks, under a row lock, that
the lease row still carries its token (``_check_fences``). A holder cut off from the database past
the expiry, whose lease another process has since taken over, therefore writes nothing more when it
reconnects. Who may take a lease, and when, is the verbs' business (reindexer.workspace), not this module's.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import uuid
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from reindexer.errors import LeaseHeldError, LeaseLostError
from reindexer.state.database import StateDatabase, retried
from reindexer.state.models import Lease, aware, utcnow

_HOLDER = re.compile(r"(?P<user>.*)@(?P<host>[^ ]*) pid (?P<pid>\d+) ns (?P<ns>\S+)")


def actor() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = os.environ.get("USER", "unknown")
    return user, socket.gethostname()


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def this_holder() -> str:
    """Who holds a lease: user, host, pid and pid namespace, so a dead holder can be recognised."""
    user, host = actor()
    return f"{user}@{host} pid {os.getpid()} ns {_pid_namespace()}"


def holder_is_gone(holder: str) -> bool:
    """True only when the holder was a process on this host, in this pid namespace, that no longer runs.

    A killed apply leaves its lease behind; waiting out the TTL would block the
    re-run that resumes it. Anything we cannot prove dead is treated as alive.
    """
    m = _HOLDER.fullmatch(holder)
    if m is None or m["host"] != socket.gethostname() or m["ns"] != _pid_namespace() or m["ns"] == "-":
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Leases(StateDatabase):
    """The lease methods of ``StateStore``."""

    @retried
    def acquire_lease(self, resource: str, ttl: timedelta, holder: str | None = None) -> Lease:
        """Take the lease on ``resource`` or raise ``LeaseHeldError``; expired leases are taken over."""
        holder = holder or this_holder()
        now = utcnow()
        token = self._pending_tokens.setdefault(resource, uuid.uuid4().hex)
        with self._session(fenced=False) as s:
            current = s.get(Lease, resource, with_for_update=True)
            if current is not None and current.token == token:
                # The commit of an earlier attempt reached the database; only its answer was lost.
                return self._hold(current)
            if current is not None and aware(current.expires_at) > now and not holder_is_gone(current.holder):
                self._pending_tokens.pop(resource, None)
                raise LeaseHeldError(
                    f"{resource} is locked by {current.holder} since {current.acquired_at:%Y-%m-%d %H:%M:%S} UTC",
                    hint="wait for it to finish (or pass --wait); a stale lease expires at "
                    f"{current.expires_at:%H:%M:%S} UTC",
                )
            if current is not None:
                # Take over an expired lease only if nobody else just did: delete by its old token.
                taken = s.exec(delete(Lease).where(col(Lease.resource) == resource, col(Lease.token) == current.token))
                if taken.rowcount != 1:
                    s.rollback()
                    self._pending_tokens.pop(resource, None)
                    raise LeaseHeldError(f"{resource} was just locked by another process")
            lease = Lease(resource=resource, holder=holder, token=token, acquired_at=now, expires_at=now + ttl)
            s.add(lease)
            try:
                s.commit()
            except IntegrityError as exc:  # a concurrent acquirer inserted first
                s.rollback()
                self._pending_tokens.pop(resource, None)
                raise LeaseHeldError(f"{resource} was just locked by another process") from exc
            return self._hold(lease)

    def _hold(self, lease: Lease) -> Lease:
        with self._fence_lock:
            self._pending_tokens.pop(lease.resource, None)
            self._fences[lease.resource] = lease.token
        return lease

    @retried
    def renew_lease(self, lease: Lease, ttl: timedelta) -> None:
        """Push the expiry on; ``LeaseLostError`` if another process has taken the lease over meanwhile."""
        with self._session(fenced=False) as s:
            row = s.get(Lease, lease.resource, with_for_update=True)
            if row is None or row.token != lease.token:
                raise self._lost(lease.resource, row)
            row.expires_at = utcnow() + ttl
            s.add(row)
            s.commit()

    @retried
    def release_lease(self, lease: Lease) -> None:
        with self._fence_lock:
            if self._fences.get(lease.resource) == lease.token:
                del self._fences[lease.resource]
        with self._session(fenced=False) as s:
            row = s.get(Lease, lease.resource, with_for_update=True)
            if row is not None and row.token == lease.token:
                s.delete(row)
                s.commit()

    def _check_fences(self, s: Session) -> None:
        """Before a commit: abort it if any lease this store holds has been taken over (LeaseLostError).

        The session's writes go first and the check last: SQLite has then begun its write transaction
        (no other writer can commit until ours ends), and PostgreSQL's share lock on the lease row keeps
        a taker's FOR UPDATE waiting until ours commits, so a takeover is either wholly before this
        transaction (and refuses it) or wholly after it.
        """
        with self._fence_lock:
            fences = dict(self._fences)
        if not fences:
            return
        s.flush()
        rows = s.exec(select(Lease).where(col(Lease.resource).in_(list(fences))).with_for_update(read=True)).all()
        found = {row.resource: row for row in rows}
        for resource, token in fences.items():
            row = found.get(resource)
            if row is None or row.token != token:
                raise self._lost(resource, row)

    @staticmethod
    def _lost(resource: str, row: Lease | None) -> LeaseLostError:
        now = f"held by {row.holder} since {row.acquired_at:%H:%M:%S} UTC" if row is not None else "removed"
        return LeaseLostError(
            f"lost the lease on {resource}, now {now}: it expired while this process could not renew it "
            "(the state database out of reach) and was taken over, so this process stopped before its next write",
            hint="nothing more was written by this process; see `reindex status` and `reindex history`, and "
            "re-run (an interrupted apply resumes with `reindex apply --resume COLLECTION`) once the other "
            "holder is done",
        )
