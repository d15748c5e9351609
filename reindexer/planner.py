"""What must change to put a model version behind a logical collection, as a Plan.

A plan is data: JSON that a person can read, review and apply later. Its
``inputs_fingerprint`` covers what the plan was computed from (the live
version and its model, the target model's files and settings, the source, the
index settings); ``apply`` recomputes it and refuses a plan whose inputs
drifted. Document edits made after planning are not drift: apply catches them up.

Planning is read, decide, record: ``gather_inputs`` reads what a plan depends on (each input
is read and checked in reindexer.plan_inputs) and writes nothing; ``decide`` is pure;
``record_plan`` registers the model, the collection and the plan. ``check_plan`` is apply's
side: the plan as recorded, and its inputs unchanged. Carrying a plan out is reindexer.build's.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reindexer.adapters.metadata import check_ann_index
from reindexer.carried_vectors import refuse_stale_sparse
from reindexer.errors import ConflictError, DriftError, NotFoundError, UsageError
from reindexer.model_identity import ModelSettings
from reindexer.model_registry import require_unchanged, save_model
from reindexer.plan_inputs import (
    PlanInputs,
    check_documents,
    estimate_work,
    hash_inputs,
    index_settings,
    inputs_of,
    inspect_model_early,
    lexical_settings,
    managed_vector,
    measure_lexical,
    model_to_plan,
    scan_source,
    settings_only,
)
from reindexer.sources.spec import SourceSpec
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion, PlanRecord
from reindexer.state.models import iso, saved_id, utcnow
from reindexer.workspace import Workspace

PLAN_SCHEMA = "reindexer.plan/v1"


@dataclass
class Plan:
    id: str
    state_store_id: str
    created_at: str
    collection: str
    store: str
    mode: str  # full | copy | noop
    reason: str
    from_version: dict[str, Any] | None
    to_version: dict[str, Any]
    source: dict[str, Any]
    counts: dict[str, int]
    dimension_change: bool
    estimate: dict[str, Any]
    gate: str | None
    inputs_fingerprint: str
    schema: str = PLAN_SCHEMA
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, origin: str = "plan") -> Plan:
        if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
            raise UsageError(
                f"{origin} is not a reindexer plan (expected schema {PLAN_SCHEMA!r})",
                hint="make one with `reindex plan COLLECTION --model PATH -o plan.json`",
            )
        missing = [name for name in cls.__dataclass_fields__ if name not in data]
        if missing:
            raise UsageError(f"{origin} is missing {', '.join(sorted(missing))}", hint="make a new plan")
        wrong = [
            f"{name} ({type(data[name]).__name__}, not {' or '.join(_TYPE_NAMES[t] for t in types)})"
            for name, types in _PLAN_FIELD_TYPES.items()
            if not _has_type(data[name], types)
        ]
        if wrong:
            raise UsageError(f"{origin} has fields of the wrong type: {', '.join(wrong)}", hint="make a new plan")
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except TypeError as exc:
            raise UsageError(f"{origin} is malformed: {exc}") from None


#: what each field of a plan file holds (JSON types); checked before any field is used
_PLAN_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "id": (str,),
    "state_store_id": (str,),
    "created_at": (str,),
    "collection": (str,),
    "store": (str,),
    "mode": (str,),
    "reason": (str,),
    "from_version": (dict, None),
    "to_version": (dict,),
    "source": (dict,),
    "counts": (dict,),
    "dimension_change": (bool,),
    "estimate": (dict,),
    "gate": (str, None),
    "inputs_fingerprint": (str,),
    "schema": (str,),
    "inputs": (dict,),
}
_TYPE_NAMES: dict[type | None, str] = {str: "a string", dict: "an object", bool: "true/false", None: "null"}


def _has_type(value: Any, types: tuple[type | None, ...]) -> bool:
    return any(value is None if t is None else isinstance(value, t) for t in types)


def load_plan_file(path: str | Path) -> Plan:
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read plan file {p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"plan file {p} is not valid UTF-8 (byte {exc.start}: {exc.reason})",
            hint="make a new plan with `reindex plan`",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"plan file {p} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="make a new plan with `reindex plan`",
        ) from None
    except (ValueError, RecursionError) as exc:  # a number past int's digit limit; nesting past the stack
        raise UsageError(
            f"plan file {p} is not a plan reindexer can read ({exc})", hint="make a new plan with `reindex plan`"
        ) from None
    return Plan.from_dict(data, origin=f"plan file {p}")


def physical_name(collection: str, version: int) -> str:
    return f"{collection}__v{version}"


def live_version(ws: Workspace, lc: LogicalCollection | None, collection: str) -> IndexVersion | None:
    """The index version the logical name resolves to in the store right now."""
    physical = ws.store.resolve(collection)
    if physical is None:
        return None
    if lc is None:
        raise ConflictError(
            f"collection {collection!r} exists in {ws.store_url} but reindexer does not manage it",
            hint=f"tag it first with `reindex adopt {collection} --model PATH`",
        )
    found = ws.state.version_by_physical(saved_id(lc), physical)
    if found is None:
        raise ConflictError(
            f"{collection!r} points at {physical!r}, which the state store does not know",
            hint=f"`reindex adopt {collection} --model PATH` tags it",
        )
    return found


def _version_summary(v: IndexVersion, model: ModelVersion, count: int | None = None) -> dict[str, Any]:
    return {
        "version": v.version,
        "physical": v.physical_name,
        "model": model.label,
        "model_fingerprint": model.fingerprint,
        "dim": v.dim,
        "metric": v.metric,
        "index_params": v.index_params or {},
        "count": count if count is not None else v.point_count,
    }


def choose_mode(
    collection: str,
    live: IndexVersion | None,
    live_model: ModelVersion | None,
    model: ModelVersion,
    metric: str,
    index_params: dict[str, Any],
) -> tuple[str, str]:
    """(mode, reason): full for a new collection or a new model, copy for new index settings, else noop."""
    if live is None:
        return "full", "new collection"
    if live.model_fingerprint != model.fingerprint:
        was = live_model.label if live_model else live.model_fingerprint[:12]
        reason = f"model changes from {was} to {model.label}"
        if live.dim != model.dim:
            reason += f" (dimension {live.dim} -> {model.dim})"
        if metric != live.metric:
            reason += f" (metric {live.metric} -> {metric})"
        return "full", reason
    ours, theirs = settings_only(index_params), settings_only(live.index_params or {})
    if ours.get("lexical") != theirs.get("lexical"):
        change = "added" if ours.get("lexical") and not theirs.get("lexical") else "changed"
        change = "removed" if not ours.get("lexical") else change
        return "full", f"lexical index {change}: every document is read again for its terms"
    if metric != live.metric or ours != theirs:
        return "copy", "same model, new index settings: vectors are copied, not re-embedded"
    return "noop", f"{collection} already serves {model.label} with these settings"


def gather_inputs(
    ws: Workspace,
    collection: str,
    model_path: str | None = None,
    model_ref: str | None = None,
    settings: ModelSettings | None = None,
    model_name: str | None = None,
    source: SourceSpec | None = None,
    metric: str | None = None,
    index_params: dict[str, Any] | None = None,
    gate: str | None = None,
    estimate: bool = True,
    training: dict[str, Any] | None = None,
    vector_name: str | None = None,
    lexical: str | None = None,
) -> PlanInputs:
    """Read and check what a plan needs; every bad input is refused here, before anything is written.

    The backend's own rules (``Backend.validate_collection_name``, ``validate_doc_ids``,
    ``validate_metric``) are checked before the store is opened or the source read.
    ``training`` holds the facts a new model version is registered with (base_model,
    train_data, run_id). ``vector_name``, where given, must be the vector the live
    version embeds into (recorded when it was adopted): a plan re-embeds that one.
    ``lexical`` ("bm25" or "none") adds or removes the version's stored BM25 index; by default
    a new version keeps the live version's.
    """
    backend = ws.backend
    backend.validate_collection_name(collection)
    if metric is not None:
        backend.validate_metric(metric)
    if index_params:  # an ANN index the backend does not build is refused before the model is even read
        check_ann_index(index_params, backend.ann_indexes, backend.name)
    early = inspect_model_early(ws, model_path, model_name, settings, training)
    state = ws.state
    lc = state.get_collection(ws.store_url, collection)
    live = live_version(ws, lc, collection)
    if source is None and live is None:
        raise NotFoundError(
            f"unknown collection {collection!r} in {ws.store_url}",
            hint="check the name (`reindex status` lists collections), or pass --source jsonl:FILE to create it",
        )
    model = early or model_to_plan(ws, live, model_path, model_ref, model_name, settings, training)
    text_field = (source.text_field if source else None) or (lc.text_field if lc else "text")
    if source is None:
        source = SourceSpec(kind="payload", text_field=text_field)
    if live is not None:
        refuse_stale_sparse(ws.store, live.physical_name, source)

    vector = managed_vector(ws, collection, live, vector_name)
    live_model = state.model_of(live) if live else None
    metric, index_params = index_settings(ws, collection, live, model, metric, index_params)
    index_params = lexical_settings(ws, collection, live, index_params, lexical)
    mode, reason = choose_mode(collection, live, live_model, model, metric, index_params)

    live_count = ws.store.count(live.physical_name) if live else None
    docs, sample, payload_bytes = scan_source(ws, source, live, mode)
    check_documents(source, docs, mode)
    index_params = measure_lexical(ws, source, live, mode, index_params)
    number = _next_version_number(ws, lc, collection, mode)
    est = (
        estimate_work(ws, model, mode, docs, sample, payload_bytes, live_count, metric, index_params)
        if estimate
        else {"seconds": 0.0}
    )
    return PlanInputs(
        collection=collection,
        store_url=ws.store_url,
        state_store_id=state.store_id,
        text_field=text_field,
        live=live,
        live_model=live_model,
        live_count=live_count,
        model=model,
        source=source,
        metric=metric,
        index_params=index_params,
        mode=mode,
        reason=reason,
        source_docs=docs,
        next_version=number,
        gate=gate,
        estimate=est,
        fingerprinted=inputs_of(ws, collection, live, model, source, metric, index_params),
        vector=vector,
    )


def _next_version_number(ws: Workspace, lc: LogicalCollection | None, collection: str, mode: str) -> int:
    """The next version's number: past every recorded one and every ``NAME__vN`` the store already holds."""
    number = ws.state.next_version_number(saved_id(lc)) if lc is not None else 1
    while ws.store.collection_exists(physical_name(collection, number)):
        number += 1
    if mode != "noop":
        ws.backend.validate_collection_name(physical_name(collection, number), "version collection")
    return number


