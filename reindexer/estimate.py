"""How long a build will take, as a point and an interval: from the rates earlier applies reached, else
from a timed sample of the corpus.

Every apply that embeds records the rate it reached end to end (documents embedded per
second of its build passes: reading, embedding, writing, the ledger) and the share of that
time spent inside encode, per model fingerprint and device, and once more per store and
device, in the state store's key-value table. A plan estimates from the median of this
model's runs when there are any (the interval: the slowest and fastest of them). Otherwise it
embeds a sample and says how that was timed (sample size, rate, load average), because a
sample timed on a busy machine can be off several fold: the lesson of 1,078 s estimated at
6 docs/s for a build that took 329 s.

The sample is drawn at random from the whole source in the plan's one pass over it (a reservoir,
``ScanResult.sample``: the first documents of a corpus are often not like the rest), its token
lengths measured with the model's own tokenizer at its window, and the encode timed after an untimed
warm-up, in length-sorted batches of the build's batch size, as the pipeline
(reindexer/build/stream.py) encodes them. The cost per token slot is then applied to the corpus's
tokens. The vectors of the warm-up and the timed batches are kept for the build, which in the same
process takes them instead of encoding those documents again (reindexer.vector_memo). What the
store adds (writes, the ledger, an index the store builds as it goes) is the non-encode time per
document of earlier runs on this store and device, any model, else a flat factor.
Not here: reading the plan's inputs (reindexer/plan_inputs.py).
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from reindexer.state.models import iso, utcnow
from reindexer.state.store import StateStore
from reindexer.vector_memo import memos_of, rate_key, take_reused

T = TypeVar("T")

#: runs kept per model and device (and per store and device); the median of these is the estimate
HISTORY = 10
#: a run that embedded fewer documents times its start-up, not its rate: not recorded
MIN_DOCS = 32
#: a sample times encode alone; the store writes and the ledger come on top: this factor when no earlier
#: run on the store says how much, between OVERHEAD_LOW and OVERHEAD_HIGH (measured builds reached 0.85x
#: to 1.0x of raw encode into Qdrant local, 0.67x into Milvus Lite at 200 documents: docs/benchmarks.md)
SAMPLE_OVERHEAD = 1.15
OVERHEAD_LOW = 1.0
OVERHEAD_HIGH = 1.5
#: the seed of the plan's sample, so that the same source gives the same sample and the same estimate
SAMPLE_SEED = 20261
#: documents timed: one encode batch of the build's size, at least TIMED_MIN documents (every plan without
#: history pays for it, and a suite of small plans pays it hundreds of times: two batches cost a clean
#: clone's test run minutes for no better estimate at these sizes)
TIMED_BATCHES = 1
TIMED_MIN = 64
#: documents encoded once, untimed, before the timing: lazy initialisation is not the rate
WARMUP = 8
#: padded token slots per token in the build's batches, sorted by tokens over windows of 16 batches
#: (1.8% padding measured on the demo abstracts: docs/benchmarks.md, "Sort key, measured")
PIPELINE_PADDING = 1.02
#: the machine between plan and apply: a timing is no truer than this, on either side
TIMING_BAND = 0.10
#: resamples of the token lengths for the spread of the corpus's mean length
BOOTSTRAP_ROUNDS = 200


def _key(fingerprint: str, device: str) -> str:
    return f"embed-rate:{fingerprint}:{device}"


def _store_key(store_url: str, device: str) -> str:
    return f"store-rate:{device}:{store_url}"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def past_runs(state: StateStore, fingerprint: str, device: str) -> list[dict[str, Any]]:
    """The recorded runs of this model on this device, oldest first."""
    runs = state.get_meta(_key(fingerprint, device))
    return json.loads(runs) if runs is not None else []


def store_runs(state: StateStore, store_url: str, device: str) -> list[dict[str, Any]]:
    """The recorded runs of any model into this store from this device, oldest first."""
    runs = state.get_meta(_store_key(store_url, device))
    return json.loads(runs) if runs is not None else []


def record_run(
    state: StateStore, fingerprint: str, device: str, store_url: str, docs: int, seconds: float, embed_seconds: float
) -> dict[str, Any] | None:
    """Remember one apply's rate; returns the entry, or None when the run was too small to say anything."""
    # encode time a plan's sample spent on documents this build then took: a build that encodes them runs this long
    reused = take_reused(rate_key(fingerprint, device, store_url))
    seconds, embed_seconds = seconds + reused, embed_seconds + reused
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
    state.append_meta_list(_store_key(store_url, device), {**entry, "model": fingerprint}, keep=HISTORY)
    return entry


