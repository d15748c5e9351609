"""adopt, forget and migrate: taking on a collection made outside the tool, and letting one go.

adopt tags a collection with the model that made it after checking a sample of its vectors
(every check before the first write); forget drops only the tool's records of a collection;
migrate moves a collection that applications query by its real name behind an alias of that
name (copy, verify, drop, alias). Building new versions is reindexer.commands.applying.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reindexer import policy
from reindexer.adapters.base import DOC_ID_KEY, META_VECTOR, MODEL_KEY
from reindexer.build.steps import (
    copy_into,
    create_physical,
    finish_run,
    start_run,
    version_metadata,
)
from reindexer.build.verify import require_verified, verify_version
from reindexer.commands._shared import ConfirmFn, always_confirm
from reindexer.errors import ConflictError, NotFoundError, UsageError, VerificationError
from reindexer.killpoints import kill_point
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.model_identity import ModelSettings
from reindexer.model_registry import describe_model, embedder_for
from reindexer.planner import physical_name
from reindexer.reconcile import liveness_changes, new_intent, pending_key, reconcile
from reindexer.runtimes import reembed_min_cosine
from reindexer.sampling import Reservoir
from reindexer.sources.base import content_hash, extract_text
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion
from reindexer.state.models import saved_id, utcnow
from reindexer.vectors import cosine_rows
from reindexer.workspace import Workspace


# -- adopt --------------------------------------------------------------------
def adopt(
    ws: Workspace,
    collection: str,
    model_path: str,
    settings: ModelSettings | None = None,
    text_field: str | None = None,
    sample: int = 32,
    min_cosine: float | None = None,
    name: str | None = None,
    seed: int = 0,
    vector_name: str | None = None,
) -> dict[str, Any]:
    """Tag a collection made outside the tool with the model that made it, after checking a sample.

    All or nothing: every check runs before the first write; the store is written
    next (the tags, then the collection's metadata; a failure there takes the tags
    back off), and the state last, in one transaction. A crash between the two
    leaves tags and metadata without records, which running adopt again completes.

    ``vector_name`` (default: ``[collections.NAME] vector_name``) names the dense vector
    the model made, in a collection with several; the metadata records it, and every
    later version re-embeds, verifies and searches that one.
    """
    text_field = text_field or policy.configured_text_field(ws.config, collection) or policy.DEFAULT_TEXT_FIELD
    vector_name = policy.vector_name(ws.config, collection, vector_name)
    store = ws.store
    physical = store.resolve(collection)
    if physical is None:
        raise NotFoundError(f"unknown collection {collection!r} in {ws.store_url}")
    _refuse_if_managed(ws, collection, physical)
    if vector_name is None:
        return _adopt(ws, collection, physical, model_path, settings, text_field, sample, min_cosine, name, seed)
    store.use_vector(physical, vector_name)  # a name the collection lacks is refused here, listing its vectors
    try:
        return _adopt(ws, collection, physical, model_path, settings, text_field, sample, min_cosine, name, seed)
    except BaseException:
        store.use_vector(physical, None)  # the store's metadata still says what it said
        raise


def _adopt(
    ws: Workspace,
    collection: str,
    physical: str,
    model_path: str,
    settings: ModelSettings | None,
    text_field: str,
    sample: int,
    min_cosine: float | None,
    name: str | None,
    seed: int,
) -> dict[str, Any]:
    store = ws.store
    info = store.describe(physical)
    model = _model_matching(ws, collection, info, model_path, name, settings)
    if min_cosine is None:
        min_cosine = reembed_min_cosine(ModelSettings.from_dict(model.settings))
    # A seeded reservoir over one pass: the sample without holding every id of the collection.
    reservoir: Reservoir[str] = Reservoir(sample, seed)
    for page in store.scroll(physical, batch_size=ws.batch_size):
        for p in page:
            reservoir.offer(p.doc_id)
    if not reservoir.met:
        raise UsageError(f"{collection} is empty: there is nothing to compare the model against")
    cos = _sample_cosines(ws, physical, model, reservoir.chosen, text_field, min_cosine)
    with ws.lease(collection):
        _refuse_if_managed(ws, collection, physical)  # another adopt may have finished meanwhile
        lc = ws.state.get_collection(ws.store_url, collection) or LogicalCollection(
            store_url=ws.store_url, name=collection, text_field=text_field
        )
        version = _adopted_version(lc, collection, physical, model, info, reservoir.met)
        per_point = store.holds_point_tags(physical)
        rows, tagged = _tag_points(ws, physical, model, text_field, per_point)
        _write_metadata_or_untag(ws, physical, tagged, _adopted_metadata(lc, version, model, text_field, info))
        kill_point("adopt-before-record")
        found = {
            "model": model.label,
            "physical": physical,
            "sample": len(cos),
            "min_cosine": float(cos.min()),
            "tagged": len(tagged),
            "tag": "point" if per_point else "collection",
            "vector": info.vector,
        }
        version = ws.state.record_adoption(ws.store_url, collection, text_field, model, version, rows, found)
        return {
            "collection": collection,
            "physical": physical,
            "model": model.label,
            "version": version.version,
            "sample": len(cos),
            "min_cosine": round(float(cos.min()), 5),
            "points_tagged": len(tagged),
            "tag": found["tag"],
            "vector": info.vector,
        }


def _model_matching(
    ws: Workspace, collection: str, info: Any, model_path: str, name: str | None, settings: ModelSettings | None
) -> ModelVersion:
    """The model at ``model_path`` (not registered yet), refused unless it makes the collection's dimension."""
    model = describe_model(ws.state, model_path, name=name, settings=settings)
    if info.dim != model.dim:
        raise VerificationError(
            f"{collection} holds {info.dim}-dimensional vectors but {model.label} makes {model.dim}",
            hint="adopt it with the model that made it",
        )
    return model


