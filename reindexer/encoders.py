"""The query encoder of an index version, rebuilt from that version's own collection metadata.

Vectors of two models live in different spaces, so a query must be encoded by the
model version that made the index it searches. Each physical collection therefore
records everything needed to rebuild that encoder: where the model's files are,
their fingerprint, and every setting that changes vectors (prompts, truncation,
normalisation, maximum sequence length). An application needs the store and the
model files, not the state database.

The files are checked against the recorded fingerprint (hashed once per process,
again only when a cheap stat signature changes), so a folder that was retrained in
place, or a models mount that holds other bytes, is refused rather than used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reindexer.embedding import Embedder
from reindexer.errors import NotFoundError, UsageError
from reindexer.model_identity import ModelSettings, fingerprint_matches

META_LOGICAL = "reindex.logical"
META_VERSION = "reindex.version"
META_MODEL = "reindex.model"
META_FINGERPRINT = "reindex.fingerprint"
META_MODEL_NAME = "reindex.model_name"
META_MODEL_PATH = "reindex.model_path"
META_MODEL_SETTINGS = "reindex.model_settings"
META_DIM = "reindex.dim"
META_METRIC = "reindex.metric"
META_TEXT_FIELD = "reindex.text_field"

MODELS_ROOT_ENV = "REINDEX_MODELS"


def model_metadata(model: Any) -> dict[str, str]:
    """The metadata keys that let any process rebuild ``model``'s encoder (a ModelVersion)."""
    return {
        META_MODEL: model.label,
        META_FINGERPRINT: model.fingerprint,
        META_MODEL_NAME: model.name,
        META_MODEL_PATH: model.path,
        META_MODEL_SETTINGS: json.dumps(ModelSettings.from_dict(model.settings).to_dict(), sort_keys=True),
        META_DIM: str(model.dim),
    }


@dataclass(frozen=True)
class EncoderSpec:
    """What a physical collection says about the model that must encode its queries."""

    physical: str
    fingerprint: str
    label: str
    path: str
    settings: ModelSettings
    dim: int
    metric: str
    text_field: str
    logical: str | None = None
    version: int | None = None

    @property
    def short(self) -> str:
        return self.fingerprint[:12]

    @classmethod
    def from_metadata(
        cls, physical: str, metadata: dict[str, str], dim: int, metric: str, state: Any = None
    ) -> EncoderSpec:
        """Read the spec from a collection's metadata; ``state`` fills in what older tags lack."""
        fp = metadata.get(META_FINGERPRINT)
        if not fp:
            raise NotFoundError(
                f"{physical} carries no model tag, so no query encoder can be chosen for it",
                hint="tag it with `reindex adopt NAME --model PATH`",
            )
        path = metadata.get(META_MODEL_PATH)
        raw_settings = metadata.get(META_MODEL_SETTINGS)
        label = metadata.get(META_MODEL) or fp[:12]
        if raw_settings is None or not path:
            # Versions tagged before the settings were recorded: the state store knows the model.
            model = state.get_model(fp) if state is not None else None
            if model is None:
                raise NotFoundError(
                    f"{physical} records model {label} without its settings, and no state store that knows "
                    "it was given",
                    hint="pass the state store (REINDEX_STATE or state=), or re-tag the version with a "
                    "current reindexer (`reindex verify --fix`)",
                )
            path = path or model.path
            settings = ModelSettings.from_dict(model.settings)
        else:
            try:
                settings = ModelSettings.from_dict(json.loads(raw_settings))
            except (ValueError, TypeError):
                raise UsageError(f"{physical}: unreadable {META_MODEL_SETTINGS} {raw_settings!r}") from None
        version = metadata.get(META_VERSION)
        return cls(
            physical=physical,
            fingerprint=fp,
            label=label,
            path=path,
            settings=settings,
            dim=dim,
            metric=metric,
            text_field=metadata.get(META_TEXT_FIELD) or "text",
            logical=metadata.get(META_LOGICAL),
            version=int(version) if version and version.isdigit() else None,
        )


def models_roots(models_root: str | os.PathLike | None = None) -> list[tuple[str | None, Path]]:
    """Parsed ``models_root`` (or REINDEX_MODELS): entries separated by ``os.pathsep``.

    ``/srv/models`` is a root that recorded paths are looked up under by their trailing
    parts; ``/data/models=/mnt/models`` maps one recorded prefix onto another.
    """
    raw = str(models_root) if models_root is not None else os.environ.get(MODELS_ROOT_ENV, "")
    out: list[tuple[str | None, Path]] = []
    for entry in filter(None, (e.strip() for e in raw.split(os.pathsep))):
        if "=" in entry:
            old, new = entry.split("=", 1)
            out.append((old.rstrip("/") or "/", Path(new).expanduser()))
        else:
            out.append((None, Path(entry).expanduser()))
    return out


def locate_model(recorded: str, models_root: str | os.PathLike | None = None) -> Path:
    """The folder on this host that holds the model recorded at ``recorded``.

    Mapped prefixes first, then each root with the recorded path's trailing parts,
    longest first (``root/a/b/model`` before ``root/b/model`` before ``root/model``),
    then the recorded path itself. The fingerprint check decides whether it is the
    right model; this only finds a candidate.
    """
    rec = Path(recorded)
    candidates: list[Path] = []
    for prefix, root in models_roots(models_root):
        if prefix is not None:
            if recorded == prefix or recorded.startswith(prefix.rstrip("/") + "/"):
                candidates.append(root / recorded[len(prefix) :].lstrip("/"))
        else:
            parts = rec.parts[1:] if rec.is_absolute() else rec.parts
            candidates.extend(root.joinpath(*parts[i:]) for i in range(len(parts)))
    candidates.append(rec)
    for c in candidates:
        if (c / "modules.json").is_file():
            return c
    roots = models_roots(models_root)
    raise NotFoundError(
        f"the model recorded at {recorded} is not on this host"
        + (f" (looked under {', '.join(str(r) for _, r in roots)})" if roots else ""),
        hint=f"mount the model files and point {MODELS_ROOT_ENV} (or models_root=) at them, "
        "e.g. REINDEX_MODELS=/mnt/models or REINDEX_MODELS=/old/prefix=/mnt/models",
    )


def load_encoder(
    spec: EncoderSpec,
    models_root: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> Embedder:
    """The query encoder for ``spec``: found on this host, checked against its fingerprint, loaded."""
    folder = locate_model(spec.path, models_root)
    if not fingerprint_matches(folder, spec.settings, spec.fingerprint):
        raise UsageError(
            f"the model files at {folder} do not match the fingerprint {spec.short} that {spec.physical} records",
            hint="the folder was changed or holds another model: restore that version's files, or point "
            f"{MODELS_ROOT_ENV} at the right copy",
        )
    return Embedder(folder, spec.settings, device=device, batch_size=batch_size)