# -- the sample ------------------------------------------------------------------------------
def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between the sorted values (numpy's default)."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def token_profile(lengths: Sequence[int], window: int | None) -> dict[str, Any]:
    """The sampled token lengths as the plan states them: p50, p90, mean, and the share cut at the window."""
    truncated = sum(1 for n in lengths if window and n >= window)
    return {
        "sampled": len(lengths),
        "p50": round(quantile(lengths, 0.5), 1),
        "p90": round(quantile(lengths, 0.9), 1),
        "mean": round(statistics.fmean(lengths), 2),
        "window": window,
        "truncated_share": round(truncated / len(lengths), 4),
    }


def mean_band(lengths: Sequence[int], seed: int = SAMPLE_SEED, rounds: int = BOOTSTRAP_ROUNDS) -> tuple[float, float]:
    """The 10th and 90th percentiles of the mean length over bootstrap resamples, relative to the mean."""
    mean = statistics.fmean(lengths)
    if len(lengths) < 2 or mean <= 0:
        return 1.0, 1.0
    rng = random.Random(seed)
    means = [statistics.fmean(rng.choices(lengths, k=len(lengths))) for _ in range(rounds)]
    return min(quantile(means, 0.1) / mean, 1.0), max(quantile(means, 0.9) / mean, 1.0)


@dataclass
class SampleTiming:
    """Encode batches timed on a sample: seconds and padded token slots of each batch."""

    docs: int
    seconds: list[float]
    slots: list[int]

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)

    @property
    def seconds_per_slot(self) -> float:
        return self.total_seconds / max(sum(self.slots), 1)


def time_batches(embedder: Any, texts: Sequence[str], lengths: Sequence[int]) -> SampleTiming:
    """Encode ``texts`` sorted by token length in batches of the embedder's size, each batch timed alone."""
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    size = max(int(embedder.batch_size or 1), 1)
    seconds: list[float] = []
    slots: list[int] = []
    memos = memos_of(embedder)
    for start in range(0, len(order), size):
        batch = [texts[i] for i in order[start : start + size]]
        began = time.perf_counter()
        vectors = embedder.embed_documents(batch)
        seconds.append(time.perf_counter() - began)
        slots.append(len(batch) * max(lengths[i] for i in order[start : start + size]))
        if memos is not None:  # a build in this process takes them instead of encoding them again
            memos.sample.keep(batch, vectors, seconds[-1])
    return SampleTiming(docs=len(texts), seconds=seconds, slots=slots)


# -- the estimate ----------------------------------------------------------------------------
def interval(
    embed: float, length_band: tuple[float, float], overhead: tuple[float, float, float], docs: int, additive: bool
) -> tuple[float, float, float]:
    """Point, low and high seconds of a build: encode time with the spread of the corpus's mean length and
    ±TIMING_BAND, plus the store's part (``overhead``: point, low, high), per document when ``additive``,
    else as factors on the encode time."""
    low_embed = embed * length_band[0] * (1 - TIMING_BAND)
    high_embed = embed * length_band[1] * (1 + TIMING_BAND)
    point_o, low_o, high_o = overhead
    if additive:
        return embed + docs * point_o, low_embed + docs * low_o, high_embed + docs * high_o
    return embed * point_o, low_embed * low_o, high_embed * high_o


def store_overhead(runs: list[dict[str, Any]]) -> tuple[float, float, float] | None:
    """Seconds per document outside encode (reading, writing, the ledger, the store's index), median, min and
    max of the recorded runs; None without any."""
    per_doc = [r["seconds"] * (1 - r.get("embed_share", 1.0)) / r["docs"] for r in runs if r.get("docs")]
    if not per_doc:
        return None
    return statistics.median(per_doc), min(per_doc), max(per_doc)


def from_history(runs: list[dict[str, Any]], docs: int, device: str) -> dict[str, Any]:
    rate = statistics.median(r["docs_per_second"] for r in runs)
    rates = [r["docs_per_second"] for r in runs]
    n = len(runs)
    seconds = docs / rate
    # the slowest and fastest recorded runs, and never narrower than the machine's own spread
    low = min(docs / max(rates), seconds * (1 - TIMING_BAND))
    high = max(docs / min(rates), seconds * (1 + TIMING_BAND))
    return {
        "seconds": round(seconds, 1),
        "seconds_low": round(low, 1),
        "seconds_high": round(high, 1),
        "docs_per_second": round(rate, 1),
        "device": device,
        "method": "history",
        "runs": n,
        "basis": f"from {n} previous run{'s' if n != 1 else ''} of this model on {device} "
        f"(median {rate:.1f} docs/s end to end; the interval from the slowest and fastest of them, "
        f"at least ±{TIMING_BAND:.0%})",
    }


