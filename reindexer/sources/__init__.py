"""Where document text comes from: the live payload, JSONL, Parquet or SQL.

    spec = parse_source("jsonl:docs.jsonl", text_field="page_content")
    with open_source(spec) as source:
        with source.scan() as scanned:  # count, ids (an IdSet), newest updated_at; every bad row
            ...
        for doc in source:              # Document(doc_id, text, payload, updated_at)
            ...

``SourceSpec`` is what plans store (``to_dict``/``from_dict``); ``open_source``
turns it into a ``Source``. The source classes are imported lazily, so that
importing this package does not load pyarrow or SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

from reindexer.sources.base import (  # noqa: F401
    Document,
    RecordSource,
    ScanResult,
    Source,
    content_hash,
    extract_text,
)
from reindexer.sources.spec import (  # noqa: F401
    KINDS,
    SourceSpec,
    open_source,
    parse_source,
)

_LAZY = {
    "PayloadSource": "reindexer.sources.payload",
    "JsonlSource": "reindexer.sources.jsonl",
    "ParquetSource": "reindexer.sources.parquet",
    "SqlSource": "reindexer.sources.sql",
}

__all__ = [
    "KINDS",
    "Document",
    "JsonlSource",
    "ParquetSource",
    "PayloadSource",
    "RecordSource",
    "ScanResult",
    "Source",
    "SourceSpec",
    "SqlSource",
    "content_hash",
    "extract_text",
    "open_source",
    "parse_source",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reindexer.sources' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
