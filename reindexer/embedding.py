"""Model versions: fingerprint, validation, loading, device choice and batched encoding.

A model version is a sentence-transformers folder *plus* the settings that change
its vectors. The fingerprint is sha256 over both, so the same folder with the same
settings always gets the same fingerprint, and any change to the weights,
tokenizer, config or settings gets a new one.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reindexer.devices import (
    apply_cpu_threads,
    check_precision,
    default_batch_size,
    default_precision,
    device_kind,
    identity_precision,
    parse_devices,
    resolve_devices,
    runtime,
    visible_devices,
)
from reindexer.errors import UsageError

log = logging.getLogger(__name__)

# Files that describe a model without changing its vectors.
_IGNORED_SUFFIXES = (".md", ".txt.bak")
_IGNORED_DIRS = ("checkpoint-", "runs", "eval", "__pycache__")
_SIMILARITY_TO_METRIC = {"cosine": "cosine", "dot": "dot", "dot_product": "dot", "euclidean": "euclid"}


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
    backend: str = "torch"  # torch | onnx | openvino (reindexer.inference_backends)
    quantization: str | None = None  # onnx int8: the optimum config it was quantised with (avx2, arm64)

    def __post_init__(self) -> None:
        from reindexer.devices import identity_precision
        from reindexer.inference_backends import check_backend

        object.__setattr__(self, "precision", identity_precision(self.precision))
        check_backend(self.backend, self.quantization, self.precision)

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
        return self.fingerprint[:12]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.short}"


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


def pick_device(requested: str | None = None) -> str:
    """CUDA, then MPS, then CPU, unless REINDEX_DEVICE or the caller names one."""
    requested = requested or os.environ.get("REINDEX_DEVICE")
    if requested:
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_devices(device: str | None = None, devices: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The devices to run on: the caller's, else the process's runtime (reindex.toml, REINDEX_*), else
    every visible GPU, MPS or the CPU (reindexer.devices.resolve_devices)."""
    rt = runtime()
    device = device or rt.device or os.environ.get("REINDEX_DEVICE") or None
    devices = devices or rt.devices or parse_devices(os.environ.get("REINDEX_DEVICES"))
    if devices is None and device in ("cpu", "mps"):
        return (device,)
    cuda_count, mps = visible_devices()
    return resolve_devices(device, devices, cuda_count, mps)


def run_precision(settings: ModelSettings, device: str, requested: str | None = None) -> str:
    """The precision a model runs at: the version's own (bf16), else the caller's or the runtime's,
    else the device's default. Only the torch backend runs below fp32."""
    if settings.precision:
        return settings.precision
    explicit = check_precision(requested or runtime().precision or os.environ.get("REINDEX_PRECISION"))
    if explicit is not None and identity_precision(explicit):
        raise UsageError(
            f"{explicit} vectors differ from fp32 beyond the tolerance, so {explicit} is a model "
            "version of its own, not a way to run this one",
            hint=f"plan the version with --precision {explicit} (the model setting)",
        )
    if settings.backend != "torch":
        if explicit not in (None, "fp32"):
            raise UsageError(
                f"precision {explicit} applies to the torch backend, not {settings.backend}",
                hint="leave the precision unset with --backend onnx or openvino",
            )
        return "fp32"
    return explicit or default_precision(device)


# Loaded models, least recently used first. Bounded, because a long-running query
# service meets a new model version at every cut-over; what a Searcher still holds
# stays alive through its own reference.
_LOADED: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_LOADED_LOCK = threading.Lock()
MODEL_CACHE_SIZE = int(os.environ.get("REINDEX_MODEL_CACHE", "4"))


