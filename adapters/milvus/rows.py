"""Points as Milvus rows and back, and the filter expressions that select rows.

``MilvusRows`` turns a ``Point`` into a row of a collection's ``RowLayout`` (payload
keys that collide with a schema field are escaped) and a stored row or search hit
back into a point; ``lit`` and the ``_*_expr`` methods write Milvus expressions,
every value quoted. A layer of ``MilvusStore``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from reindexer.adapters.base import (
    DOC_ID_KEY,
    MODEL_KEY,
    Hit,
    Point,
)
from reindexer.adapters.milvus.layout import (
    RowLayout,
)
from reindexer.adapters.milvus.lexical import (
    LEXICAL_TEXT_FIELD,
    LEXICAL_TEXT_MAX,
    cut_utf8,
)
from reindexer.adapters.milvus.structure import MilvusStructure
from reindexer.errors import (
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


ESCAPED_PREFIX = "reindex_escaped:"

#: ids per ``pk in [...]`` expression and rows per upsert request
CHUNK = 1000


def lit(value: Any) -> str:
    """A Milvus expression literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"cannot compare with {value!r}")
        return repr(value)
    if isinstance(value, str):
        # JSON escapes (\" \\ \n \uXXXX) are the C escapes Milvus' grammar accepts.
        return json.dumps(value, ensure_ascii=False)
    raise UsageError(f"where: values must be strings, numbers or booleans, not {type(value).__name__}")


class MilvusRows(MilvusStructure):
    """Points as rows and rows as points (a layer of ``MilvusStore``)."""

    def _output_fields(self, s: RowLayout, with_vectors: bool, searching: bool = False) -> list[str]:
        out = [s.pk, *(f for f in s.fields if not (searching and f in s.other_vectors))]
        if s.dynamic:
            out.append("$meta")
        if with_vectors:
            out.append(s.vector)
        return out

    def _pk_value(self, s: RowLayout, doc_id: str) -> str | int | None:
        """The primary key for a document id; None when no row can have it."""
        if s.pk_is_str:
            return doc_id
        try:
            return int(doc_id)
        except (TypeError, ValueError):
            return None

    def _to_row(self, s: RowLayout, p: Point) -> dict[str, Any]:
        if not isinstance(p.doc_id, str) or not p.doc_id:
            raise UsageError(f"document ids must be non-empty strings, not {p.doc_id!r}")
        if p.vector is None:
            raise UsageError(f"point {p.doc_id!r} has no vector")
        row: dict[str, Any] = {}
        if s.lexical is not None:
            lexical = p.other_vectors.get(s.lexical)
            text = lexical.get("text") if isinstance(lexical, dict) else None
            row[LEXICAL_TEXT_FIELD] = cut_utf8(text, LEXICAL_TEXT_MAX) if isinstance(text, str) else None
        for key, value in p.payload.items():
            if key == DOC_ID_KEY or (key == LEXICAL_TEXT_FIELD and s.lexical is not None):
                continue
            if key == MODEL_KEY and not self._holds_tags(s):
                continue  # the model is recorded once, in the collection's properties
            if key in (s.pk, s.vector) or key.startswith(ESCAPED_PREFIX) or key == "$meta":
                if not s.dynamic:
                    raise UsageError(f"payload key {key!r} collides with a field of {s.collection!r}")
                row[ESCAPED_PREFIX + key] = value
            elif key in s.fields or s.dynamic:
                row[key] = value
            else:
                raise UsageError(f"collection {s.collection!r} has no field {key!r} and no dynamic fields")
        pk = self._pk_value(s, p.doc_id)
        if pk is None:
            raise UsageError(f"collection {s.collection!r} has an integer primary key; {p.doc_id!r} is not one")
        if s.pk_is_str and len(p.doc_id.encode("utf-8")) > s.pk_max_length:
            raise UsageError(
                f"document id {p.doc_id[:40]!r}... is longer than {s.pk_max_length} bytes, "
                f"the primary key limit of {s.collection!r}"
            )
        row[s.pk] = pk
        row[s.vector] = [float(x) for x in p.vector]
        return row

    def _holds_tags(self, s: RowLayout) -> bool:
        return s.dynamic or MODEL_KEY in s.fields

    def holds_point_tags(self, name: str) -> bool:
        return self._holds_tags(self._schema(name))

    def _point(self, s: RowLayout, row: dict[str, Any], with_vectors: bool) -> Point:
        """A stored row as a point; the BM25 text of a lexical version among its other vectors."""
        text = row.get(LEXICAL_TEXT_FIELD) if s.lexical is not None else None
        doc_id, vec, payload = self._to_payload(s, row)
        point = Point(doc_id=doc_id, vector=vec if with_vectors else None, payload=payload)
        if with_vectors and isinstance(text, str):
            point.other_vectors = {s.lexical: {"text": text}}  # type: ignore[dict-item]
        return point

    def _to_payload(self, s: RowLayout, row: dict[str, Any]) -> tuple[str, list[float] | None, dict[str, Any]]:
        row = dict(row)
        if s.lexical is not None:
            row.pop(LEXICAL_TEXT_FIELD, None)
        pk = row.pop(s.pk, None)
        if pk is None:
            pk = row.pop("id", None)
        vector = row.pop(s.vector, None)
        payload: dict[str, Any] = {}
        meta = row.pop("$meta", None)
        if isinstance(meta, dict):
            row = {**meta, **row}
        for key, value in row.items():
            if key.startswith(ESCAPED_PREFIX):
                key = key[len(ESCAPED_PREFIX) :]
            payload[key] = value
        payload.pop(DOC_ID_KEY, None)
        vec = [float(x) for x in vector] if vector is not None else None
        return str(pk), vec, payload

    def _pk_expr(self, s: RowLayout, doc_ids: Sequence[str]) -> str | None:
        values = [v for v in (self._pk_value(s, d) for d in doc_ids) if v is not None]
        if not values:
            return None
        return f"{s.pk} in [{', '.join(lit(v) for v in values)}]"

    def _where_expr(self, s: RowLayout, where: dict[str, Any] | None) -> str:
        if not where:
            return ""
        parts = []
        for key, value in where.items():
            head, *rest = key.split(".")
            if head in s.fields:
                ref = head
            elif not s.dynamic:
                raise UsageError(f"where: collection {s.collection!r} has no field {head!r}")
            elif head in (s.pk, s.vector) or head.startswith(ESCAPED_PREFIX) or head == "$meta":
                ref = f"$meta[{lit(ESCAPED_PREFIX + head)}]"
            else:
                ref = f"$meta[{lit(head)}]"
            ref += "".join(f"[{lit(part)}]" for part in rest)
            parts.append(f"{ref} == {lit(value)}")
        return " and ".join(parts)

    def _hits(self, s: RowLayout, res: Any, score: Callable[[float], float]) -> list[Hit]:
        hits = []
        for h in res[0] if res else []:
            entity = dict(h.get("entity") or {})
            entity.setdefault(s.pk, h.get("id"))
            doc_id, _, payload = self._to_payload(s, entity)
            hits.append(Hit(doc_id=doc_id, score=score(float(h.get("distance", 0.0))), payload=payload))
        return hits

    def _untagged_expr(self, key: str, value: str) -> str:
        """``key`` missing or not ``value``: Milvus Lite finds no row by ``!=`` whose key is missing (null
        semantics), the 2.3 server does; spelled out with ``exists``, fully bracketed (2.3 parses no other
        way), both agree."""
        ref = f"$meta[{lit(key)}]"
        return f"(not (exists {ref})) or ({ref} != {lit(value)})"
