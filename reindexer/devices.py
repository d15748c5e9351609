"""Where and how a model runs: devices, precision, encode batch size and CPU threads.

None of this changes which model version a vector belongs to, with one exception
decided by measurement (docs/devices.md): a precision whose vectors differ from
fp32 beyond ``PRECISION_TOLERANCE`` is part of the model version's settings, so
its index gets its own fingerprint; the others are runtime choices like the device.

The decisions are pure functions of what is asked and what the machine has (the
number of CUDA devices is a parameter), so they are tested without a GPU.
``Runtime`` here is this process's defaults for those choices (reindex.toml,
REINDEX_*); the inference runtime that runs a model (torch, ONNX, OpenVINO) is
reindexer.runtimes, and what a model version is, reindexer.model_identity.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reindexer.errors import UsageError

PRECISIONS = ("fp32", "fp16", "bf16")

#: Lowest cosine between a precision's vectors and fp32's, on every text of a real sample, for that
#: precision to count as the same model version: the order of what fp32 itself varies by batch
#: composition and hardware. Measured on all-MiniLM-L6-v2 (docs/devices.md): fp16 0.999999 (10-bit
#: mantissa), bf16 0.99994 (7-bit mantissa), so bf16 is a version of its own. Verification and
#: adoption accept 0.99, so either precision still verifies against fp32 vectors.
PRECISION_TOLERANCE = 0.99999

#: Precisions that stay within the tolerance on real text (measured: docs/devices.md), so they
#: are a runtime choice; any other one is recorded in the model version's settings.
RUNTIME_PRECISIONS = frozenset({"fp32", "fp16"})

#: Encode batch per device kind when none is configured. On CPU 64 beat 256 by about 10% (longer
#: batches pad more); a GPU wants large batches to fill its cores.
DEVICE_BATCH_SIZE = {"cuda": 256, "mps": 64, "cpu": 64}

DEVICE_KINDS = ("cpu", "cuda", "mps")


def device_kind(device: str) -> str:
    return device.split(":", 1)[0]


def default_precision(device: str) -> str:
    """fp16 on CUDA (tensor cores, half the memory traffic); fp32 elsewhere."""
    return "fp16" if device_kind(device) == "cuda" else "fp32"


def default_batch_size(device: str) -> int:
    return DEVICE_BATCH_SIZE.get(device_kind(device), 64)


def check_precision(precision: str | None) -> str | None:
    if precision is None or precision == "":
        return None
    p = precision.strip().lower()
    if p not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    return p


def identity_precision(precision: str | None) -> str | None:
    """The precision as a model setting: None for a runtime precision, else the precision itself."""
    p = check_precision(precision)
    return None if p is None or p in RUNTIME_PRECISIONS else p


def parse_devices(text: str | None) -> tuple[str, ...] | None:
    """``cuda:0,cuda:1`` as a tuple; None for an empty value. Only the spelling is checked here."""
    if text is None:
        return None
    items = tuple(d.strip().lower() for d in str(text).split(",") if d.strip())
    if not items:
        return None
    for d in items:
        kind, _, index = d.partition(":")
        if kind not in DEVICE_KINDS or (index and not index.isdigit()):
            raise UsageError(
                f"unknown device {d!r} in {text!r}",
                hint="name devices as cpu, mps, cuda or cuda:N, separated by commas: cuda:0,cuda:1",
            )
    if len(set(items)) != len(items):
        raise UsageError(f"a device is named twice in {text!r}", hint="name each device once")
    return items


def resolve_devices(
    device: str | None, devices: tuple[str, ...] | None, cuda_count: int, mps: bool = False
) -> tuple[str, ...]:
    """The devices a model runs on: one for a single process, several for a multi-process pool.

    Named devices are checked against the machine. Unnamed, every visible GPU is used;
    without one, MPS, then the CPU.
    """
    if devices:
        kinds = {device_kind(d) for d in devices}
        if len(kinds) > 1:
            raise UsageError(f"devices {','.join(devices)} mix kinds", hint="use only GPUs or only the CPU")
        for d in devices:
            kind, _, index = d.partition(":")
            if kind == "cuda" and (cuda_count == 0 or (index and int(index) >= cuda_count)):
                raise UsageError(
                    f"device {d} is not on this machine ({cuda_count} CUDA device(s) visible)",
                    hint="check CUDA_VISIBLE_DEVICES and nvidia-smi, or leave --devices unset",
                )
        if kinds == {"cuda"} and "cuda" in devices:
            return tuple(f"cuda:{i}" for i in range(cuda_count)) if cuda_count > 1 else ("cuda",)
        if kinds != {"cuda"} and len(devices) > 1:
            raise UsageError(
                f"several {next(iter(kinds))} devices named ({','.join(devices)})",
                hint="a pool of processes is for several GPUs; one CPU process uses every core",
            )
        return tuple(devices)
    if device:
        kind, _, index = device.partition(":")
        if kind == "cuda" and not index and cuda_count > 1:
            return tuple(f"cuda:{i}" for i in range(cuda_count))
        return (device,)
    if cuda_count > 1:
        return tuple(f"cuda:{i}" for i in range(cuda_count))
    if cuda_count == 1:
        return ("cuda",)
    return ("mps",) if mps else ("cpu",)


def visible_devices() -> tuple[int, bool]:
    """(number of CUDA devices, whether MPS is available) on this machine."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = getattr(torch.backends, "mps", None)
    return count, bool(mps is not None and mps.is_available())