def _quiet_library_progress() -> None:
    """transformers draws its own weight-loading bars on stderr; ours are the only ones wanted."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def load_sentence_transformer(
    path: str | os.PathLike, settings: ModelSettings, device: str | None = None, precision: str | None = None
):
    """Load (once per process) a SentenceTransformer with the given settings, from local files only."""
    root = check_model_folder(path)
    device = pick_device(device)
    precision = run_precision(settings, device, precision)
    key = (f"{root}|{json.dumps(settings.to_dict(), sort_keys=True)}", device, precision)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    from sentence_transformers import SentenceTransformer

    from reindexer.inference_backends import backend_kwargs

    _quiet_library_progress()
    started = time.perf_counter()
    folder, extra = backend_kwargs(root, settings, *export_source(root, settings))
    try:
        model = SentenceTransformer(
            str(folder),
            device=device,
            truncate_dim=settings.truncate_dim,
            trust_remote_code=settings.trust_remote_code,
            local_files_only=True,
            **extra,
        )
    except Exception as exc:  # noqa: BLE001 - a broken folder fails in many library-specific ways
        raise UsageError(
            f"cannot load {root} as a sentence-transformers model: {type(exc).__name__}: {exc}",
            hint="check that the folder is complete (weights, config, tokenizer)",
        ) from None
    if settings.max_seq_length:
        model.max_seq_length = settings.max_seq_length
    if precision != "fp32":
        import torch

        model.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
    log.info(
        "loaded %s (%s, %s) on %s in %.1fs", root, settings.backend, precision, device, time.perf_counter() - started
    )
    # Tokenizers refuse concurrent calls ("Already borrowed"): one encode at a time per model.
    model.__dict__["_reindex_encode_lock"] = threading.Lock()
    with _LOADED_LOCK:
        _LOADED[key] = model
        while len(_LOADED) > max(MODEL_CACHE_SIZE, 1):
            _LOADED.popitem(last=False)
    return model


def model_dimension(model) -> int | None:
    # sentence-transformers 5.x renamed get_sentence_embedding_dimension.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def _check_truncation(model, truncate_dim: int, name: str) -> None:
    """Refuse a truncation to more dimensions than the model makes: it would truncate nothing, yet be a
    new model version whose plan re-embeds everything."""
    kept, model.truncate_dim = model.truncate_dim, None
    try:
        native = model_dimension(model)
    finally:
        model.truncate_dim = kept
    if native is not None and truncate_dim > native:
        raise UsageError(
            f"truncate dimension {truncate_dim} is more than the {native} dimensions {name} makes",
            hint=f"pass --truncate-dim {native} or fewer (Matryoshka keeps the first N), or no truncation",
        )


def inspect_model(path: str | os.PathLike, settings: ModelSettings | None = None, name: str | None = None) -> ModelInfo:
    """Fingerprint and load a model folder to learn its dimension and similarity."""
    settings = settings or ModelSettings()
    root = check_model_folder(path)
    fp = fingerprint(root, settings)
    model = load_sentence_transformer(root, settings)
    if settings.truncate_dim is not None:
        _check_truncation(model, settings.truncate_dim, name or default_name(root))
    dim = model_dimension(model)
    if dim is None:
        dim = int(model.encode(["dimension probe"], convert_to_numpy=True).shape[1])
    similarity = getattr(model, "similarity_fn_name", None) or "cosine"
    metric = _SIMILARITY_TO_METRIC.get(str(similarity), "cosine")
    if settings.normalize:
        metric = "cosine"
    return ModelInfo(
        fingerprint=fp,
        name=name or default_name(root),
        path=str(root),
        dim=int(dim),
        similarity=metric,
        max_seq_length=model.max_seq_length,
        settings=settings,
    )


_NO_LOCK = contextlib.nullcontext()
_POOLS: list[tuple[Any, dict]] = []
_POOLS_LOCK = threading.Lock()


def _stop_pools() -> None:
    with _POOLS_LOCK:
        while _POOLS:
            model, pool = _POOLS.pop()
            model.stop_multi_process_pool(pool)
            model.__dict__.pop("_reindex_pool", None)


atexit.register(_stop_pools)


class Embedder:
    """Encodes documents and queries with one model version.

    ``device``/``devices``, ``batch_size`` and ``precision`` default to the process's runtime
    (reindex.toml ``[defaults]``, REINDEX_*), then to what suits the device. With several GPUs
    the work of a call longer than one batch is spread over one worker process per GPU.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: ModelSettings | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        precision: str | None = None,
        devices: tuple[str, ...] | None = None,
    ):
        self.settings = settings or ModelSettings()
        self.model_path = str(path)
        self.devices = pick_devices(device, devices)
        # A pool places the model on each GPU itself; this process keeps the weights on the CPU.
        self.device = self.devices[0] if len(self.devices) == 1 else "cpu"
        self.precision = run_precision(self.settings, self.devices[0], precision)
        if device_kind(self.device) == "cpu" and len(self.devices) == 1:
            env_threads = os.environ.get("REINDEX_THREADS")
            self.threads: int | None = apply_cpu_threads(
                runtime().threads or (int(env_threads) if env_threads else None)
            )
        else:
            self.threads = None
        self.model = load_sentence_transformer(path, self.settings, self.device, self.precision)
        self.batch_size = batch_size or runtime().batch_size or default_batch_size(self.devices[0])

    @property
    def device_label(self) -> str:
        return ",".join(self.devices)

    def _pool(self, texts: Sequence[str]) -> dict | None:
        """The model's worker pool, started at the first call that has work for more than one GPU."""
        if len(self.devices) < 2:
            return None
        pool = self.model.__dict__.get("_reindex_pool")
        if pool is None and len(texts) > self.batch_size:
            pool = self.model.start_multi_process_pool(list(self.devices))
            self.model.__dict__["_reindex_pool"] = pool
            with _POOLS_LOCK:
                _POOLS.append((self.model, pool))
        return pool

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, model_dimension(self.model) or 0), dtype=np.float32)
        with self.model.__dict__.get("_reindex_encode_lock") or _NO_LOCK:
            pool = self._pool(texts)
            extra: dict[str, Any] = {}
            if pool is not None:
                # A few chunks per worker: long enough to fill a batch, short enough to balance the GPUs.
                extra = {"pool": pool, "chunk_size": max(self.batch_size, len(texts) // (4 * len(self.devices)))}
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                prompt=prompt,
                convert_to_numpy=True,
                normalize_embeddings=self.settings.normalize,
                show_progress_bar=False,
                **extra,
            )
        return np.asarray(vectors, dtype=np.float32)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees them (truncated): the key a window of documents is sorted by."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or not callable(tokenizer):
            return [len(t) for t in texts]
        with self.model.__dict__.get("_reindex_encode_lock") or _NO_LOCK:
            ids = tokenizer(list(texts), truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return [len(i) for i in ids]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.settings.document_prompt)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.settings.query_prompt)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped matrices."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def export_source(root: Path, settings: ModelSettings) -> tuple[str, str]:
    """(fingerprint of the source files alone, name): what names ``root``'s export for another backend."""
    return fingerprint(root, ModelSettings(trust_remote_code=settings.trust_remote_code)), default_name(root)


def torch_agreement(embedder: Any, texts: list[str]) -> dict[str, Any]:
    """How closely ``embedder``'s vectors follow the torch fp32 ones of the same folder on ``texts``.

    Empty when ``embedder`` is torch at fp32: there is nothing to compare.
    """
    from dataclasses import replace

    from reindexer.inference_backends import backend_label

    settings = embedder.settings
    if not texts or (settings.backend == "torch" and embedder.precision == "fp32"):
        return {}
    reference = Embedder(
        embedder.model_path,
        replace(settings, backend="torch", quantization=None, precision=None),
        device="cpu",
        precision="fp32",
        batch_size=embedder.batch_size,
    )
    cos = cosine_rows(reference.embed_documents(texts), embedder.embed_documents(texts))
    return {
        "agreement_with_torch": {
            "mean_cosine": round(float(cos.mean()), 6),
            "min_cosine": round(float(cos.min()), 6),
            "sample": len(texts),
            "backend": backend_label(settings),
            "precision": embedder.precision,
        }
    }
