"""How a Milvus collection looks to the adapter: names, metrics, ``RowLayout``, schema translations.

Pure data and functions, no calls to a server: the name rule every collection and
alias name is held to, the tool's metric names against Milvus's, the ``RowLayout``
read from a collection's description (which field is the key, which vector the tool
embeds into, which fields are payload), and the translations between a pymilvus
description and the backend-neutral ``CollectionSchema`` carried to new versions.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from reindexer.adapters.collection_schema import CollectionSchema
from reindexer.errors import (
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


PK_FIELD = "id"

VECTOR_FIELD = "vector"

PK_MAX_LENGTH = 512

DEFAULT_HNSW_M = 16

DEFAULT_HNSW_EF_CONSTRUCT = 100

# Milvus servers accept only these names for collections and aliases (Milvus
# Lite is laxer); the adapter holds both to the server's rule.
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

MILVUS_NAME_RULE = (
    "ASCII letters, digits and underscores, starting with a letter or underscore, "
    "at most 255 characters, on Milvus Lite too"
)

METRIC_TO_MILVUS = {"cosine": "COSINE", "dot": "IP", "euclid": "L2"}

METRIC_FROM_MILVUS = {"COSINE": "cosine", "IP": "dot", "L2": "euclid"}

SCALAR_KINDS = {
    "VARCHAR": "keyword",
    "INT8": "integer",
    "INT16": "integer",
    "INT32": "integer",
    "INT64": "integer",
    "FLOAT": "float",
    "DOUBLE": "float",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class RowLayout:
    collection: str  # the physical collection behind the name it was read for
    pk: str
    pk_is_str: bool
    pk_max_length: int
    vector: str
    dim: int
    fields: tuple[str, ...]  # other schema fields: payload (other vector fields included)
    other_vectors: tuple[str, ...]  # the vector fields among ``fields``: never asked of a search
    dynamic: bool
    metric: str  # Milvus metric type: COSINE, IP, L2
    index_type: str
    index_params: dict[str, Any]
    num_shards: int
    # The sparse vector the tool's BM25 function fills from LEXICAL_TEXT_FIELD, where the collection
    # has one (a version planned with --lexical bm25); function outputs are never in ``fields``.
    lexical: str | None = None


def valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: str, what: str) -> None:
    if not valid_name(name):
        raise UsageError(f"{name!r} is not a valid Milvus {what} name", hint=f"Milvus names: {MILVUS_NAME_RULE}")


def float_vectors(desc: dict[str, Any]) -> dict[str, int]:
    """Name -> dimension of each FLOAT_VECTOR field: the fields the tool can embed into."""
    from pymilvus import DataType

    return {
        f["name"]: int((f.get("params") or {}).get("dim", 0))
        for f in desc.get("fields", [])
        if f.get("type") == DataType.FLOAT_VECTOR
    }


def derived_index_params(s: RowLayout) -> dict[str, Any]:
    """Index settings read from the index, for collections made outside the tool."""
    out: dict[str, Any] = {}
    params = s.index_params
    if s.index_type.startswith("HNSW"):
        if "M" in params:
            out["hnsw_m"] = int(params["M"])
        if "efConstruction" in params:
            out["hnsw_ef_construct"] = int(params["efConstruction"])
    out["quantization"] = "scalar" if "SQ" in s.index_type else "none"
    out["shards"] = s.num_shards
    return out


# What describe_index reports beside the index's own parameters.
INDEX_INFO_KEYS = frozenset(
    {
        "index_type",
        "metric_type",
        "field_name",
        "index_name",
        "total_rows",
        "indexed_rows",
        "pending_index_rows",
        "state",
    }
)


def plain(value: Any) -> Any:
    """A client value as JSON-able data: DataType members by their lowercased name."""
    if isinstance(value, enum.Enum):
        return str(value.name).lower()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def pymilvus_schema(like: CollectionSchema, dim: int) -> Any:
    """The pymilvus schema of ``like``, with ``dim`` for the vector the tool embeds into."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    pk = like.primary
    schema = MilvusClient.create_schema(
        auto_id=bool(pk and pk.auto_id),
        enable_dynamic_field=like.dynamic,
        description=like.options.get("description", ""),
    )
    for f in like.fields:
        kwargs: dict[str, Any] = {}
        for key, value in f.params.items():
            if key == "element_type":
                kwargs[key] = DataType[str(value).upper()]
            elif key in ("max_length", "dim", "max_capacity"):
                kwargs[key] = int(value)
            else:
                kwargs[key] = value
        if f.name == like.vector:
            kwargs["dim"] = dim
        if f.primary:
            kwargs["is_primary"] = True
            kwargs["auto_id"] = f.auto_id
        if f.nullable:
            kwargs["nullable"] = True
        if f.partition_key:
            kwargs["is_partition_key"] = True
        if f.default is not None:
            kwargs["default_value"] = f.default
        for flag in ("enable_analyzer", "enable_match"):  # described as the strings 'true' / 'false'
            if flag in kwargs:
                kwargs[flag] = str(kwargs[flag]).lower() == "true"
        if isinstance(kwargs.get("analyzer_params"), str):
            kwargs["analyzer_params"] = json.loads(kwargs["analyzer_params"])
        schema.add_field(f.name, DataType[f.kind.upper()], **kwargs)
    for fn in like.options.get("functions") or []:
        schema.add_function(
            Function(
                name=fn["name"],
                function_type=FunctionType[str(fn["type"]).upper()],
                input_field_names=list(fn["input"]),
                output_field_names=list(fn["output"]),
                params=dict(fn.get("params") or {}),
            )
        )
    return schema


def plain_function(fn: dict[str, Any]) -> dict[str, Any]:
    """An application's function (langchain-milvus's BM25, say) as JSON-able data, to make it again."""
    return {
        "name": str(fn.get("name")),
        "type": plain(fn.get("type")),
        "input": [str(x) for x in fn.get("input_field_names") or []],
        "output": [str(x) for x in fn.get("output_field_names") or []],
        "params": plain(dict(fn.get("params") or {})),
    }
