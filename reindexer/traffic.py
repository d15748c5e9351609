"""The label-free A/B of real traffic: what the shadow mirror recorded, summarised.

Each record holds one live query's top-k ids from the live version and from the
shadow (reindexer.shadow), so agreement can be measured at any cut-off up to the
k that was asked, and latencies compared percentile by percentile.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import numpy as np

from reindexer.errors import UsageError
from reindexer.evaluation.overlap import overlap_at_k, rbo_ext

PERCENTILES = (5, 25, 50, 75, 95)
LATENCY_PERCENTILES = (50, 95, 99)
HISTOGRAM_EDGES = tuple(round(x, 1) for x in np.linspace(0.0, 1.0, 11))


@dataclass(frozen=True)
class Distribution:
    n: int
    mean: float
    min: float
    percentiles: dict[int, float]

    @classmethod
    def of(cls, values: list[float], percentiles: tuple[int, ...] = PERCENTILES) -> Distribution:
        if not values:
            return cls(0, float("nan"), float("nan"), {p: float("nan") for p in percentiles})
        arr = np.asarray(values, dtype=np.float64)
        return cls(
            len(values), float(arr.mean()), float(arr.min()), {p: float(np.percentile(arr, p)) for p in percentiles}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": _round(self.mean),
            "min": _round(self.min),
            **{f"p{p}": _round(v) for p, v in self.percentiles.items()},
        }


@dataclass(frozen=True)
class ChangedQuery:
    query: str
    """The text where the operator enabled recording it, else the first 12 hex of its sha256."""
    overlap: float
    rbo: float
    live_top: list[str]
    shadow_top: list[str]


@dataclass
class TrafficSummary:
    collection: str
    live: str | None
    shadow: str | None
    live_model: str | None
    shadow_model: str | None
    queries: int
    k: int
    first: datetime | None
    last: datetime | None
    overlap: Distribution
    rbo: Distribution
    histogram: list[int]
    """Counts of overlap@k in [0, .1), [.1, .2) ... [.9, 1.0]."""
    live_ms: Distribution
    shadow_ms: Distribution
    most_changed: list[ChangedQuery] = field(default_factory=list)
    per_query_overlap: list[float] = field(default_factory=list, repr=False)
    _records: list[Any] = field(default_factory=list, repr=False)

    def overlap_at(self, k: int) -> float:
        """Mean overlap@k, recomputed from the stored ids of the queries that asked for k or more."""
        deep = [r for r in self._records if r.k >= k]
        if self._records and not deep:
            largest = max(r.k for r in self._records)
            raise UsageError(
                f"the mirrored queries asked for at most {largest} results; overlap@{k} needs more",
                hint=f"use overlap@{largest} or less, or mirror queries with a larger k",
            )
        values = [overlap_at_k(r.live_ids, r.shadow_ids, k) for r in deep]
        return float(np.mean(values)) if values else float("nan")

    def latency_ratio(self, percentile: int) -> float:
        """Shadow latency over live latency at one percentile."""
        live = _percentile([r.live_ms for r in self._records], percentile)
        shadow = _percentile([r.shadow_ms for r in self._records], percentile)
        return shadow / live if live > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "live": self.live,
            "shadow": self.shadow,
            "live_model": self.live_model,
            "shadow_model": self.shadow_model,
            "queries": self.queries,
            "k": self.k,
            "first": _iso(self.first),
            "last": _iso(self.last),
            f"overlap@{self.k}": self.overlap.to_dict(),
            "rbo": self.rbo.to_dict(),
            "overlap_histogram": {
                f"{lo:.1f}-{hi:.1f}": n for (lo, hi), n in zip(pairwise(HISTOGRAM_EDGES), self.histogram, strict=True)
            },
            "live_ms": self.live_ms.to_dict(),
            "shadow_ms": self.shadow_ms.to_dict(),
            "latency_ratio": {
                f"p{p}": _round(self.latency_ratio(p)) if self.queries else None for p in LATENCY_PERCENTILES
            },
            "most_changed": [c.__dict__ for c in self.most_changed],
        }


def summarize(collection: str, records: list[Any], worst: int = 10) -> TrafficSummary:
    """Summarise mirrored queries against one shadow: the newest record's (live, shadow) pair."""
    if records:
        newest = records[-1]
        records = [r for r in records if r.shadow == newest.shadow and r.live == newest.live]
    # The headline cut-off is the k most queries asked for; agreement at k counts the queries that asked for k or more.
    k = Counter(r.k for r in records).most_common(1)[0][0] if records else 10
    deep = [r for r in records if r.k >= k]
    overlaps = [overlap_at_k(r.live_ids, r.shadow_ids, k) for r in deep]
    rbos = [rbo_ext(r.live_ids[:k], r.shadow_ids[:k]) for r in deep]
    histogram = np.histogram(overlaps, bins=np.asarray(HISTOGRAM_EDGES))[0].tolist() if deep else [0] * 10
    order = sorted(range(len(deep)), key=lambda i: (rbos[i], overlaps[i]))[:worst]
    changed = [
        ChangedQuery(
            deep[i].query_text or deep[i].query_hash[:12],
            round(overlaps[i], 4),
            round(rbos[i], 4),
            deep[i].live_ids[:5],
            deep[i].shadow_ids[:5],
        )
        for i in order
    ]
    first = records[0] if records else None
    last = records[-1] if records else None
    return TrafficSummary(
        collection=collection,
        live=last.live if last else None,
        shadow=last.shadow if last else None,
        live_model=last.live_model if last else None,
        shadow_model=last.shadow_model if last else None,
        queries=len(records),
        k=k,
        first=first.at if first else None,
        last=last.at if last else None,
        overlap=Distribution.of(overlaps),
        rbo=Distribution.of(rbos),
        histogram=histogram,
        live_ms=Distribution.of([r.live_ms for r in records], LATENCY_PERCENTILES),
        shadow_ms=Distribution.of([r.shadow_ms for r in records], LATENCY_PERCENTILES),
        most_changed=changed,
        per_query_overlap=overlaps,
        _records=records,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: an ISO-8601 time (UTC unless it says otherwise) or a duration back from now (30m, 6h, 2d)."""
    if text is None or not str(text).strip():
        return None
    m = _DURATION.match(str(text))
    now = now or datetime.now(timezone.utc)
    if m:
        return now - timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since: not a time or a duration: {text!r}",
            hint="use an ISO time such as 2026-12-01T09:00 or a duration such as 30m, 6h, 2d",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _percentile(values: list[float], p: int) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), p)) if values else float("nan")


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 4)


def _iso(dt: datetime | None) -> str | None:
    from reindexer.state.models import iso

    return iso(dt)
