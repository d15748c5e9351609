"""Registering model versions in the state store."""

from __future__ import annotations

import os

from reindexer.embedding import Embedder, inspect_model
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings, check_model_folder, fingerprint, fingerprint_matches
from reindexer.state import ModelVersion, StateStore


def register_model(
    state: StateStore,
    path: str | os.PathLike,
    name: str | None = None,
    settings: ModelSettings | None = None,
    base_model: str | None = None,
    train_data: str | None = None,
    run_id: str | None = None,
) -> ModelVersion:
    """Register (idempotently) the model version at ``path`` with ``settings``."""
    model = describe_model(
        state, path, name=name, settings=settings, base_model=base_model, train_data=train_data, run_id=run_id
    )
    return save_model(state, model)


def describe_model(
    state: StateStore | None,
    path: str | os.PathLike,
    name: str | None = None,
    settings: ModelSettings | None = None,
    base_model: str | None = None,
    train_data: str | None = None,
    run_id: str | None = None,
) -> ModelVersion:
    """The model version at ``path``: the registered row when its fingerprint is known, else a new,
    unsaved one (the weights are loaded to learn its dimension). Writes nothing."""
    settings = settings or ModelSettings()
    root = check_model_folder(path)
    existing = state.get_model(fingerprint(root, settings)) if state is not None else None
    if existing is not None:
        if existing.path != str(root) and not os.path.isdir(existing.path):
            existing.path = str(root)  # the same bytes moved: save_model keeps it usable from the new place
        return existing
    info = inspect_model(root, settings, name)
    return ModelVersion(
        fingerprint=info.fingerprint,
        name=info.name,
        path=info.path,
        dim=info.dim,
        similarity=info.similarity,
        max_seq_length=info.max_seq_length,
        settings=settings.to_dict(),
        base_model=base_model,
        train_data=train_data,
        run_id=run_id,
    )


def save_model(state: StateStore, model: ModelVersion) -> ModelVersion:
    """Record a model version ``describe_model`` returned: a new one, or a known one that moved."""
    existing = state.get_model(model.fingerprint)
    if existing is None:
        return state.save_model(model)
    if existing.path != model.path:
        existing.path = model.path
        return state.save(existing)
    return existing


def embedder_for(model: ModelVersion, device: str | None = None, batch_size: int | None = None) -> Embedder:
    """An embedder for a registered model version, refusing one whose files changed since."""
    require_unchanged(model)
    return Embedder(model.path, ModelSettings.from_dict(model.settings), device=device, batch_size=batch_size)


def require_unchanged(model: ModelVersion) -> None:
    """Refuse a registered model whose folder is gone or whose files changed, without loading its weights."""
    settings = ModelSettings.from_dict(model.settings)
    if not os.path.isdir(model.path):
        raise UsageError(
            f"model {model.label} was registered from {model.path}, which no longer exists",
            hint="restore the folder or register the model again from its new place",
        )
    if not fingerprint_matches(model.path, settings, model.fingerprint):
        raise UsageError(
            f"the files of model {model.label} at {model.path} changed since it was registered",
            hint="a retrained model is a new version: save it to a new folder and plan again",
        )