def decide(inputs: PlanInputs, plan_id: str | None = None, created_at: str | None = None) -> Plan:
    """The plan for ``inputs``: what must change, as data. Pure: reads nothing, writes nothing."""
    i = inputs
    counts = {"source_docs": i.source_docs, "to_embed": 0, "to_copy": 0, "to_delete": 0}
    if i.mode == "full":
        counts["to_embed"] = i.source_docs
    elif i.mode == "copy":
        counts["to_copy"] = i.live_count or 0
    if i.mode == "noop" and i.live is not None:  # noop: the live version already is what the plan asks for
        to_version = _version_summary(i.live, i.model, i.live_count)
    else:
        to_version = {
            "version": i.next_version,
            "physical": physical_name(i.collection, i.next_version),
            "model": i.model.label,
            "model_fingerprint": i.model.fingerprint,
            "model_path": i.model.path,
            "dim": i.model.dim,
            "metric": i.metric,
            "index_params": i.index_params,
            "vector": i.vector,
        }
    return Plan(
        id=plan_id or uuid.uuid4().hex,
        state_store_id=i.state_store_id,
        created_at=created_at or iso(utcnow()),
        collection=i.collection,
        store=i.store_url,
        mode=i.mode,
        reason=i.reason,
        from_version=_version_summary(i.live, i.live_model, i.live_count) if i.live and i.live_model else None,
        to_version=to_version,
        source=i.source.to_dict(),
        counts=counts,
        dimension_change=bool(i.live and i.live.dim != i.model.dim),
        estimate=i.estimate,
        gate=i.gate,
        inputs_fingerprint=hash_inputs(i.fingerprinted),
        inputs=i.fingerprinted,
    )