def available_cores(proc: Path = Path("/proc/self"), cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(cores, 1)


_THREADS_LOCK = threading.Lock()


def apply_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` or the cores this process may use; return it.

    torch counts the machine's cores, not the affinity mask or a container's quota,
    so in a container it can start more threads than it has cores and lose time to switching.
    """
    import torch

    n = threads or available_cores()
    with _THREADS_LOCK:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class Runtime:
    """How this process runs models, when a caller does not say: from reindex.toml and REINDEX_*."""

    device: str | None = None
    devices: tuple[str, ...] | None = None
    precision: str | None = None
    batch_size: int | None = None
    threads: int | None = None


_RUNTIME = Runtime()


def runtime() -> Runtime:
    return _RUNTIME


def set_runtime(value: Runtime) -> None:
    """Make ``value`` the process's defaults. A Workspace does this from its config, so the
    executor, the planner's estimate and the query side all run models the same way."""
    global _RUNTIME
    _RUNTIME = value


def runtime_from(
    device: str | None = None,
    devices: str | tuple[str, ...] | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
) -> Runtime:
    """A checked Runtime; bad values are a UsageError naming the fix."""
    if isinstance(devices, str) or devices is None:
        devices = parse_devices(devices)
    if batch_size is not None and batch_size <= 0:
        raise UsageError("embed_batch_size must be positive", hint="leave it unset for the device's default")
    if threads is not None and threads <= 0:
        raise UsageError("threads must be positive", hint="leave it unset to use every core this process may use")
    return Runtime(
        device=device or None,
        devices=devices,
        precision=check_precision(precision),
        batch_size=batch_size,
        threads=threads,
    )


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
    every visible GPU, MPS or the CPU (resolve_devices)."""
    rt = runtime()
    device = device or rt.device or os.environ.get("REINDEX_DEVICE") or None
    devices = devices or rt.devices or parse_devices(os.environ.get("REINDEX_DEVICES"))
    if devices is None and device in ("cpu", "mps"):
        return (device,)
    cuda_count, mps = visible_devices()
    return resolve_devices(device, devices, cuda_count, mps)


class VersionPrecision(Protocol):
    """What run_precision reads of a model version's settings (reindexer.model_identity.ModelSettings)."""

    @property
    def precision(self) -> str | None: ...

    @property
    def backend(self) -> str: ...


def run_precision(settings: VersionPrecision, device: str, requested: str | None = None) -> str:
    """The precision a model runs at: the version's own (bf16), else the caller's or the runtime's,
    else the device's default. Only the torch runtime runs below fp32."""
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