def _adopted_version(
    lc: LogicalCollection, collection: str, physical: str, model: ModelVersion, info: Any, count: int
) -> IndexVersion:
    """The live version the adopted collection becomes (saved with the adoption's other records)."""
    return IndexVersion(
        collection_id=lc.id or 0,
        version=_version_number_of(physical, collection),
        physical_name=physical,
        model_fingerprint=model.fingerprint,
        dim=info.dim,
        metric=info.metric,
        index_params=info.index_params,
        status="live",
        live_since=utcnow(),
        point_count=count,
    )


def _adopted_metadata(
    lc: LogicalCollection, version: IndexVersion, model: ModelVersion, text_field: str, info: Any
) -> dict[str, Any]:
    metadata = version_metadata(lc, version, model, text_field)
    if info.vector:
        metadata[META_VECTOR] = info.vector
    return metadata


def _write_metadata_or_untag(ws: Workspace, physical: str, tagged: list[tuple[str, Any]], metadata: dict) -> None:
    """The collection's metadata; a failure takes the points' new tags back off before it is raised."""
    try:
        ws.store.set_metadata(physical, metadata)
    except BaseException:
        _untag_points(ws, physical, tagged)
        raise


def _refuse_if_managed(ws: Workspace, collection: str, physical: str) -> None:
    lc = ws.state.get_collection(ws.store_url, collection)
    if lc is not None and ws.state.version_by_physical(saved_id(lc), physical) is not None:
        raise ConflictError(
            f"{collection} is already managed by reindexer",
            hint=f"see `reindex status {collection}`; `reindex forget {collection}` drops the tool's records of it",
        )


def _sample_cosines(
    ws: Workspace,
    physical: str,
    model: ModelVersion,
    chosen: list[str],
    text_field: str,
    min_cosine: float,
) -> np.ndarray:
    """Re-embed the chosen points' stored texts; refuse unless each matches its stored vector."""
    points = ws.store.retrieve(physical, chosen, with_vectors=True)
    texts, vectors, missing = [], [], []
    for p in points:
        text = extract_text(p.payload, text_field)
        if text is None:
            missing.append(p.doc_id)
            continue
        texts.append(text)
        vectors.append(p.vector)
    if missing:
        raise UsageError(
            f"{len(missing)} of {len(points)} sampled points have no text under {text_field!r} "
            f"(e.g. {', '.join(missing[:3])})",
            hint="pass --text-field with the payload path that holds the text, e.g. page_content",
        )
    fresh = embedder_for(model, device=ws.config.device, batch_size=ws.embed_batch_size).embed_documents(texts)
    cos = cosine_rows(np.asarray(vectors), fresh)
    bad = int((cos < min_cosine).sum())
    if bad:
        raise VerificationError(
            f"{bad} of {len(cos)} sampled vectors of {physical} do not match {model.label} "
            f"(cosine min {cos.min():.3f}, needs {min_cosine}): it was made by another model, or by several",
            hint="adopt it with the model that made it; a mixed collection needs a full re-index from its text",
        )
    return cos


