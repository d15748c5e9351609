"""Between qdrant-client's objects and the tool's data: metrics, vectors, filters, hits, index settings.

Pure functions over what the client hands back or takes (collection info, records,
scored points) and the tool's ``Hit``, vectors and ``where`` dicts; they make no
calls to a store. The store's operations are ``reindexer.adapters.qdrant.store`` and
``reindexer.adapters.qdrant.structure``.
"""

from __future__ import annotations

from typing import Any

from reindexer.adapters.base import DOC_ID_KEY, META_VECTOR, Hit
from reindexer.adapters.names import ambiguous_vector, check_vector_name
from reindexer.errors import BackendError, UsageError


def qdrant_distance(metric: str) -> Any:
    from qdrant_client import models

    return {
        "cosine": models.Distance.COSINE,
        "dot": models.Distance.DOT,
        "euclid": models.Distance.EUCLID,
    }[metric]


METRIC_FROM_QDRANT = {"cosine": "cosine", "dot": "dot", "euclid": "euclid", "manhattan": "manhattan"}


def dense_vectors(info: Any) -> dict[str, Any]:
    """Name ("" for the unnamed one) -> parameters of each dense vector, by name."""
    vectors = info.config.params.vectors
    if vectors is None:
        return {}
    return dict(sorted(vectors.items())) if isinstance(vectors, dict) else {"": vectors}


def embedding_vector(info: Any, name: str, chosen: str | None = None) -> tuple[str | None, Any]:
    """(name or None for the unnamed one, parameters) of the vector the tool embeds into.

    The one ``chosen`` (adopt's choice, not yet recorded), else the one the collection's
    metadata records (``META_VECTOR``), else its only dense vector.
    """
    dense = dense_vectors(info)
    if not dense:
        raise BackendError(f"collection {name!r} has no dense vector")
    wanted = chosen if chosen is not None else (info.config.metadata or {}).get(META_VECTOR)
    if wanted is None:
        if len(dense) > 1:
            raise ambiguous_vector(name, list(dense))
        wanted = next(iter(dense))
    check_vector_name(name, wanted, list(dense))
    return (wanted or None), dense[wanted]


def extract_vector(raw: Any, vector_name: str | None) -> list[float] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        if vector_name is not None:
            # A point may lack a named vector; another vector is never handed back in its place.
            raw = raw.get(vector_name)
            if raw is None:
                return None
        elif "" in raw:
            raw = raw[""]
        elif len(raw) == 1:
            raw = next(iter(raw.values()))
        else:
            return None
    return [float(x) for x in raw]


def schema_kind(schema: Any) -> str:
    kind = getattr(schema, "data_type", schema)
    kind = getattr(kind, "value", kind)
    return str(kind)


def derived_index_params(info: Any, vector_params: Any) -> dict[str, Any]:
    """Index settings read from the collection, for collections made outside the tool."""
    out: dict[str, Any] = {}
    hnsw = getattr(vector_params, "hnsw_config", None) or info.config.hnsw_config
    if hnsw is not None:
        if getattr(hnsw, "m", None) is not None:
            out["hnsw_m"] = hnsw.m
        if getattr(hnsw, "ef_construct", None) is not None:
            out["hnsw_ef_construct"] = hnsw.ef_construct
    quant = getattr(vector_params, "quantization_config", None) or info.config.quantization_config
    if quant is not None:
        out["quantization"] = "scalar" if hasattr(quant, "scalar") else type(quant).__name__.lower()
    shards = getattr(info.config.params, "shard_number", None)
    if shards:
        out["shards"] = shards
    return out


def payload_filter(where: dict[str, Any] | None) -> Any:
    if not where:
        return None
    from qdrant_client import models

    must: list[Any] = []
    for key, value in where.items():
        if isinstance(value, bool) or isinstance(value, (int, str)):
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        elif isinstance(value, float):
            must.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
        else:
            raise UsageError(f"where: {key!r} must equal a string, number or boolean, not {type(value).__name__}")
    return models.Filter(must=must)


def dense_params(v: Any) -> dict[str, Any]:
    distance = v.distance.value if hasattr(v.distance, "value") else str(v.distance)
    return {"size": int(v.size), "distance": distance}


def plain_vector(v: Any) -> Any:
    """A vector as read, as plain data: a sparse one as {"indices": [...], "values": [...]}."""
    if hasattr(v, "indices") and hasattr(v, "values"):
        return {"indices": [int(i) for i in v.indices], "values": [float(x) for x in v.values]}
    return v


def client_vector(v: Any) -> Any:
    from qdrant_client import models

    if isinstance(v, dict) and set(v) == {"indices", "values"}:
        return models.SparseVector(indices=v["indices"], values=v["values"])
    return v


def to_hits(points: Any) -> list[Hit]:
    """Scored points as hits: the document id from the payload (the point id for points made elsewhere)."""
    hits = []
    for sp in points:
        payload = dict(sp.payload or {})
        doc_id = payload.pop(DOC_ID_KEY, None)
        if not isinstance(doc_id, str):
            doc_id = str(sp.id)
        hits.append(Hit(doc_id=doc_id, score=float(sp.score), payload=payload))
    return hits
