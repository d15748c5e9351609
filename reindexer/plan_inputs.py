"""What a plan is decided from: each input read and checked, and the fingerprint of them all.

reindexer.planner's ``gather_inputs`` calls these one by one and puts the result in a
``PlanInputs``: the index settings and lexical index asked for, the model (a folder checked
early, or a registered one), one pass over the source (counted, its ids checked, a sample for
the estimate), the vector the collection embeds into, and the time and storage estimate. Each
refuses a bad input before anything is written; none of them decides the plan's mode.
``inputs_of`` and ``hash_inputs`` are the plan's inputs fingerprint, which apply recomputes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from reindexer.adapters.base import CollectionSpec
from reindexer.adapters.metadata import validate_spec
from reindexer.adapters.names import check_vector_name
from reindexer.errors import UsageError
from reindexer.estimate import SAMPLE_SEED, build_estimate
from reindexer.estimate_index import index_estimate
from reindexer.model_identity import ModelSettings, check_model_folder
from reindexer.model_registry import describe_model
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, ModelVersion
from reindexer.workspace import Workspace

#: texts drawn for the estimate: all tokenized (the corpus's length distribution), the first few batches timed
ESTIMATE_SAMPLE = 512


def inputs_of(
    ws: Workspace,
    collection: str,
    live: IndexVersion | None,
    model: ModelVersion,
    source: SourceSpec,
    metric: str,
    index_params: dict[str, Any],
) -> dict[str, Any]:
    """What a plan depends on; its hash is the plan's inputs fingerprint."""
    return {
        "state_store_id": ws.state.store_id,
        "store": ws.store_url,
        "collection": collection,
        "live_physical": live.physical_name if live else None,
        "live_model": live.model_fingerprint if live else None,
        "model": model.fingerprint,
        "source": source.to_dict(),
        "metric": metric,
        # The average document length is measured when planning a build, so edits made after the plan
        # change it without being drift (apply catches them up).
        "index_params": settings_only(index_params),
    }


def settings_only(index_params: dict[str, Any]) -> dict[str, Any]:
    """Index parameters without what a build measures (the lexical index's average length)."""
    if not index_params.get("lexical"):
        return index_params
    lexical = {k: v for k, v in index_params["lexical"].items() if k != "avgdl"}
    return {**index_params, "lexical": lexical}


