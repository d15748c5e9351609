"""A source described as data: what a plan stores and what the CLI parses.

``SourceSpec`` names where the text comes from and how to read it. It goes into
plan JSON (``to_dict``/``from_dict``), state and logs, so it never holds a
secret: an SQL URL may carry ``${VAR}`` placeholders, expanded from the
environment only when the source is opened, and a literal password is refused.

CLI forms (``parse_source``)::

    payload              the live collection itself (the default)
    jsonl:PATH           one JSON object per line (PATH may end in .gz)
    parquet:PATH         a Parquet file
    sql:URL              an SQLAlchemy URL; the query comes separately (--query)

A bare path ending in ``.jsonl``, ``.jsonl.gz``, ``.ndjson`` or ``.parquet``,
and a bare ``dialect://...`` URL, are understood too. File paths are made
absolute, so a plan means the same file wherever ``apply`` runs.

Field paths: ``text_field`` (default ``text``) and ``id_field`` (default
``id`` for files and SQL) are dotted paths into each record (``metadata.body``);
a JSON string holding an object is descended into, and a path ending in
``_node_content`` reads the ``"text"`` of a LlamaIndex node (see
``reindexer.sources.base.extract_text``). For the payload source the document id
comes from the store's point, so ``id_field`` is not accepted.

Incremental reads: ``since`` with ``updated_field`` returns only the rows whose
updated field is greater than ``since``. Only SQL sources take ``since`` (the
database filters); files and the payload are always read whole, and diffing
their full pass against the ledger finds changed *and deleted* documents, which
a ``since`` pass cannot. ``updated_field`` alone is allowed everywhere: it fills
``Document.updated_at``, the value to store as the next watermark.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reindexer.errors import UsageError
from reindexer.sources.sql_url import check_sql_url, redact_sql_url

if TYPE_CHECKING:
    from reindexer.adapters.base import VectorStore
    from reindexer.sources.base import Source

KINDS = ("payload", "jsonl", "parquet", "sql")
FILE_KINDS = ("jsonl", "parquet")
DEFAULT_BATCH_SIZE = 256

_SUFFIX_KINDS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class SourceSpec:
    kind: str = "payload"
    #: file path (jsonl, parquet) or SQLAlchemy URL with ``${VAR}`` placeholders (sql)
    location: str | None = None
    #: the SELECT of an sql source
    query: str | None = None
    text_field: str = "text"
    #: defaults to "id" for files and SQL; not accepted for payload
    id_field: str | None = None
    #: watermark: only rows with ``updated_field > since`` (sql only)
    since: str | int | float | None = None
    updated_field: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown source kind {self.kind!r}", hint=f"use one of: {', '.join(KINDS)}")
        if not self.text_field or not isinstance(self.text_field, str):
            raise UsageError("the text field must be a non-empty field path")
        if self.kind == "payload":
            if self.location:
                raise UsageError("a payload source reads the collection itself and takes no location")
            if self.id_field is not None:
                raise UsageError("--id-field does not apply to the payload source: its ids come from the points")
        else:
            if not self.location:
                raise UsageError(f"a {self.kind} source needs a location, as in {self.kind}:PATH")
            if self.id_field is None:
                object.__setattr__(self, "id_field", "id")
        if self.kind == "sql":
            if not self.query or not self.query.strip():
                raise UsageError("an sql source needs a query", hint="pass --query 'SELECT ...'")
            check_sql_url(self.location)  # type: ignore[arg-type]
        elif self.query:
            raise UsageError(f"a {self.kind} source takes no query; only sql sources do")
        if isinstance(self.since, (datetime.datetime, datetime.date)):
            object.__setattr__(self, "since", self.since.isoformat())
        if self.since is not None:
            if isinstance(self.since, bool) or not isinstance(self.since, (str, int, float)):
                raise UsageError(f"--since must be a string or a number, not {self.since!r}")
            if self.kind != "sql":
                raise UsageError(
                    f"--since applies to sql sources only; a {self.kind} source is read whole",
                    hint="the diff of a full pass against the ledger finds changed and deleted documents",
                )
            if not self.updated_field:
                raise UsageError("--since needs --updated-field, the column compared with the watermark")

    # -- plans -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceSpec:
        if not isinstance(data, dict):
            raise UsageError(f"a source must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown source field(s): {', '.join(unknown)}")
        return cls(**data)

    def with_since(self, since: Any) -> SourceSpec:
        """The same source limited to rows updated after ``since`` (a stored watermark)."""
        return dataclasses.replace(self, since=since)

    def describe(self) -> str:
        """Short and secret-free, e.g. ``jsonl:/data/docs.jsonl text=page_content``."""
        if self.kind == "payload":
            out = "payload"
        elif self.kind == "sql":
            out = f"sql:{redact_sql_url(self.location)}"
        else:
            out = f"{self.kind}:{self.location}"
        if self.text_field != "text":
            out += f" text={self.text_field}"
        if self.id_field not in (None, "id"):
            out += f" id={self.id_field}"
        if self.since is not None:
            out += f" since {self.updated_field}>{self.since}"
        return out


# -- parsing ---------------------------------------------------------------
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def parse_source(text: str | None = None, *, base_dir: Path | None = None, **options: Any) -> SourceSpec:
    """A ``SourceSpec`` from a CLI string and options.

    ``options`` are SourceSpec fields (text_field, id_field, query, since,
    updated_field); those given as None are left at their defaults, so CLI
    options can be passed straight through. A ``since`` string that is a plain
    number becomes a number (an epoch or a sequence), so that databases compare
    it numerically. Relative file paths are resolved against ``base_dir`` (the
    current directory by default).
    """
    opts = {k: v for k, v in options.items() if v is not None}
    known = {f.name for f in dataclasses.fields(SourceSpec)} - {"kind", "location"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise UsageError(f"unknown source option(s): {', '.join(unknown)}")
    since = opts.get("since")
    if isinstance(since, str) and _NUMBER.fullmatch(since.strip()):
        opts["since"] = float(since) if "." in since else int(since)

    raw = (text or "").strip()
    kind, location = _split(raw)
    if kind in FILE_KINDS:
        p = Path(location).expanduser()
        if not p.is_absolute():
            p = (base_dir or Path.cwd()) / p
        location = str(p)
    return SourceSpec(kind=kind, location=location or None, **opts)


def _split(raw: str) -> tuple[str, str]:
    if raw in ("", "payload"):
        return "payload", ""
    head, sep, rest = raw.partition(":")
    if sep and head in KINDS:
        if head == "payload":
            raise UsageError(
                "the payload source takes no argument",
                hint="choose the text field with --text-field",
            )
        if not rest:
            raise UsageError(f"{head}: needs a location, as in {head}:PATH")
        return head, rest
    if "://" in raw:
        return "sql", raw
    lower = raw.lower()
    for suffix, kind in _SUFFIX_KINDS.items():
        if lower.endswith(suffix):
            return kind, raw
    raise UsageError(
        f"cannot tell what kind of source {_redact_any(raw)!r} is",
        hint="use payload, jsonl:PATH, parquet:PATH or sql:URL",
    )


def _redact_any(raw: str) -> str:
    return redact_sql_url(raw) if "://" in raw else raw


# -- opening ---------------------------------------------------------------
def open_source(
    spec: SourceSpec,
    store: VectorStore | None = None,
    collection: str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Source:
    """The ``Source`` a spec describes.

    The payload source needs the open ``store`` and the *physical* collection
    name to scroll. SQL URLs are expanded from the environment here, and only
    here, and the expanded URL is kept inside the engine, never in the source's
    description.
    """
    if spec.kind == "payload":
        if store is None or not collection:
            raise ValueError("a payload source needs an open store and the physical collection name")
        from reindexer.sources.payload import PayloadSource

        return PayloadSource(
            store,
            collection,
            text_field=spec.text_field,
            updated_field=spec.updated_field,
            batch_size=batch_size,
        )
    assert spec.location is not None and spec.id_field is not None
    if spec.kind == "jsonl":
        from reindexer.sources.jsonl import JsonlSource

        return JsonlSource(
            spec.location,
            text_field=spec.text_field,
            id_field=spec.id_field,
            updated_field=spec.updated_field,
        )
    if spec.kind == "parquet":
        from reindexer.sources.parquet import ParquetSource

        return ParquetSource(
            spec.location,
            text_field=spec.text_field,
            id_field=spec.id_field,
            updated_field=spec.updated_field,
            batch_size=batch_size,
        )
    from reindexer.sources.sql import SqlSource

    assert spec.query is not None
    return SqlSource(
        spec.location,
        spec.query,
        text_field=spec.text_field,
        id_field=spec.id_field,
        updated_field=spec.updated_field,
        since=spec.since,
        batch_size=batch_size,
    )
