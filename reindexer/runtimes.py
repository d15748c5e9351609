"""The inference runtimes of sentence-transformers: torch, and ONNX Runtime or OpenVINO for the same model folder.

A runtime other than torch makes different (if close) vectors, so it is a model
setting and a different model version, with its own fingerprint. The setting keeps
its stored name, ``backend`` (ModelSettings.backend, the --backend option, JSON keys),
because fingerprints and collection tags are made from it. The exported files are
derived data: they are written once, from the local folder and offline, into a folder
this tool owns (``REINDEX_EXPORTS``, default ``~/.cache/reindexer/exports``), keyed by
the source's fingerprint and the runtime, and made again on any host that lacks them.
The user's model folder is never written to (that would change its own fingerprint).

This module reads only three fields of a model version's settings (``RuntimeSettings``)
and imports nothing of the model modules: reindexer.model_identity validates its
settings here, and reindexer.embedding loads a model through ``runtime_kwargs``.
It is not where devices and precision are chosen (reindexer.devices).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Protocol

from reindexer.errors import UsageError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "openvino")
#: What --backend accepts: onnx-int8 is ONNX with dynamic int8 quantisation (no calibration data).
CHOICES = ("torch", "onnx", "onnx-int8", "openvino")
QUANTIZATIONS = ("avx2", "avx512", "avx512_vnni", "arm64")
EXPORTS_ENV = "REINDEX_EXPORTS"
_COMPLETE = "reindex-export.json"
_NEEDS = {
    "onnx": ("onnxruntime", "optimum.onnxruntime", "reindexer[onnx]"),
    "openvino": ("openvino", "optimum.intel", "reindexer[openvino]"),
}


class RuntimeSettings(Protocol):
    """What this module reads of a model version's settings (reindexer.model_identity.ModelSettings)."""

    @property
    def backend(self) -> str: ...  # the runtime, under its stored name

    @property
    def quantization(self) -> str | None: ...

    @property
    def trust_remote_code(self) -> bool: ...


def default_quantization() -> str:
    """avx2 on x86-64 (it runs on every AVX2 and AVX-512 machine, so index and query hosts agree), arm64 on ARM."""
    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "avx2"


def parse_runtime(choice: str | None) -> tuple[str, str | None]:
    """``--backend`` as (runtime, quantization)."""
    if choice is None or choice == "":
        return "torch", None
    c = choice.strip().lower()
    if c not in CHOICES:
        raise UsageError(f"unknown backend {choice!r}", hint=f"use one of {', '.join(CHOICES)}")
    if c == "onnx-int8":
        return "onnx", default_quantization()
    return c, None


def check_runtime(runtime: str, quantization: str | None, precision: str | None) -> None:
    """A UsageError unless ``runtime`` is known and offers ``quantization`` and ``precision``."""
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown backend {runtime!r}", hint=f"use one of {', '.join(CHOICES)}")
    if quantization is not None and (runtime != "onnx" or quantization not in QUANTIZATIONS):
        raise UsageError(
            f"quantization {quantization!r} is not offered for the {runtime} backend",
            hint="int8 quantisation is --backend onnx-int8",
        )
    if precision is not None and runtime != "torch":
        raise UsageError(
            f"precision {precision} applies to the torch backend, not {runtime}",
            hint="leave --precision unset with --backend onnx or openvino",
        )


#: How close re-embedding a stored text must come to its stored vector (verify's sample, adopt's check).
REEMBED_MIN_COSINE = 0.99
#: The same for dynamic int8: ONNX Runtime takes each activation's scale over the whole batch, so a
#: text's vector depends on the texts it was embedded with. Measured on 1,000 demo abstracts
#: (all-MiniLM-L6-v2, avx2): batches of 64 against one at a time, cosine mean 0.992, min 0.983;
#: against batches of 16 in reverse order, min 0.982. fp32 ONNX and OpenVINO agree to 0.99999.
REEMBED_MIN_COSINE_INT8 = 0.97


def reembed_min_cosine(settings: RuntimeSettings) -> float:
    """The agreement a re-embedding of the same text must reach under ``settings``."""
    return REEMBED_MIN_COSINE_INT8 if settings.quantization else REEMBED_MIN_COSINE


