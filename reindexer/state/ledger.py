"""The ledger: which documents an index version holds, by id and content hash.

The ledger is what makes a build resumable and a sync incremental: a batch's rows are recorded
in the same transaction as the run's checkpoint (``record_batch``), after the store took the
batch, so a crash re-reads the source and skips what is recorded. These are the ledger methods
of ``StateStore`` (reindexer.state.store); the diffing itself is the build's (reindexer.build).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from reindexer.errors import NotFoundError
from reindexer.state.database import StateDatabase, retried
from reindexer.state.models import LedgerEntry, Run, utcnow

#: one chunk of a streamed diff: the ledger's hashes of a list of ids (an expanding IN, compiled once)
_LEDGER = LedgerEntry.__table__  # type: ignore[attr-defined]
_LEDGER_HASHES = core_select(_LEDGER.c.doc_id, _LEDGER.c.content_hash).where(
    _LEDGER.c.index_version_id == bindparam("version"), _LEDGER.c.doc_id.in_(bindparam("ids", expanding=True))
)
#: the same over one stretch of the key (SQLite), bounded: a sparse chunk falls back to the lookup
_LEDGER_RANGE = (
    core_select(_LEDGER.c.doc_id, _LEDGER.c.content_hash)
    .where(
        _LEDGER.c.index_version_id == bindparam("version"),
        _LEDGER.c.doc_id >= bindparam("lo"),
        _LEDGER.c.doc_id <= bindparam("hi"),
    )
    .limit(bindparam("limit"))
)


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Ledger(StateDatabase):
    """The ledger methods of ``StateStore``."""

    @retried
    def ledger(self, version_id: int) -> dict[str, str]:
        """doc_id -> content hash for one index version."""
        with self._session() as s:
            rows = s.exec(
                select(LedgerEntry.doc_id, LedgerEntry.content_hash).where(LedgerEntry.index_version_id == version_id)
            ).all()
        return {doc_id: h for doc_id, h in rows}

    @retried
    def ledger_hashes(self, version_id: int, doc_ids: list[str]) -> dict[str, str]:
        """doc_id -> content hash for those of ``doc_ids`` the version's ledger holds: one chunk of a streamed diff."""
        # Core statements on one connection: the ORM's session and row objects cost as much as SQLite's lookup.
        if not doc_ids:
            return {}
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                # Sources are mostly read in id order, so a chunk's ids are one stretch of the ledger's
                # key: one range read is about twice as fast as looking the ids up. (SQLite compares
                # text by UTF-8 bytes, Python by code points: the same order. PostgreSQL's collation
                # may differ from both, so there the ids are always looked up.)
                wanted = set(doc_ids)
                limit = 2 * len(wanted) + 16
                rows = conn.execute(
                    _LEDGER_RANGE, {"version": version_id, "lo": min(wanted), "hi": max(wanted), "limit": limit}
                ).all()
                if len(rows) < limit:
                    return {doc_id: h for doc_id, h in rows if doc_id in wanted}
            found: dict[str, str] = {}
            for chunk in chunks(doc_ids, 900):
                found.update(conn.execute(_LEDGER_HASHES, {"version": version_id, "ids": chunk}).all())
            return found

    def ledger_id_pages(self, version_id: int, page: int = 2000) -> Iterator[list[str]]:
        """The version's ledger ids in id order, a page at a time (keyset paging: memory stays flat)."""
        last: str | None = None
        while True:
            q = select(LedgerEntry.doc_id).where(LedgerEntry.index_version_id == version_id)
            if last is not None:
                q = q.where(LedgerEntry.doc_id > last)
            ids = self._ids(q.order_by(LedgerEntry.doc_id).limit(page))
            if not ids:
                return
            yield ids
            last = ids[-1]

    def ledger_sample(self, version_id: int, n: int, seed: int, page: int = 10_000) -> list[str]:
        """A uniform random sample of ``n`` of the version's ledger ids (all of them where it holds no
        more), in id order: the same ledger and ``seed``, the same sample.

        The positions are drawn here and the ids read in id order by keyset pages until the last
        position: plain SQL on SQLite and PostgreSQL (neither's random() can be seeded for one
        query), memory of one page. It reads the version's ids from the ledger's key, not the rows.
        """
        total = self.ledger_count(version_id)
        wanted = sorted(random.Random(seed).sample(range(total), min(n, total)))
        out: list[str] = []
        at, last = 0, None  # the position of the page's first id; the id before it
        while len(out) < len(wanted):
            ids = self._id_page(version_id, last, page)
            if not ids:
                break
            while len(out) < len(wanted) and wanted[len(out)] < at + len(ids):
                out.append(ids[wanted[len(out)] - at])
            at, last = at + len(ids), ids[-1]
        return out

    @retried
    def _id_page(self, version_id: int, after: str | None, page: int) -> list[str]:
        """One keyset page of the version's ledger ids after ``after``, as a Core statement (the ORM's
        objects cost more than the read)."""
        q = core_select(_LEDGER.c.doc_id).where(_LEDGER.c.index_version_id == version_id)
        if after is not None:
            q = q.where(_LEDGER.c.doc_id > after)
        with self.engine.connect() as conn:
            return list(conn.execute(q.order_by(_LEDGER.c.doc_id).limit(page)).scalars())

    @retried
    def _ids(self, query: Any) -> list[str]:
        with self._session() as s:
            return list(s.exec(query).all())

    @retried
    def ledger_count(self, version_id: int) -> int:
        with self._session() as s:
            return s.exec(
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.index_version_id == version_id)
            ).one()

    @retried
    def record_batch(
        self,
        version_id: int,
        model_fingerprint: str,
        upserted: Iterable[tuple[str, str]],
        deleted: Iterable[str] = (),
        run_id: int | None = None,
        checkpoint: dict[str, Any] | None = None,
        embedded: int = 0,
        copied: int = 0,
    ) -> None:
        """Ledger rows for one written batch and the run's checkpoint, in one transaction."""
        upserted = list(upserted)
        deleted = list(deleted)
        now = utcnow()
        with self._session() as s:
            if upserted:
                ids = [d for d, _ in upserted]
                for chunk in chunks(ids, 500):
                    s.exec(
                        delete(LedgerEntry).where(
                            col(LedgerEntry.index_version_id) == version_id, col(LedgerEntry.doc_id).in_(chunk)
                        )
                    )
                s.bulk_insert_mappings(
                    LedgerEntry,
                    [
                        dict(
                            index_version_id=version_id,
                            doc_id=d,
                            content_hash=h,
                            model_fingerprint=model_fingerprint,
                            updated_at=now,
                        )
                        for d, h in upserted
                    ],
                )
            for chunk in chunks(deleted, 500):
                s.exec(
                    delete(LedgerEntry).where(
                        col(LedgerEntry.index_version_id) == version_id, col(LedgerEntry.doc_id).in_(chunk)
                    )
                )
            if run_id is not None:
                run = s.get(Run, run_id)
                if run is None:
                    raise NotFoundError(f"no run with id {run_id} to checkpoint")
                run.batches += 1
                run.embedded += embedded
                run.copied += copied
                run.deleted += len(deleted)
                if checkpoint is not None:
                    run.checkpoint = checkpoint
                s.add(run)
            s.commit()

    def ledger_changes_since(
        self, version_id: int, other_id: int, since: datetime, page: int = 2000
    ) -> Iterator[list[str]]:
        """``version_id``'s ledger ids recorded after ``since`` whose content hash ``other_id``'s ledger
        lacks (no row, or another hash), in id order, a page at a time (keyset paging: memory stays flat)."""
        mine, theirs = aliased(LedgerEntry), aliased(LedgerEntry)
        same = and_(col(theirs.index_version_id) == other_id, col(theirs.doc_id) == col(mine.doc_id))
        last: str | None = None
        while True:
            q = (
                select(mine.doc_id)
                .outerjoin(theirs, same)
                .where(
                    mine.index_version_id == version_id,
                    col(mine.updated_at) > since,
                    or_(col(theirs.content_hash).is_(None), col(theirs.content_hash) != col(mine.content_hash)),
                )
            )
            if last is not None:
                q = q.where(col(mine.doc_id) > last)
            # One session per page, as a caller's own: a connection lost mid-read ends the command (exit 5).
            with self.session() as s:
                ids = list(s.exec(q.order_by(col(mine.doc_id)).limit(page)).all())
            if not ids:
                return
            yield ids
            last = ids[-1]