def hash_inputs(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass
class PlanInputs:
    """Everything a plan is decided from, read from the store, the state, the model and the source.

    Gathering it writes nothing, so a refused plan leaves store and state as they were.
    ``model`` may be a version not yet registered; ``reindexer.planner.record_plan`` registers it.
    """

    collection: str
    store_url: str
    state_store_id: str
    text_field: str
    live: IndexVersion | None
    live_model: ModelVersion | None
    live_count: int | None
    model: ModelVersion
    source: SourceSpec
    metric: str
    index_params: dict[str, Any]
    mode: str
    reason: str
    source_docs: int
    next_version: int
    gate: str | None
    estimate: dict[str, Any]
    #: what the inputs fingerprint covers (``inputs_of``)
    fingerprinted: dict[str, Any]
    #: the dense vector the new version embeds into ("": the collection's only, unnamed one)
    vector: str = ""


def index_settings(
    ws: Workspace,
    collection: str,
    live: IndexVersion | None,
    model: ModelVersion,
    metric: str | None,
    index_params: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """The new version's metric and index parameters: as given, else the live version's, checked."""
    # The live version's metric is the application's choice: kept unless the plan names another.
    metric = metric or (live.metric if live else model.similarity)
    ws.backend.validate_metric(metric)
    ws.backend.validate_dim(model.dim)  # the backend's own limit, before anything is created
    index_params = dict(index_params if index_params is not None else (live.index_params if live else {}))
    spec = CollectionSpec(name=collection, dim=model.dim, metric=metric, index_params=index_params)
    validate_spec(spec, ws.backend.ann_indexes, ws.backend.name)
    ws.backend.validate_index_params(index_params)
    return metric, index_params


def lexical_settings(
    ws: Workspace, collection: str, live: IndexVersion | None, index_params: dict[str, Any], lexical: str | None
) -> dict[str, Any]:
    """The new version's lexical index: asked for (``bm25``), dropped (``none``), else the live one's."""
    from reindexer.lexical import LEXICAL_VECTOR, STANDARD_ANALYZER, LexicalSpec, StoreBM25

    if lexical is None:
        return index_params
    if lexical not in ("bm25", "none"):
        raise UsageError(f"unknown lexical index {lexical!r}", hint="use --lexical bm25, or --lexical none to drop it")
    out = {k: v for k, v in index_params.items() if k != "lexical"}
    if lexical == "none":
        return out
    refusal = ws.store.lexical_refusal()
    if refusal is not None:
        raise UsageError(
            f"{refusal}: --lexical bm25 needs Qdrant, Milvus Lite or a Milvus server from 2.5",
            hint="plan without --lexical; `reindex eval --pipelines lexical,hybrid` still compares BM25 and hybrid "
            "retrieval from the version's own texts",
        )
    kept = (live.index_params or {}).get("lexical") if live else None
    schema = ws.store.read_schema(live.physical_name) if live and not kept else None
    if schema is not None and schema.field(LEXICAL_VECTOR) is not None:
        raise UsageError(
            f"{collection} already has a vector named {LEXICAL_VECTOR!r}, the application's: the tool's BM25 vector "
            "would take its place",
            hint="rename the application's vector, or search it as it is (eval --pipelines still compares BM25)",
        )
    by_store = ws.store.capabilities.lexical_by_store
    if kept and kept.get("kind") == "bm25" and (kept.get("engine") == "store") == by_store:
        out["lexical"] = dict(kept)  # the same settings; a build measures its average length again
    elif by_store:  # the store's own BM25 function (Milvus), over its standard analyzer
        out["lexical"] = StoreBM25(dict(STANDARD_ANALYZER)).to_params()
    else:
        out["lexical"] = {"kind": "bm25", **asdict(LexicalSpec()), "vector": LEXICAL_VECTOR}
    return out


def measure_lexical(
    ws: Workspace, source: SourceSpec, live: IndexVersion | None, mode: str, index_params: dict[str, Any]
) -> dict[str, Any]:
    """A full build's average document length, over the whole source (one more pass, only with a lexical
    index); a copy or no-op keeps the live version's, with its stored vectors."""
    from reindexer.lexical import StoredLexical, average_length

    lexical = index_params.get("lexical")
    if not lexical or lexical.get("engine") == "store":  # a store's own BM25 keeps its statistics itself
        return index_params
    if mode != "full" and live is not None and (live.index_params or {}).get("lexical"):
        return {**index_params, "lexical": dict(live.index_params["lexical"])}
    stored = StoredLexical.from_params({"lexical": {**lexical, "avgdl": 1.0}})  # the recorded settings
    assert isinstance(stored, StoredLexical)
    with open_source(source, store=ws.store, collection=live.physical_name if live else None) as src:
        avgdl, _ = average_length((doc.text for doc in src), stored.spec)
    measured = {**lexical, "avgdl": round(avgdl, 6) or 1.0}
    StoredLexical.from_params({"lexical": measured})  # checked now, before anything is written
    return {**index_params, "lexical": measured}


def inspect_model_early(
    ws: Workspace,
    model_path: str | None,
    model_name: str | None,
    settings: ModelSettings | None,
    training: dict[str, Any] | None,
) -> ModelVersion | None:
    """A model folder checked before the state and the store are opened; described too when there is no state."""
    if not model_path:
        return None
    check_model_folder(model_path)
    if ws.state_exists():
        return None
    # A new state knows no model yet: inspect this one (dimension, truncation) before the state
    # and the store are made, so a refused model leaves a fresh folder as it was.
    return describe_model(None, model_path, name=model_name, settings=settings, **(training or {}))


def model_to_plan(
    ws: Workspace,
    live: IndexVersion | None,
    model_path: str | None,
    model_ref: str | None,
    model_name: str | None,
    settings: ModelSettings | None,
    training: dict[str, Any] | None,
) -> ModelVersion:
    """The model folder, else the registered model named, else the live version's model."""
    if model_path:
        return describe_model(ws.state, model_path, name=model_name, settings=settings, **(training or {}))
    if model_ref:
        return ws.state.find_model(model_ref)
    if live is not None:
        return ws.state.model_of(live)
    raise UsageError("a new collection needs a model", hint="pass --model PATH")


def scan_source(ws: Workspace, source: SourceSpec, live: IndexVersion | None, mode: str) -> tuple[int, list[str], int]:
    """One full pass over the source (every bad record reported at once, before any work; a full build's
    ids checked against the backend's rules), and for a full build a sample for the estimate: texts drawn
    uniformly from the whole source in the same pass (a reservoir), and their payloads' size.
    The pass's ids stay out of memory (``ScanResult.ids``) and are dropped after."""
    keep = ESTIMATE_SAMPLE if mode == "full" else 0  # only a full build is estimated from a sample
    with open_source(source, store=ws.store, collection=live.physical_name if live else None) as src:
        with src.scan(sample=keep, seed=SAMPLE_SEED) as scanned:
            docs = scanned.count
            if mode == "full":
                ws.backend.validate_doc_ids(scanned.ids)
            drawn = scanned.sample
    sample = [doc.text for doc in drawn]
    payload_bytes = sum(len(json.dumps(doc.payload, default=str)) for doc in drawn)
    return docs, sample, payload_bytes


def check_documents(source: SourceSpec, docs: int, mode: str) -> None:
    if docs == 0 and mode != "copy":
        raise UsageError(
            f"the source {source.describe()} has no documents: nothing to index",
            hint="check the source path or query; an empty corpus would leave an empty index behind the alias",
        )


def managed_vector(ws: Workspace, collection: str, live: IndexVersion | None, requested: str | None) -> str:
    """The vector the live version embeds into; a requested other one is refused, naming the vectors there are."""
    if live is None:
        if requested is not None:
            raise UsageError(
                f"--vector-name {requested!r}: {collection!r} does not exist yet, and a new collection gets "
                "the tool's own schema, with one vector",
                hint="adopt an existing collection with --vector-name, or plan without it",
            )
        return ""
    managed = ws.store.describe(live.physical_name).vector
    if requested is not None and requested != managed:
        check_vector_name(collection, requested, ws.store.vector_names(live.physical_name))
        raise UsageError(
            f"{collection} embeds into the vector {managed or '(unnamed)'!r}, recorded when it was adopted; "
            f"a plan re-embeds that one and cannot move to {requested!r}",
            hint=f"plan without --vector-name; to manage {requested!r} instead, "
            f"`reindex forget {collection}` and adopt it again with --vector-name {requested}",
        )
    return managed


def estimate_work(
    ws: Workspace,
    model: ModelVersion,
    mode: str,
    docs: int,
    sample: list[str],
    payload_bytes: int,
    live_count: int | None,
    metric: str = "cosine",
    index_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time (a point and an interval) and storage: a full build from earlier runs' rates, else from a timed
    sample (reindexer.estimate); and, where the store builds its ANN index after the load (pgvector), that
    build on its own line (``index``, reindexer.estimate_index), also for a copy."""
    if mode == "copy":
        est: dict[str, Any] = {"seconds": None, "storage_bytes": int((live_count or 0) * model.dim * 4)}
        rows = live_count or 0
    elif mode != "full" or not sample:
        return {"seconds": 0.0}
    else:
        est = build_estimate(ws, model, docs, sample)
        est["storage_bytes"] = int(docs * (model.dim * 4 + payload_bytes / max(len(sample), 1)))
        rows = docs
    index = index_estimate(ws, model.dim, metric, index_params or {}, rows)
    if index is not None:
        est["index"] = index
        # a copy has no build time (None); a tiny build's may round to 0.0 and still adds up
        if est.get("seconds") is not None and index.get("seconds") is not None:
            est["total_seconds"] = round(est["seconds"] + index["seconds"], 1)
    return est
