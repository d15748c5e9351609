"""Parquet files, read with pyarrow one record batch at a time.

Same semantics as the JSONL source: ``id_field`` (default ``id``) and
``text_field`` (default ``text``) are dotted paths into each row, so nested
struct columns are reachable (``meta.body``); struct columns become dicts, list
columns lists, map columns lists of ``[key, value]`` pairs. The payload is every
column minus the id column, with the text column kept (applications read it);
timestamps and dates become ISO-8601 strings and decimals numbers, so the
payload is plain JSON; a binary column raises ``UsageError`` (cast it to string).

Rows are numbered from 1 in messages ("row 12"). A missing id, a duplicate id or
a row without text raises ``UsageError`` (iteration stops at the first;
``scan()`` reports every row without text at once). An empty file yields
nothing. Only one record batch (``batch_size`` rows) is held at a time.

Incremental semantics: a full pass lists every current doc id, so diffing it
against a ledger finds new, changed *and deleted* documents. Files take no
``since``: they are read whole anyway. ``updated_field`` (optional) fills
``Document.updated_at``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reindexer.errors import UsageError
from reindexer.sources.base import RecordSource


class ParquetSource(RecordSource):
    unit = "rows"

    def __init__(
        self,
        path: str | Path,
        text_field: str = "text",
        id_field: str = "id",
        *,
        updated_field: str | None = None,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(text_field=text_field, id_field=id_field, updated_field=updated_field)
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.path = Path(path)
        self.batch_size = batch_size
        self.description = f"parquet:{self.path}"

    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "no such file"
            raise UsageError(f"{self.description}: {what}")
        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"{self.description}: not a readable Parquet file ({exc})") from None
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=self.batch_size):
                for record in batch.to_pylist():
                    row += 1
                    yield f"row {row}", None, record
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"{self.description}: cannot read after row {row} ({exc})") from None
        finally:
            pf.close()