def record_plan(ws: Workspace, plan: Plan, inputs: PlanInputs) -> Plan:
    """The doing half of planning: register the model, the collection and the plan, and audit it."""
    state = ws.state
    save_model(state, inputs.model)
    lc = state.ensure_collection(ws.store_url, plan.collection, text_field=inputs.text_field)
    state.save(
        PlanRecord(
            id=plan.id, collection_id=lc.id, inputs_fingerprint=plan.inputs_fingerprint, body=json.loads(plan.to_json())
        )
    )
    state.audit(
        "plan",
        plan.collection,
        plan_fingerprint=plan.inputs_fingerprint,
        plan_id=plan.id,
        mode=plan.mode,
        reason=plan.reason,
    )
    return plan


def check_recorded(ws: Workspace, plan: Plan) -> None:
    """Refuse a plan made against another state store or store, or one not recorded in this state as it is.

    Reads only: `apply` calls it before it takes the lease, so a forged or edited plan file is refused
    before anything is written, and a "noop" plan is not taken on its word.
    """
    state = ws.state
    if plan.state_store_id != state.store_id:
        raise UsageError(
            f"plan {plan.id[:12]} was made against another state store",
            hint=f"make a new plan against this one ({ws.config.state_url})",
        )
    record = state.get_plan(plan.id)
    if record is None:
        raise UsageError(f"plan {plan.id[:12]} is not recorded in this state store", hint="make a new plan")
    if record.body != json.loads(plan.to_json()):
        raise UsageError(
            f"plan {plan.id[:12]} was edited after it was made", hint="make a new plan instead of editing one"
        )
    if plan.store != ws.store_url:
        raise UsageError(
            f"plan {plan.id[:12]} is for store {plan.store}, not {ws.store_url}", hint="pass --store to match"
        )


