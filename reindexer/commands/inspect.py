"""The verbs that read or keep the tool's records: status, history, model_register, model_list, upgrade_state.

status and history reconcile read-only (repairs are recorded when the lease is free, else only
shown) and change nothing in the store. The model registry itself is reindexer.model_registry;
the state database's schema revisions are reindexer.state.
"""

from __future__ import annotations

from typing import Any

from reindexer.errors import NotFoundError
from reindexer.lookup import managed_collection as _collection
from reindexer.model_identity import ModelSettings, check_model_folder
from reindexer.model_registry import register_model
from reindexer.reconcile import reconcile_readonly
from reindexer.state import IndexVersion, ModelVersion
from reindexer.state.models import iso, saved_id
from reindexer.workspace import Workspace

SHADOW_STATUSES = ("building", "built", "verified", "evaluated")


# -- models -------------------------------------------------------------------
def model_register(
    ws: Workspace, path: str, name: str | None = None, settings: ModelSettings | None = None, **training: Any
) -> ModelVersion:
    check_model_folder(path)  # a path that is no model leaves no new state behind
    model = register_model(ws.state, path, name=name, settings=settings, **training)
    ws.state.audit("model-register", None, model=model.label, path=model.path)
    return model


def model_list(ws: Workspace) -> list[ModelVersion]:
    return ws.state.list_models()


# -- status and history -------------------------------------------------------
def _version_row(ws: Workspace, v: IndexVersion) -> dict[str, Any]:
    model = ws.state.get_model(v.model_fingerprint)
    return {
        "version": v.version,
        "physical": v.physical_name,
        "status": v.status,
        "model": model.label if model else v.model_fingerprint[:12],
        "dim": v.dim,
        "metric": v.metric,
        "count": v.point_count,
        "created_at": iso(v.created_at),
        "live_since": iso(v.live_since),
    }


def status(ws: Workspace, collection: str | None = None) -> list[dict[str, Any]]:
    store = ws.require_store()
    managed = ws.state.list_collections(ws.store_url)
    if collection is not None:
        managed = [c for c in managed if c.name == collection]
        if not managed:
            if store.resolve(collection) is not None:
                return [{"collection": collection, "managed": False, "live": store.resolve(collection)}]
            raise NotFoundError(f"unknown collection {collection!r} in {ws.store_url}")
    out = []
    known_physical: set[str] = set()
    for lc in managed:
        # What the store says wins; repairs are recorded when the lease is free, else only shown.
        rec = reconcile_readonly(ws, lc, "status")
        versions = rec.view(ws.state.versions(saved_id(lc)))
        known_physical.update(v.physical_name for v in versions)
        target = store.resolve(lc.name)
        live = next((v for v in versions if v.physical_name == target), None)
        row: dict[str, Any] = {
            "collection": lc.name,
            "managed": True,
            "live": None,
            "shadows": [_version_row(ws, v) for v in versions if v.status in SHADOW_STATUSES],
            "retired": [_version_row(ws, v) for v in versions if v.status == "retired"],
            "repairs": rec.messages(),
        }
        if live is not None:
            row["live"] = _version_row(ws, live)
            row["live"]["count"] = store.count(live.physical_name)
            info = store.describe(live.physical_name)
            row["live"]["tagged_model"] = info.metadata.get("reindex.model")
            # the ANN index a store built after the load (pgvector): kind, settings, rows, seconds
            row["live"]["ann_index"] = info.ann_index or None
        out.append(row)
    if collection is None:
        aliases = store.list_aliases()
        for name in store.list_collections():
            if name not in known_physical and name not in aliases.values():
                out.append({"collection": name, "managed": False, "live": name})
    return out


def history(ws: Workspace, collection: str, limit: int = 50) -> dict[str, Any]:
    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "history")
    return {
        "collection": collection,
        "versions": [_version_row(ws, v) for v in ws.state.versions(saved_id(lc))],
        "events": [
            {
                "at": iso(e.at),
                "action": e.action,
                "result": e.result,
                "user": e.user,
                "host": e.host,
                "plan_fingerprint": e.plan_fingerprint,
                "detail": e.detail,
            }
            for e in ws.state.history(collection, limit)
        ],
    }


def upgrade_state(state: str | None = None, cwd: Any = None) -> Any:
    """`reindex state upgrade`: the configured (or given) state database to this release's schema revision."""
    from reindexer.config import load_config
    from reindexer.state import StateStore

    config = load_config(state_url=state, cwd=cwd)
    return StateStore.upgrade(config.state_url, config.base_dir)
