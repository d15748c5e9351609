"""Qdrant point ids made from document ids, deterministically.

Qdrant accepts only unsigned integers and UUIDs as point ids. ``point_id_for`` maps
any document id onto one (the rule is in the package docstring,
``reindexer.adapters.qdrant``); the document id itself travels in the payload. Not
the reading side: reads take the document id from the payload.
"""

from __future__ import annotations

import uuid

from reindexer.errors import UsageError

#: Fixed namespace for uuid5 point ids; changing it would orphan every point.
DOC_ID_NAMESPACE = uuid.UUID("5b0f3d9e-8c1a-5f7e-9a43-7d2c1e6b4a10")

_UINT64_MAX = 2**64 - 1


def point_id_for(doc_id: str) -> int | str:
    """The Qdrant point id for a document id (see the package docstring)."""
    if not isinstance(doc_id, str) or not doc_id:
        raise UsageError(f"document ids must be non-empty strings, not {doc_id!r}")
    if doc_id.isascii() and doc_id.isdigit():
        value = int(doc_id)
        if str(value) == doc_id and value <= _UINT64_MAX:
            return value
    try:
        parsed = uuid.UUID(doc_id)
    except ValueError:
        pass
    else:
        if str(parsed) == doc_id:
            return doc_id
    return str(uuid.uuid5(DOC_ID_NAMESPACE, doc_id))
