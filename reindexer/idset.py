"""A set of document ids that does not grow in memory with the corpus.

Every pass over a source needs to know which ids it has met: to refuse a repeated id,
to find the documents deleted from the source, to compare a version's points with
the source. Held in a Python set that is about 70 bytes an id, gigabytes at 10^8.
``IdSet`` keeps the first ``SPILL_AT`` ids in memory (a small corpus pays nothing)
and moves them to a temporary SQLite file beyond that, where lookups go a chunk at
a time. Callers hand it lists of ids, not single ids, so that a spilled set answers
each chunk with one query.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator

#: ids held in memory before the set moves to disk
SPILL_AT = 200_000
#: ids per SQLite statement (under SQLite's default limit of 999 host parameters)
_PARAMS = 900
# A chunk of ids travels as one JSON array: about five times faster than binding a row at a time.
_INSERT_JSON = "INSERT INTO ids SELECT value FROM json_each(?)"
_PRESENT_JSON = "SELECT doc_id FROM ids WHERE doc_id IN (SELECT value FROM json_each(?))"


def _json_safe(ids: list[str]) -> bool:
    # SQLite's JSON functions end a string at an escaped NUL; such ids go one parameter each.
    return not any("\x00" in i for i in ids)


class IdSet:
    """Distinct document ids, in memory up to ``spill_at``, on disk beyond it."""

    def __init__(self, spill_at: int | None = None) -> None:
        self._spill_at = SPILL_AT if spill_at is None else spill_at
        self._mem: set[str] | None = set()
        self._dir: tempfile.TemporaryDirectory | None = None
        self._db: sqlite3.Connection | None = None
        self._count = 0
        self._json = False

    # -- the set ------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def present(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` in the set."""
        ids = list(ids)
        if self._mem is not None:
            return {i for i in ids if i in self._mem}
        assert self._db is not None
        if self._json and _json_safe(ids):
            rows = self._db.execute(_PRESENT_JSON, (json.dumps(ids, ensure_ascii=False),))
            return {r[0] for r in rows}
        found: set[str] = set()
        for start in range(0, len(ids), _PARAMS):
            part = ids[start : start + _PARAMS]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self._db.execute(f"SELECT doc_id FROM ids WHERE doc_id IN ({marks})", part))
        return found

    def missing(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` not in the set, in their order."""
        ids = list(ids)
        present = self.present(ids)
        return [i for i in ids if i not in present]

    def add_new(self, ids: Iterable[str]) -> set[str]:
        """Add ``ids``; return those already in the set (or repeated within ``ids``), which are not added twice."""
        ids = list(ids)
        repeats = self.present(ids)
        fresh: list[str] = []
        seen_here: set[str] = set()
        for i in ids:
            if i in repeats or i in seen_here:
                repeats.add(i)
            else:
                seen_here.add(i)
                fresh.append(i)
        self._insert(fresh)
        return repeats

    def add(self, ids: Iterable[str]) -> None:
        self.add_new(ids)

    def pages(self, size: int = 1000) -> Iterator[list[str]]:
        """Every id, in ``size`` pages, sorted."""
        if self._mem is not None:
            ordered = sorted(self._mem)
            for start in range(0, len(ordered), size):
                yield ordered[start : start + size]
            return
        assert self._db is not None
        rows = self._db.execute("SELECT doc_id FROM ids ORDER BY doc_id LIMIT ?", (size,)).fetchall()
        while rows:
            page = [r[0] for r in rows]
            yield page
            rows = self._db.execute(
                "SELECT doc_id FROM ids WHERE doc_id > ? ORDER BY doc_id LIMIT ?", (page[-1], size)
            ).fetchall()

    def __iter__(self) -> Iterator[str]:
        for page in self.pages():
            yield from page

    # -- storage ------------------------------------------------------------
    def _insert(self, fresh: list[str]) -> None:
        if not fresh:
            return
        self._count += len(fresh)
        if self._mem is not None:
            self._mem.update(fresh)
            if len(self._mem) > self._spill_at:
                self._spill()
            return
        assert self._db is not None
        if self._json and _json_safe(fresh):
            self._db.execute(_INSERT_JSON, (json.dumps(fresh, ensure_ascii=False),))
        else:
            self._db.executemany("INSERT INTO ids VALUES (?)", ((i,) for i in fresh))

    def _spill(self) -> None:
        assert self._mem is not None
        self._dir = tempfile.TemporaryDirectory(prefix="reindex-ids-")
        # One thread fills the set and another may read it after, never at once.
        self._db = sqlite3.connect(os.path.join(self._dir.name, "ids.db"), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE ids (doc_id TEXT PRIMARY KEY) WITHOUT ROWID")
        try:
            self._db.execute(_PRESENT_JSON, ("[]",)).fetchall()
            self._json = True
        except sqlite3.OperationalError:  # an SQLite built without its JSON functions
            self._json = False
        self._db.executemany("INSERT INTO ids VALUES (?)", ((i,) for i in sorted(self._mem)))
        self._mem = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._mem = set()
        self._count = 0

    def __enter__(self) -> IdSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
