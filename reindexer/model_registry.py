"""Registering model versions in the state store."""

from __future__ import annotations

import os

from reindexer.embedding import (
    Embedder,
    ModelSettings,
    check_model_folder,
    fingerprint,
    fingerprint_matches,
    inspect_model,
)
from reindexer.errors import UsageError
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
    model, changed = model_at(state, path, name, settings, base_model, train_data, run_id)
    if not changed:
        return model
    return state.save_model(model) if state.get_model(model.fingerprint) is None else state.save(model)


def model_at(
    state: StateStore,
    path: str | os.PathLike,
    name: str | None = None,
    settings: ModelSettings | None = None,
    base_model: str | None = None,
    train_data: str | None = None,
    run_id: str | None = None,
) -> tuple[ModelVersion, bool]:
    """The model version at ``path`` and whether the state lacks it as it is; nothing is written.

    Commands that must leave the state untouched when they fail (adopt) check with
    this first and register only once every check has passed.
    """
    settings = settings or ModelSettings()
    root = check_model_folder(path)
    fp = fingerprint(root, settings)
    existing = state.get_model(fp)
    if existing is not None:
        if existing.path != str(root) and not os.path.isdir(existing.path):
            # The same bytes moved: keep the registration usable from the new place.
            existing.path = str(root)
            return existing, True
        return existing, False
    info = inspect_model(root, settings, name)
    return (
        ModelVersion(
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
        ),
        True,
    )


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