def check_plan(ws: Workspace, plan: Plan) -> tuple[LogicalCollection, IndexVersion | None, ModelVersion]:
    """Refuse a plan from another state store, an edited plan, or one whose inputs drifted."""
    check_recorded(ws, plan)
    state = ws.state
    lc = state.get_collection(ws.store_url, plan.collection)
    if lc is None:  # saving the plan registered it, so it was forgotten since
        raise NotFoundError(f"plan {plan.id[:12]} is for {plan.collection}, which this state store no longer knows")
    live = live_version(ws, lc, plan.collection)
    model = state.get_model(plan.to_version["model_fingerprint"])
    if model is None:
        raise UsageError(f"plan {plan.id[:12]} names a model this state store has not registered")
    source = SourceSpec.from_dict(plan.source)
    now = inputs_of(
        ws, plan.collection, live, model, source, plan.to_version["metric"], plan.to_version["index_params"]
    )
    if hash_inputs(now) != plan.inputs_fingerprint:
        changed = sorted(k for k in now if now[k] != plan.inputs.get(k))
        raise DriftError(
            f"plan {plan.id[:12]} is out of date: {', '.join(changed) or 'inputs'} changed since it was made",
            hint=f"make a new plan with `reindex plan {plan.collection} ...`",
        )
    require_unchanged(model)  # a fingerprint check: the weights load only when a batch needs embedding
    return lc, live, model
