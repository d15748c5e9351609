"""The checks of a ``CollectionSpec`` and the collection-metadata encoding every adapter shares.

Every backend keeps collection metadata as string pairs; the tool's own entries
(payload index spec, index settings, the embedded vector's name) sit among the
application's under the ``reindex.`` keys of ``reindexer.adapters.base``.
``split_metadata`` takes them apart again. Helpers for adapter authors, not part
of the interface itself.
"""

from __future__ import annotations

import json
from typing import Any

from reindexer.adapters.base import (
    ANN_INDEX_KINDS,
    INDEX_PARAM_KEYS,
    INTERNAL_META_KEYS,
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    PAYLOAD_INDEX_TYPES,
    CollectionSpec,
)
from reindexer.errors import UsageError


def validate_spec(spec: CollectionSpec, ann_indexes: tuple[str, ...] = ("hnsw",), backend: str = "this store") -> None:
    """Checks shared by the adapters: metadata strings, index types, index settings, and the ANN index
    among ``ann_indexes``, the kinds ``backend`` builds (``Backend.ann_indexes``)."""
    check_metadata(spec.metadata)
    for field_name, kind in spec.payload_indexes.items():
        if kind not in PAYLOAD_INDEX_TYPES:
            raise UsageError(f"payload index {field_name!r}: type must be one of {PAYLOAD_INDEX_TYPES}, not {kind!r}")
    unknown = set(spec.index_params) - INDEX_PARAM_KEYS
    if unknown:
        raise UsageError(
            f"unknown index settings: {', '.join(sorted(unknown))}",
            hint=f"use {', '.join(sorted(INDEX_PARAM_KEYS))}",
        )
    lexical = spec.index_params.get("lexical")
    if lexical is not None and not (
        isinstance(lexical, dict) and lexical.get("kind") == "bm25" and isinstance(lexical.get("vector"), str)
    ):
        raise UsageError(f"lexical must describe a BM25 index (kind bm25 and its sparse vector), not {lexical!r}")
    quant = spec.index_params.get("quantization", "none")
    if quant not in ("none", "scalar"):
        raise UsageError(f"quantization must be 'none' or 'scalar', not {quant!r}")
    for key in ("hnsw_m", "hnsw_ef_construct", "shards", "ivf_lists", "ivf_probes"):
        if key in spec.index_params:
            value = spec.index_params[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"{key} must be a positive integer, not {value!r}")
    check_ann_index(spec.index_params, ann_indexes, backend)


def check_ann_index(index_params: dict[str, Any], ann_indexes: tuple[str, ...], backend: str) -> None:
    """The ANN index asked for: a known kind that ``backend`` builds, with only its own settings."""
    kind = index_params.get("ann_index", "hnsw")
    if kind not in ANN_INDEX_KINDS:
        raise UsageError(f"ann_index must be one of {', '.join(ANN_INDEX_KINDS)}, not {kind!r}")
    if kind not in ann_indexes:
        raise UsageError(
            f"{backend} builds no {kind} index (it builds {', '.join(ann_indexes)})",
            hint="plan without --ann-index; IVFFlat is pgvector's (pgvector:// and pgvector+local: stores)",
        )
    others = {"hnsw": ("ivf_lists", "ivf_probes"), "ivfflat": ("hnsw_m", "hnsw_ef_construct")}[kind]
    stray = [key for key in others if key in index_params]
    if stray:
        flags = ", ".join("--" + key.replace("_", "-") for key in stray)
        raise UsageError(
            f"{', '.join(stray)} belong{'s' if len(stray) == 1 else ''} to another ANN index than {kind}",
            hint=f"drop {flags}, or choose the index they belong to with --ann-index "
            f"{'ivfflat' if kind == 'hnsw' else 'hnsw'}",
        )
    lists, probes = index_params.get("ivf_lists"), index_params.get("ivf_probes")
    if lists is not None and probes is not None and probes > lists:
        raise UsageError(
            f"ivf_probes {probes} is more than ivf_lists {lists}: a query cannot scan more lists than there are",
            hint=f"--ivf-probes at most {lists} (sqrt of the lists is pgvector's advice)",
        )


def check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"collection metadata must map strings to strings: {key!r}: {value!r}")


def meta_str(value: Any) -> str:
    """Metadata values are strings on every backend; anything else is stored as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def split_metadata(raw: dict[str, Any] | None) -> tuple[dict[str, str], dict | None, dict | None]:
    """(user metadata, payload index spec or None, index params or None)."""
    metadata = {str(k): meta_str(v) for k, v in (raw or {}).items()}
    indexes = params = None
    if META_PAYLOAD_INDEXES in metadata:
        try:
            indexes = json.loads(metadata[META_PAYLOAD_INDEXES])
        except ValueError:
            indexes = None
    if META_INDEX_PARAMS in metadata:
        try:
            params = json.loads(metadata[META_INDEX_PARAMS])
        except ValueError:
            params = None
    return {k: v for k, v in metadata.items() if k not in INTERNAL_META_KEYS}, indexes, params