def from_sample(
    timing: SampleTiming, lengths: Sequence[int], window: int | None, docs: int, device: str, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The estimate from a timed sample: its cost per token slot over the corpus's tokens, plus the store's part."""
    tokens = token_profile(lengths, window)
    embed = timing.seconds_per_slot * docs * tokens["mean"] * PIPELINE_PADDING
    measured = store_overhead(runs)
    if measured is not None:
        seconds, low, high = interval(embed, mean_band(lengths), measured, docs, additive=True)
        store = (
            f"the store's writes and ledger from {len(runs)} earlier run{'s' if len(runs) != 1 else ''} on it "
            f"({measured[0] * 1000:.1f} ms a document outside encode, {measured[1] * 1000:.1f} to "
            f"{measured[2] * 1000:.1f})"
        )
    else:
        seconds, low, high = interval(
            embed, mean_band(lengths), (SAMPLE_OVERHEAD, OVERHEAD_LOW, OVERHEAD_HIGH), docs, additive=False
        )
        store = (
            f"the store's writes and ledger as x{SAMPLE_OVERHEAD} (x{OVERHEAD_LOW} to x{OVERHEAD_HIGH}): "
            "no earlier run on this store"
        )
    rate = timing.docs / max(timing.total_seconds, 1e-6)
    load = load_average()
    cpus = os.cpu_count()
    return {
        "seconds": round(seconds, 1),
        "seconds_low": round(low, 1),
        "seconds_high": round(high, 1),
        "docs_per_second": round(docs / max(seconds, 1e-6), 1),
        "device": device,
        "method": "sample",
        "embed_seconds": round(embed, 1),
        "sample_docs": timing.docs,
        "sample_seconds": round(timing.total_seconds, 3),
        "warmup_docs": WARMUP,
        "tokens": tokens,
        "overhead": "store history" if measured is not None else "flat",
        "load_average": load,
        "cpus": cpus,
        "basis": f"from a sample of {timing.docs} documents embedded in {timing.total_seconds:.2f} s "
        f"({rate:.1f} docs/s, load average {load if load is not None else '?'} on {cpus} CPUs; "
        f"no previous run of this model on {device}), after an untimed warm-up of {WARMUP}, drawn at random "
        f"from the whole source; its cost per token applied to the corpus's tokens; {store}",
    }


def build_estimate(ws: Any, model: Any, docs: int, sample: list[str]) -> dict[str, Any]:
    """The time a full build of ``docs`` documents will take with ``model`` on this workspace's device.

    With history the model is not even loaded; without, the ``sample`` (drawn at random from the
    source) is tokenized whole, a few of its texts embedded once to warm up (lazy initialisation),
    and its first TIMED_BATCHES batch(es) of the build's size timed.
    """
    from reindexer.devices import pick_device

    device = pick_device(ws.config.device)
    runs = past_runs(ws.state, model.fingerprint, device)
    from reindexer.embedding import torch_agreement
    from reindexer.model_identity import ModelSettings
    from reindexer.model_registry import embedder_for

    # the other runtime is compared on at most TIMED_MIN texts: each is embedded twice, once in torch
    compared = sample[:TIMED_MIN]
    if runs:
        est = from_history(runs, docs, device)
        if ModelSettings.from_dict(model.settings).backend != "torch":
            # another inference backend is another model version: the plan shows how far it is from torch
            est.update(torch_agreement(embedder_for(model, device=device, batch_size=ws.embed_batch_size), compared))
        return est
    embedder = embedder_for(model, device=device, batch_size=ws.embed_batch_size)
    lengths = embedder.token_lengths(sample)
    timed = max(TIMED_MIN, TIMED_BATCHES * int(embedder.batch_size or 1))
    memos = memos_of(embedder)
    if memos is not None:
        memos.sample.clear()  # this plan's sample replaces an earlier plan's
    # the warm-up on texts beyond the timed ones where there are: the build takes their vectors too
    start = timed if len(sample) >= timed + WARMUP else 0
    vectors = embedder.embed_documents(sample[start : start + WARMUP])
    timing = time_batches(embedder, sample[:timed], lengths[:timed])
    if memos is not None:  # at the timed cost: the warm-up's own time is lazy initialisation
        slots = len(vectors) * max(lengths[start : start + WARMUP], default=0)
        memos.sample.keep(sample[start : start + WARMUP], vectors, timing.seconds_per_slot * slots)
    window = getattr(embedder.model, "max_seq_length", None)
    est = from_sample(timing, lengths, window, docs, embedder.device_label, store_runs(ws.state, ws.store_url, device))
    est["precision"] = embedder.precision
    est.update(torch_agreement(embedder, compared))
    return est
