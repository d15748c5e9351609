"""What a model version is: a model folder plus the settings that change its vectors, and its fingerprint.

A model version is a sentence-transformers folder *plus* the settings that change
its vectors (``ModelSettings``). The fingerprint is sha256 over both, so the same
folder with the same settings always gets the same fingerprint, and any change to
the weights, tokenizer, config or settings gets a new one.

Nothing here loads a model or touches a device: loading and encoding are
reindexer.embedding, where and how a model runs is reindexer.devices, and the
inference runtimes (torch, ONNX, OpenVINO) are reindexer.runtimes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reindexer.devices import identity_precision
from reindexer.errors import UsageError
from reindexer.runtimes import check_runtime

# Files that describe a model without changing its vectors.
_IGNORED_SUFFIXES = (".md", ".txt.bak")
_IGNORED_DIRS = ("checkpoint-", "runs", "eval", "__pycache__")


@dataclass(frozen=True)
class ModelSettings:
    """Settings that change the vectors a model folder produces."""

    normalize: bool = False  # applied on top of the folder's own modules
    truncate_dim: int | None = None  # Matryoshka truncation
    max_seq_length: int | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    trust_remote_code: bool = False
    # Only a precision that moves vectors beyond reindexer.devices.PRECISION_TOLERANCE (bf16);
    # fp32 and fp16 are runtime choices, like the device.
    precision: str | None = None
    # The inference runtime: torch | onnx | openvino (reindexer.runtimes). Named "backend" because
    # the name is stored: in fingerprints, collection tags and the --backend option.
    backend: str = "torch"
    quantization: str | None = None  # onnx int8: the optimum config it was quantised with (avx2, arm64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", identity_precision(self.precision))
        check_runtime(self.backend, self.quantization, self.precision)

    def to_dict(self) -> dict[str, Any]:
        """The settings; those added later are left out at their defaults, so the fingerprints and
        collection tags of versions made before them stay what they were."""
        data = asdict(self)
        for name, default in _LATER_SETTINGS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelSettings:
        data = dict(data or {})
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


_LATER_SETTINGS: dict[str, Any] = {"precision": None, "backend": "torch", "quantization": None}


def short_fingerprint(fingerprint: str) -> str:
    """The first 12 hex digits: how a model version is shown to people."""
    return fingerprint[:12]


def version_label(name: str, fingerprint: str) -> str:
    """``name@short``: a model version as logs and tables show it (ModelInfo and the state's ModelVersion)."""
    return f"{name}@{short_fingerprint(fingerprint)}"


@dataclass
class ModelInfo:
    fingerprint: str
    name: str
    path: str
    dim: int
    similarity: str
    max_seq_length: int | None
    settings: ModelSettings = field(default_factory=ModelSettings)

    @property
    def short(self) -> str:
        return short_fingerprint(self.fingerprint)

    @property
    def label(self) -> str:
        return version_label(self.name, self.fingerprint)


def check_model_folder(path: str | os.PathLike) -> Path:
    """The folder, resolved, if it holds a sentence-transformers model; else a UsageError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"model path {p} does not exist")
    if not p.is_dir():
        raise UsageError(f"model path {p} is not a folder", hint="pass the folder that model.save() wrote")
    if not (p / "modules.json").is_file():
        raise UsageError(
            f"{p} is not a sentence-transformers model (no modules.json)",
            hint="save the model with SentenceTransformer.save(PATH), or point at the folder that has modules.json",
        )
    return p.resolve()


def _model_files(root: Path) -> list[Path]:
    files = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if any(part.startswith(_IGNORED_DIRS) for part in rel.parts[:-1]):
            continue
        if f.name.endswith(_IGNORED_SUFFIXES):
            continue
        files.append(f)
    return files


def files_signature(path: str | os.PathLike) -> tuple:
    """Names, sizes and modification times of the fingerprinted files: cheap to compare, no hashing."""
    root = Path(path)
    out = []
    for f in _model_files(root):
        st = f.stat()
        out.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def fingerprint(path: str | os.PathLike, settings: ModelSettings | None = None) -> str:
    """sha256 over the model's files (names and bytes) and its vector-changing settings."""
    root = check_model_folder(path)
    h = hashlib.sha256()
    for f in _model_files(root):
        h.update(str(f.relative_to(root).as_posix()).encode())
        h.update(b"\x00")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\x00")
    h.update(json.dumps((settings or ModelSettings()).to_dict(), sort_keys=True).encode())
    return h.hexdigest()


_MATCHED: set[tuple[str, str, tuple]] = set()
_MATCHED_LOCK = threading.Lock()


def fingerprint_matches(path: str | os.PathLike, settings: ModelSettings, expected: str) -> bool:
    """Whether the folder with ``settings`` still hashes to ``expected``.

    Hashing a large model's weights takes seconds, so a folder is hashed once per
    process and again only when its files' names, sizes or modification times change.
    """
    key = (expected, str(path), files_signature(path))
    with _MATCHED_LOCK:
        if key in _MATCHED:
            return True
    if fingerprint(path, settings) != expected:
        return False
    with _MATCHED_LOCK:
        _MATCHED.add(key)
    return True


def default_name(path: Path) -> str:
    """A readable name for a model folder: its own name, or its parent's for generic ones."""
    generic = {"model", "models", "final", "output", "best", "latest"}
    name = path.name
    if name.lower() in generic and path.parent.name:
        name = path.parent.name
    return name


def export_source(root: Path, settings: ModelSettings) -> tuple[str, str]:
    """(fingerprint of the source files alone, name): what names ``root``'s export for another runtime
    (reindexer.runtimes.export_folder)."""
    return fingerprint(root, ModelSettings(trust_remote_code=settings.trust_remote_code)), default_name(root)
