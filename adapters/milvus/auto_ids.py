"""Auto-id collections: keeping an application's next insert off the keys a copied version holds.

Milvus Lite's auto-ids count rows, not keys, so a version holding keys another
collection allocated would hand out a stored key again; ``advance_generated_ids``
moves the counter past them. ``check_copyable`` refuses, up front, a copy a server
could not write with its points' keys. A layer of ``MilvusStore``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, TypeVar

from reindexer.adapters.milvus.layout import (
    RowLayout,
)
from reindexer.adapters.milvus.rows import CHUNK, MilvusRows
from reindexer.errors import (
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


#: The most rows ``advance_generated_ids`` writes again to move Milvus Lite's auto-id counter.
_MAX_REWRITTEN_ROWS = 100_000


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MilvusAutoIds(MilvusRows):
    """Auto-id collections (a layer of ``MilvusStore``)."""

    def _explicit_auto_ids(self) -> bool | None:
        """Whether this store takes given keys into an auto-id collection: Lite does; servers from 2.6
        when the collection allows it (``allow_insert_auto_id``); older servers refuse them."""
        if self._lite:
            return True
        return self._server_version() >= (2, 6)

    def advance_generated_ids(self, name: str) -> int:
        """Milvus Lite: move the auto-id counter past the largest key by writing stored rows again, unchanged.

        Lite's auto-ids count the rows ever inserted into the collection (explicit keys
        included) and never look at the keys themselves, and its insert replaces a row with
        the same key. A version holding keys that another collection allocated (a copy of a
        collection that lost rows, a shadow caught up with later writes, a rollback target)
        would hand an application's next ``add_texts`` the key of a stored point, silently
        overwriting it. One insert without a key finds the counter; every row it could have
        landed on is read first and written back. Servers allocate from a global, rising
        timestamp and need nothing.
        """
        if not self._lite:
            return 0
        s = self._schema(name, refresh=True)
        if s.pk_is_str:
            return 0
        pk = next((f for f in self.read_schema(name).fields if f.primary), None)
        if pk is None or not pk.auto_id:
            return 0
        count = self.count(name)
        keys = self._keys_above(s, count)  # the counter is past ``count``: only these can be handed out
        if not keys:
            return 0
        if len(keys) > _MAX_REWRITTEN_ROWS:
            log.warning(
                "%s: %r holds %d keys above its row count; its auto-ids are not advanced, and an insert "
                "without ids may replace one of them",
                self.location,
                name,
                len(keys),
            )
            return 0
        fields = self._output_fields(s, with_vectors=True)
        rows = [r for chunk in _chunks(keys, CHUNK) for r in self._rows(s, name, chunk, fields)]
        probe = self._insert_rows(name, [{k: v for k, v in rows[-1].items() if k != s.pk}])[0]
        by_key = {int(r[s.pk]): r for r in rows}
        if probe in by_key:
            self._insert_rows(name, [by_key[probe]])  # the row the probe replaced, as it was
        else:
            self._call(
                lambda: self._client.delete(name, filter=f"{s.pk} in [{probe}]", timeout=self._timeout),
                f"delete the probe row of {name!r}",
                load=s.collection,
            )
        todo = max(keys) - probe
        written = 0
        while written < todo:
            batch = rows[: min(todo - written, len(rows), CHUNK)]
            self._insert_rows(name, batch)
            written += len(batch)
        log.info("%s: auto-ids of %r now start above %d", self.location, name, max(keys))
        return todo

    def _keys_above(self, s: RowLayout, floor: int) -> list[int]:
        keys: list[int] = []
        last = floor
        while len(keys) <= _MAX_REWRITTEN_ROWS:
            rows = self._call(
                lambda e=f"{s.pk} > {last}": self._client.query(
                    s.collection, filter=e, output_fields=[s.pk], limit=16384, iterator="True", timeout=self._timeout
                ),
                f"read the keys of {s.collection!r}",
                load=s.collection,
            )
            if not rows:
                break
            page = sorted(int(r[s.pk]) for r in rows)
            keys += page
            last = page[-1]
            if len(rows) < 16384:
                break
        return keys

    def _rows(self, s: RowLayout, name: str, keys: list[int], fields: list[str]) -> list[dict[str, Any]]:
        rows = self._call(
            lambda: self._client.query(
                name,
                filter=f"{s.pk} in [{', '.join(str(k) for k in keys)}]",
                output_fields=fields,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"read rows of {name!r}",
            load=s.collection,
        )
        out = []
        for row in rows:
            row = dict(row)
            meta = row.pop("$meta", None)
            out.append({**meta, **row} if isinstance(meta, dict) else row)
        return out

    def _insert_rows(self, name: str, rows: list[dict[str, Any]]) -> list[int]:
        res = self._call(
            lambda: self._client.insert(name, rows, timeout=self._timeout), f"write {len(rows)} rows into {name!r}"
        )
        return [int(i) for i in res["ids"]]

    def check_copyable(self, name: str, dim: int | None = None) -> None:
        s = self._schema(name, refresh=True)
        pk = next((f for f in self.read_schema(name).fields if f.primary), None)
        if pk is not None and pk.auto_id and not self._explicit_auto_ids():
            raise UsageError(
                f"{s.collection!r} has an auto-id primary key {s.pk!r}, and this Milvus server "
                "refuses given keys in an auto-id collection: a new version could not keep its points' keys",
                hint="Milvus Lite and servers from 2.6 accept them; on this server, copy the collection into one "
                "with auto_id=False (the application then passes ids) and adopt that",
            )
