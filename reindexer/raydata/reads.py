"""The source read in partitions: each Ray read task yields the raw records of its share.

A record is what the local source's ``_records()`` yields, ``(where, doc_id, record)``,
pickled into one binary column, so parsing, text extraction and hashing downstream are
the local source's own code and give the same documents and content hashes.

- JSONL: byte ranges of the file, each starting after a newline (a ``.gz`` file is one task:
  gzip cannot be entered mid-stream);
- Parquet: groups of row groups;
- SQL: ranges of the id column, their bounds the largest id of each ``NTILE`` of the query
  by id (one query the database sorts; ``SqlSource.id_boundaries``), each task streaming its
  range with a server-side cursor; a database without window functions gets one task;
- payload: pages of the collection scrolled by the driver, the one process that may hold an
  embedded store, and put into the object store (which spills to disk) page by page.
"""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reindexer.errors import UsageError
from reindexer.sources.base import RecordSource
from reindexer.sources.jsonl import JsonlSource
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.sources.sql import SqlSource

log = logging.getLogger(__name__)

#: what a local source's ``_records()`` yields: (where, doc id or None, the raw record)
Record = tuple[str, str | None, dict[str, Any]]
RECORD = "record"
ROWS_PER_BLOCK = 1024
MIN_SPLIT_BYTES = 1 << 20


def _block(records: list[tuple[str, str | None, dict[str, Any]]]):
    import pyarrow as pa

    return pa.table({RECORD: pa.array([pickle.dumps(r, protocol=5) for r in records], type=pa.binary())})


def _blocks(records: Iterator[tuple[str, str | None, dict[str, Any]]]) -> Iterator[Any]:
    chunk: list = []
    for r in records:
        chunk.append(r)
        if len(chunk) >= ROWS_PER_BLOCK:
            yield _block(chunk)
            chunk = []
    if chunk:
        yield _block(chunk)


def _read_blocks(records: Callable[..., Iterator[tuple[str, str | None, dict[str, Any]]]], args: list[Any]):
    return _blocks(records(*args))


def unpickle(column: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [pickle.loads(b) for b in column]


def jsonl_ranges(path: Path, partitions: int) -> list[tuple[int, int]]:
    """``partitions`` byte ranges covering the file; a range owns the lines that start inside it."""
    size = path.stat().st_size
    if path.name.endswith(".gz") or size == 0:
        return [(0, size)]
    n = max(1, min(partitions, max(2, size // MIN_SPLIT_BYTES)))
    step = -(-size // n)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _record_source(spec: SourceSpec) -> RecordSource:
    source = open_source(spec)
    if not isinstance(source, RecordSource):
        raise TypeError(f"a {spec.kind} source yields no raw records to partition")
    return source


def _location(spec: SourceSpec) -> str:
    if spec.location is None:  # SourceSpec.validate requires it for every kind but payload
        raise UsageError(f"a {spec.kind} source needs a location")
    return spec.location


def jsonl_records(spec: SourceSpec, start: int, end: int) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    source = _record_source(spec)
    if not isinstance(source, JsonlSource):
        raise TypeError(f"a {spec.kind} source is not read in byte ranges")
    path = _location(spec)
    if start == 0 and end == Path(path).stat().st_size:
        yield from source._records()  # the whole file (and every .gz): line numbers as the local source gives them
        return
    with open(path, "rb") as fh:
        if start:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # this line started in the previous range
        while fh.tell() < end:
            offset = fh.tell()
            raw = fh.readline()
            if not raw:
                break
            if offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.strip():
                yield f"the line at byte {offset}", None, source._parse(raw, f"the line at byte {offset}")


def parquet_groups(path: str, partitions: int) -> list[list[int]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        groups = list(range(pf.num_row_groups))
    n = max(1, min(partitions, len(groups)))
    return [groups[i::n] for i in range(n) if groups[i::n]]


def parquet_records(path: str, row_groups: list[int]) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        for g in row_groups:
            for i, record in enumerate(pf.read_row_group(g).to_pylist(), start=1):
                yield f"row {i} of row group {g}", None, record


def sql_ranges(spec: SourceSpec, partitions: int) -> list[tuple[Any, Any]]:
    """``(low, high]`` id ranges covering the query's rows, open at both ends of the list."""
    source = _sql_source(spec)
    try:
        highs = source.id_boundaries(partitions)
    except UsageError as exc:
        # No window functions (or an id column the database cannot order): read it whole.
        log.info("%s; reading it in one task", exc.message)
        return [(None, None)]
    finally:
        source.close()
    lows: list[Any] = [None, *highs]
    return list(zip(lows, [*highs, None], strict=True))


def sql_records(spec: SourceSpec, low: Any = None, high: Any = None) -> Iterator[Record]:
    whole = _sql_source(spec)
    if (low, high) == (None, None):
        part, suffix = whole, ""
    else:
        part, suffix = whole.partition(low, high), f" of the ids after {low!r}" if low is not None else ""
    try:
        for where, doc_id, record in part._records():
            yield f"{where}{suffix}", doc_id, record
    finally:
        part.close()
        whole.close()


def _sql_source(spec: SourceSpec) -> SqlSource:
    source = open_source(spec)
    assert isinstance(source, SqlSource)
    return source


def dataset(spec: SourceSpec, parallelism: int, payload_pages: Iterator[list] | None = None):
    """A Ray Dataset of raw-record blocks for ``spec`` (``payload_pages``: the driver's scroll, for payload)."""
    import ray
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    if spec.kind == "payload":
        assert payload_pages is not None
        refs = [ray.put(_block(page)) for page in payload_pages if page]
        if not refs:
            return ray.data.from_items([]).map_batches(lambda b: {RECORD: []})
        # ray.put gives the Cython ObjectRef; ray annotates from_arrow_refs with its typing twin, ray.types.ObjectRef
        return ray.data.from_arrow_refs(refs)  # type: ignore[arg-type]

    def tasks() -> list[tuple[Any, ...]]:
        if spec.kind == "jsonl":
            return [(jsonl_records, spec, s, e) for s, e in jsonl_ranges(Path(_location(spec)), parallelism)]
        if spec.kind == "parquet":
            path = _location(spec)
            return [(parquet_records, path, g) for g in parquet_groups(path, parallelism)]
        return [(sql_records, spec, low, high) for low, high in sql_ranges(spec, parallelism)]

    class RecordDatasource(Datasource):
        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
            out = []
            for fn, *args in tasks():
                meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
                out.append(ReadTask(functools.partial(_read_blocks, fn, args), meta))
            return out

        def estimate_inmemory_data_size(self) -> int | None:
            return None

    return ray.data.read_datasource(RecordDatasource())