def runtime_label(settings: RuntimeSettings) -> str:
    if settings.backend == "onnx" and settings.quantization:
        return f"onnx-int8 ({settings.quantization})"
    return settings.backend


def require_installed(runtime: str) -> None:
    """A UsageError naming the extra when the runtime's libraries are missing; checked before any write."""
    if runtime == "torch":
        return
    runtime_module, optimum_module, extra = _NEEDS[runtime]
    missing = [m for m in (runtime_module, optimum_module) if not _importable(m)]
    if missing:
        raise UsageError(
            f"the {runtime} backend needs {' and '.join(missing)}, not installed here", hint=f"pip install '{extra}'"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def exports_root() -> Path:
    raw = os.environ.get(EXPORTS_ENV)
    if raw:
        return Path(raw).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "reindexer" / "exports"


def _file_name(settings: RuntimeSettings) -> str:
    """The file an export holds; for int8 a pattern, because the weights' type is in the name and is the
    quantisation config's choice (avx2 quantises weights to unsigned int8: ``model_quint8_avx2.onnx``)."""
    if settings.backend == "openvino":
        return "openvino/openvino_model.xml"
    if settings.quantization:
        return f"onnx/model_*int8_{settings.quantization}.onnx"
    return "onnx/model.onnx"


def _exported_file(folder: Path, settings: RuntimeSettings) -> str | None:
    """The export's model file, relative to ``folder``; None when there is not exactly one."""
    found = sorted(folder.glob(_file_name(settings)))
    return found[0].relative_to(folder).as_posix() if len(found) == 1 else None


def export_folder(root: Path, settings: RuntimeSettings, source: str, name: str) -> Path:
    """Where the export of ``root`` (files fingerprinted as ``source``, named ``name``) for ``settings``' runtime
    lives: named by the source's own files, so changed weights get a new export
    (reindexer.model_identity.export_source gives ``source`` and ``name``)."""
    key = hashlib.sha256(f"{source}|{settings.backend}|{settings.quantization}".encode()).hexdigest()[:16]
    return exports_root() / f"{name}-{settings.backend}-{key}"


def runtime_kwargs(root: Path, settings: RuntimeSettings, source: str, name: str) -> tuple[Path, dict[str, Any]]:
    """The folder and SentenceTransformer keyword arguments that load ``root`` on ``settings``' runtime."""
    if settings.backend == "torch":
        return root, {}
    require_installed(settings.backend)
    folder = ensure_export(root, settings, source, name)
    file_name = _exported_file(folder, settings)
    return folder, {"backend": settings.backend, "model_kwargs": {"file_name": file_name}}


def ensure_export(root: Path, settings: RuntimeSettings, source: str, name: str) -> Path:
    """Export ``root`` for the runtime once; a crash mid-export leaves only a temp folder, redone next time."""
    target = export_folder(root, settings, source, name)
    if (target / _COMPLETE).is_file() and _exported_file(target, settings) is not None:
        return target
    from sentence_transformers import SentenceTransformer

    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # an export whose files were removed since: made again
        shutil.rmtree(target)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("exporting %s for %s into %s", root, settings.backend, target)
    try:
        model = SentenceTransformer(
            str(root),
            device="cpu",
            backend=settings.backend,
            local_files_only=True,
            trust_remote_code=settings.trust_remote_code,
        )
        model.save(str(tmp))
        if settings.quantization:
            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            export_dynamic_quantized_onnx_model(model, settings.quantization, str(tmp))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - optimum and the runtimes fail in many library-specific ways
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(
            f"cannot export {root} for the {settings.backend} backend: {type(exc).__name__}: {exc}",
            hint="check the backend's extra is installed and the model folder is complete",
        ) from None
    if _exported_file(tmp, settings) is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(
            f"exporting {root} for {settings.backend} wrote no {_file_name(settings)}",
            hint="this sentence-transformers version saves its exports elsewhere; use --backend torch",
        )
    (tmp / _COMPLETE).write_text(
        json.dumps(
            {"source": str(root), "backend": settings.backend, "quantization": settings.quantization}, sort_keys=True
        )
    )
    try:
        os.replace(tmp, target)
    except OSError:
        # Another process finished the same export first: its copy is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / _COMPLETE).is_file():
            raise
    return target