def _version_number_of(physical: str, collection: str) -> int:
    prefix = f"{collection}__v"
    if physical.startswith(prefix) and physical[len(prefix) :].isdigit():
        return int(physical[len(prefix) :])
    return 1


def _tag_points(
    ws: Workspace, physical: str, model: ModelVersion, text_field: str, per_point: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    """Ledger rows for every stored point, and (doc id, earlier tag) of each point tagged here.

    A failure part-way takes the tags written so far back off before it is raised.
    """
    rows: list[tuple[str, str]] = []
    tagged: list[tuple[str, Any]] = []
    try:
        for page in ws.store.scroll(physical, batch_size=ws.batch_size, with_vectors=per_point):
            todo = []
            for p in page:
                payload = {k: v for k, v in p.payload.items() if k not in (MODEL_KEY, DOC_ID_KEY)}
                text = extract_text(payload, text_field)
                if text is not None:  # the same hash PayloadSource computes, so the first sync skips it
                    rows.append((p.doc_id, content_hash(text, payload)))
                if per_point and p.payload.get(MODEL_KEY) != model.short:
                    todo.append(p)
            if todo:
                before = [(p.doc_id, p.payload.get(MODEL_KEY)) for p in todo]
                ws.store.set_payload_key(physical, todo, MODEL_KEY, model.short)
                tagged.extend(before)
    except BaseException:
        _untag_points(ws, physical, tagged)
        raise
    return rows, tagged


def _untag_points(ws: Workspace, physical: str, tagged: list[tuple[str, Any]]) -> None:
    """Put back the tag each point had before adopt (none, mostly)."""
    by_tag: dict[Any, list[str]] = {}
    for doc_id, tag in tagged:
        by_tag.setdefault(tag, []).append(doc_id)
    for tag, doc_ids in by_tag.items():
        for i in range(0, len(doc_ids), ws.batch_size):
            points = ws.store.retrieve(physical, doc_ids[i : i + ws.batch_size], with_vectors=True)
            ws.store.set_payload_key(physical, points, MODEL_KEY, tag)


# -- forget -------------------------------------------------------------------
def forget(ws: Workspace, collection: str, confirm: ConfirmFn = always_confirm) -> dict[str, Any]:
    """Remove the tool's records of a collection (versions, ledgers, plans); the store is not touched.

    For a collection adopted by mistake, or one whose records no longer match its
    store. Its collections, aliases, points and tags stay as they are; adopt can
    take it on again.
    """
    lc = _collection(ws, collection)
    versions = ws.state.versions(saved_id(lc))
    names = [v.physical_name for v in versions]
    if not confirm(
        f"Forget {collection} ({len(names)} version(s): {', '.join(names) or 'none'})? reindexer drops its "
        "records of it; the store keeps every collection, alias and point as it is."
    ):
        return {"collection": collection, "forgotten": False, "versions": names}
    with ws.lease(collection):
        ws.state.forget_collection(saved_id(lc), pending_key(ws.store_url, collection), {"versions": names})
    in_store = set(ws.store.list_collections())
    return {
        "collection": collection,
        "forgotten": True,
        "versions": names,
        "left_in_store": [n for n in names if n in in_store],
    }


# -- migrate ------------------------------------------------------------------
def migrate(ws: Workspace, collection: str, confirm: ConfirmFn = always_confirm) -> dict[str, Any]:
    """Move a collection that applications query by its real name behind an alias of that name.

    No alias can take the name of an existing collection, so: copy it (vectors,
    no re-embedding) into ``NAME__vN``, verify the copy, drop the original and
    create the alias. Between the drop and the alias the name resolves to
    nothing; the result reports how long that gap lasted.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "migrate")  # a migrate killed between the drop and the alias is finished here
        done = rec.completed("migrate")
        if done is not None:
            return _completed_migration(ws, lc, done, rec.messages())
        source, model = _migration_source(ws, lc)
        target, copied = _copy_original(ws, lc, source, model)
        ws.renew(lease)
        target, count = _verify_copy(ws, lc, target, model)
        if not confirm(f"Drop collection {collection} and replace it by an alias to {target.physical_name}?"):
            return {"collection": collection, "copied_to": target.physical_name, "migrated": False}
        gap_ms = _replace_by_alias(ws, lc, source, target, copied)
        kill_point("migrate-after-alias")
        _record_migration(ws, lc, source, target, copied, gap_ms, count)
        return {
            "collection": collection,
            "copied_to": target.physical_name,
            "migrated": True,
            "copied": copied,
            "name_missing_ms": round(gap_ms, 1),
        }


def _completed_migration(ws: Workspace, lc: LogicalCollection, done: Any, repairs: list[dict[str, Any]]) -> dict:
    target = find_version(ws, lc, str(done.version))
    return {
        "collection": lc.name,
        "copied_to": target.physical_name,
        "migrated": True,
        "completed": True,
        "copied": done.detail.get("copied"),
        "name_missing_ms": done.detail.get("gap_ms"),
        "repairs": repairs,
    }


def _migration_source(ws: Workspace, lc: LogicalCollection) -> tuple[IndexVersion, ModelVersion]:
    """The adopted version that is the collection itself, and its model; refused unless it can be copied."""
    collection = lc.name
    if not ws.store.collection_exists(collection):
        raise ConflictError(f"{collection} is already an alias (or missing): nothing to migrate")
    source = ws.state.version_by_physical(saved_id(lc), collection)
    if source is None:
        raise ConflictError(f"{collection} is not adopted", hint=f"`reindex adopt {collection} --model PATH` first")
    ws.store.check_copyable(collection)
    return source, ws.state.model_of(source)


def _copy_original(
    ws: Workspace, lc: LogicalCollection, source: IndexVersion, model: ModelVersion
) -> tuple[IndexVersion, int]:
    """A new version ``NAME__vN`` holding a copy of the collection's points (vectors, no re-embedding)."""
    number = max(ws.state.next_version_number(saved_id(lc)), source.version + 1)
    target = ws.state.save(
        IndexVersion(
            collection_id=lc.id,
            version=number,
            physical_name=physical_name(lc.name, number),
            model_fingerprint=model.fingerprint,
            dim=source.dim,
            metric=source.metric,
            index_params=source.index_params,
            status="building",
        )
    )
    create_physical(ws, lc, target, model, like=lc.name)
    run = start_run(ws, target, "copy")
    stats = copy_into(ws, source, target, model, run, text_field=lc.text_field)
    # Writes that landed in the original during the copy: copy again until nothing is new.
    stats.add(copy_into(ws, source, target, model, run, text_field=lc.text_field))
    finish_run(ws, run)
    return target, stats.copied


def _verify_copy(
    ws: Workspace, lc: LogicalCollection, target: IndexVersion, model: ModelVersion
) -> tuple[IndexVersion, int]:
    """The copy checked against the original's ids and recorded verified; with its point count."""
    original_ids = {p.doc_id for page in ws.store.scroll(lc.name, batch_size=ws.batch_size) for p in page}
    report = verify_version(ws, lc, target, model, original_ids)
    require_verified(
        report,
        f"the copy {target.physical_name}",
        f"`reindex verify {lc.name} --version {target.version} --fix` repairs it",
    )
    return ws.state.set_status(target, "verified", point_count=report.store_count), report.store_count


def _replace_by_alias(
    ws: Workspace, lc: LogicalCollection, source: IndexVersion, target: IndexVersion, copied: int
) -> float:
    """Drop the original and point an alias of its name at the copy; how long the name resolved to nothing (ms):
    none where the store does both in one step (``VectorStore.replace_by_alias``)."""
    ws.store.advance_generated_ids(target.physical_name)  # before applications insert into the copy
    # Recorded before the drop: whatever command comes after a crash in the gap makes the alias.
    ws.state.set_pending(
        pending_key(ws.store_url, lc.name),
        new_intent("migrate", "migrate", target, source, False, {"to": target.physical_name, "copied": copied}),
    )
    if ws.store.replace_by_alias(lc.name, target.physical_name):  # one transaction on PostgreSQL: no gap
        return 0.0
    started = time.perf_counter()
    ws.store.drop_collection(lc.name)
    kill_point("migrate-after-drop")
    ws.store.set_alias(lc.name, target.physical_name)
    return (time.perf_counter() - started) * 1000


def _record_migration(
    ws: Workspace,
    lc: LogicalCollection,
    source: IndexVersion,
    target: IndexVersion,
    copied: int,
    gap_ms: float,
    count: int,
) -> None:
    """The copy live, the original recorded dropped, the audit entry and the intent cleared: one transaction."""
    changes, drops = liveness_changes(
        ws.state.versions(saved_id(lc)), target, source, "migrate", False, count, utcnow()
    )
    detail = {"to": target.physical_name, "copied": copied, "gap_ms": round(gap_ms, 1)}
    ws.state.transition(
        changes, [("migrate", lc.name, "ok", None, detail)], drops, clear_pending=pending_key(ws.store_url, lc.name)
    )
