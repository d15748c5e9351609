"""How long a build will take: from the rates earlier applies reached, else from a timed sample.

Every apply that embeds records the rate it reached end to end (documents embedded per
second of its build passes: reading, embedding, writing, the ledger) and the share of that
time spent inside encode, per model fingerprint and device, in the state store's key-value
table. A plan estimates from the median of those runs when there are any. Otherwise it
embeds a sample and says how that was timed (sample size, rate, load average), because a
sample timed on a busy machine can be off several fold: the lesson of 1,078 s estimated at
6 docs/s for a build that took 329 s.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

from reindexer.state.models import iso, utcnow
from reindexer.state.store import StateStore

#: runs kept per model and device; the median of these is the estimate
HISTORY = 10
#: a run that embedded fewer documents times its start-up, not its rate: not recorded
MIN_DOCS = 32
#: a sample times encode alone; the store writes and the ledger come on top
SAMPLE_OVERHEAD = 1.15


def _key(fingerprint: str, device: str) -> str:
    return f"embed-rate:{fingerprint}:{device}"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def past_runs(state: StateStore, fingerprint: str, device: str) -> list[dict[str, Any]]:
    """The recorded runs of this model on this device, oldest first."""
    runs = state.get_meta(_key(fingerprint, device))
    return json.loads(runs) if runs is not None else []


def record_run(
    state: StateStore, fingerprint: str, device: str, store_url: str, docs: int, seconds: float, embed_seconds: float
) -> dict[str, Any] | None:
    """Remember one apply's rate; returns the entry, or None when the run was too small to say anything."""
    if docs < MIN_DOCS or seconds <= 0:
        return None
    entry = {
        "at": iso(utcnow()),
        "store": store_url,
        "docs": docs,
        "seconds": round(seconds, 3),
        "docs_per_second": round(docs / seconds, 2),
        "embed_share": round(min(embed_seconds / seconds, 1.0), 3),
        "load_average": load_average(),
    }
    state.append_meta_list(_key(fingerprint, device), entry, keep=HISTORY)
    return entry


def from_history(runs: list[dict[str, Any]], docs: int, device: str) -> dict[str, Any]:
    rate = statistics.median(r["docs_per_second"] for r in runs)
    n = len(runs)
    return {
        "seconds": round(docs / rate, 1),
        "docs_per_second": round(rate, 1),
        "device": device,
        "method": "history",
        "runs": n,
        "basis": f"from {n} previous run{'s' if n != 1 else ''} of this model on {device} "
        f"(median {rate:.1f} docs/s end to end)",
    }


def from_sample(sample_docs: int, seconds: float, docs: int, device: str) -> dict[str, Any]:
    rate = sample_docs / max(seconds, 1e-6)
    load = load_average()
    cpus = os.cpu_count()
    return {
        "seconds": round(docs / rate * SAMPLE_OVERHEAD, 1),
        "docs_per_second": round(rate, 1),
        "device": device,
        "method": "sample",
        "sample_docs": sample_docs,
        "sample_seconds": round(seconds, 3),
        "load_average": load,
        "cpus": cpus,
        "basis": f"from a sample of {sample_docs} documents embedded in {seconds:.2f} s "
        f"({rate:.1f} docs/s, load average {load if load is not None else '?'} on {cpus} CPUs; "
        f"no previous run of this model on {device})",
    }


def build_estimate(ws: Any, model: Any, docs: int, sample: list[str]) -> dict[str, Any]:
    """The time a full build of ``docs`` documents will take with ``model`` on this workspace's device.

    With history the model is not even loaded; without, ``sample`` is embedded once to warm
    up (lazy initialisation) and once timed.
    """
    from reindexer.devices import pick_device

    device = pick_device(ws.config.device)
    runs = past_runs(ws.state, model.fingerprint, device)
    from reindexer.embedding import torch_agreement
    from reindexer.model_identity import ModelSettings
    from reindexer.model_registry import embedder_for

    if runs:
        est = from_history(runs, docs, device)
        if ModelSettings.from_dict(model.settings).backend != "torch":
            # another inference backend is another model version: the plan shows how far it is from torch
            est.update(torch_agreement(embedder_for(model, device=device, batch_size=ws.embed_batch_size), sample))
        return est
    embedder = embedder_for(model, device=device, batch_size=ws.embed_batch_size)
    embedder.embed_documents(sample[:8])
    started = time.perf_counter()
    embedder.embed_documents(sample)
    est = from_sample(len(sample), time.perf_counter() - started, docs, embedder.device_label)
    est["precision"] = embedder.precision
    est.update(torch_agreement(embedder, sample))
    return est
