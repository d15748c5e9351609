"""Loading a model version and encoding text with it: the Embedder.

A model version's identity (settings, fingerprint, folder checks) is
reindexer.model_identity; where and how it runs (devices, precision, threads) is
reindexer.devices; the inference runtime it loads on (torch, ONNX, OpenVINO) is
reindexer.runtimes. This module puts them together: it loads a folder once per
process, learns its dimension and similarity, encodes documents and queries in
batches (over several GPUs when there are), and measures how closely another
runtime's vectors follow torch's.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from reindexer.devices import (
    apply_cpu_threads,
    default_batch_size,
    device_kind,
    pick_device,
    pick_devices,
    run_precision,
    runtime,
)
from reindexer.errors import UsageError
from reindexer.model_identity import (
    ModelInfo,
    ModelSettings,
    check_model_folder,
    default_name,
    export_source,
    fingerprint,
)
from reindexer.runtimes import runtime_kwargs, runtime_label
from reindexer.vectors import cosine_rows

log = logging.getLogger(__name__)

_SIMILARITY_TO_METRIC = {"cosine": "cosine", "dot": "dot", "dot_product": "dot", "euclidean": "euclid"}


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

    _quiet_library_progress()
    started = time.perf_counter()
    folder, extra = runtime_kwargs(root, settings, *export_source(root, settings))
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


def torch_agreement(embedder: Embedder, texts: list[str]) -> dict[str, Any]:
    """How closely ``embedder``'s vectors follow the torch fp32 ones of the same folder on ``texts``.

    Empty when ``embedder`` is torch at fp32: there is nothing to compare.
    """
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
            "backend": runtime_label(settings),
            "precision": embedder.precision,
        }
    }
