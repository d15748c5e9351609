"""The tool's BM25 on Milvus: the text field, its sparse vector and the BM25 function that fills it.

A version planned with ``--lexical bm25`` keeps the version's text in
``LEXICAL_TEXT_FIELD``; Milvus's BM25 function computes the sparse vector from it on
every write, and a lexical query sends text, not weights. Pure helpers over schemas
and descriptions; the searches are ``MilvusStore.search_lexical`` and ``search_hybrid``.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from reindexer.errors import (
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


#: The text field the tool's BM25 function reads (a version planned with --lexical bm25): the
#: version's text, written by the tool beside the payload; nullable, so an application that writes a
#: row without it still can (its lexical vector is then empty until the tool writes the row again).
LEXICAL_TEXT_FIELD = "reindex_bm25_text"

LEXICAL_FUNCTION = "reindex_bm25_function"

#: Milvus's VARCHAR limit, in bytes; a longer text is cut (at a character boundary) for BM25 only.
LEXICAL_TEXT_MAX = 65_535


def function_outputs(desc: dict[str, Any]) -> set[str]:
    """The fields a collection's functions (BM25) fill: the store writes them, never a client."""
    return {str(o) for fn in desc.get("functions") or [] for o in fn.get("output_field_names") or []}


def own_lexical(desc: dict[str, Any]) -> str | None:
    """The sparse vector of the tool's BM25 function (over LEXICAL_TEXT_FIELD), if the collection has it."""
    for fn in desc.get("functions") or []:
        if list(fn.get("input_field_names") or []) == [LEXICAL_TEXT_FIELD] and fn.get("output_field_names"):
            return str(fn["output_field_names"][0])
    return None


def add_lexical(schema: Any, lexical: dict[str, Any]) -> None:
    """The tool's BM25: a nullable text field with the recorded analyzer, its sparse vector, the function."""
    from pymilvus import DataType, Function, FunctionType

    schema.add_field(
        LEXICAL_TEXT_FIELD,
        DataType.VARCHAR,
        max_length=LEXICAL_TEXT_MAX,
        enable_analyzer=True,
        analyzer_params=dict(lexical.get("analyzer") or {"tokenizer": "standard"}),
        nullable=True,
    )
    schema.add_field(lexical["vector"], DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name=LEXICAL_FUNCTION,
            function_type=FunctionType.BM25,
            input_field_names=[LEXICAL_TEXT_FIELD],
            output_field_names=[lexical["vector"]],
        )
    )


def query_text(query: dict[str, Any], name: str) -> str:
    text = query.get("text") if isinstance(query, dict) else None
    if not isinstance(text, str):
        raise UsageError(f"{name!r}: Milvus computes BM25 from a query's text; got {type(query).__name__} without one")
    return text


def cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")
