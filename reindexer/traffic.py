"""The label-free A/B of real traffic: what the shadow mirror recorded, summarised.

Each record holds one live query's top-k ids from the live version and from the
shadow (reindexer.shadow), so agreement can be measured at any cut-off up to the
k that was asked, and latencies compared percentile by percentile.

Traffic is looked at again and again (by an operator, by a schedule that runs the
gate every few minutes as mirrored queries accumulate), and a fixed-sample test read
at every look is bound to cross its threshold by chance sooner or later. A traffic
clause with a level (``traffic overlap@10 >= 0.6 at p < 0.05``) is therefore judged by
``always_valid``: a test whose error rate holds however often and whenever it is read.
It is a betting e-process for the mean of a bounded measure (Waudby-Smith & Ramdas,
"Estimating means of bounded random variables by betting", JRSS-B 2024): a
gambler starts with 1 and, query after query in arrival order, stakes a predictable
share of the capital on the measure being on the clause's side of the threshold. While
the clause is false (the true mean is on the wrong side, or at the threshold) the
capital is a non-negative supermartingale, so by Ville's inequality it ever reaches
1/alpha with probability at most alpha. The always-valid p-value is 1 / the highest
capital so far; the always-valid confidence bound is the edge of the thresholds
whose capital has reached 1/alpha (each of them rejected). This is the always-valid
inference of the mixture SPRT (Johari, Koomen, Pekelis & Walsh, "Always valid
inference", Operations Research 2022) with a bet in place of the Gaussian mixture:
overlap, RBO and the latency indicator are bounded in [0, 1] and far from normal
(overlap@10 takes 11 values), and the betting test needs no variance assumption, at
any number of queries. A clause without a level keeps today's rule (the point
estimate against the threshold) and shows its always-valid p-value beside it.
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

    def per_query(self, measure: str, ratio: float | None = None) -> np.ndarray:
        """One value per mirrored query, in arrival order, of ``measure``: "overlap@K", "rbo" (at the
        headline k), or "pNN latency" (1 where the shadow took more than ``ratio`` times the live
        query's time, else 0: the pNN of the per-query ratio is at most ``ratio`` exactly when at most
        1 - NN/100 of the queries are that slow)."""
        if measure.startswith("overlap@"):
            k = int(measure.split("@")[1])
            self.overlap_at(k)  # refuses a cut-off deeper than the queries asked for
            return np.asarray([overlap_at_k(r.live_ids, r.shadow_ids, k) for r in self._records if r.k >= k])
        if measure == "rbo":
            k = self.k
            return np.asarray([rbo_ext(r.live_ids[:k], r.shadow_ids[:k]) for r in self._records if r.k >= k])
        if measure.endswith("latency") and ratio is not None:
            return np.asarray([float(r.shadow_ms > ratio * r.live_ms) for r in self._records])
        raise ValueError(f"no per-query values for {measure!r}")

    def sequential(self, measure: str, op: str, value: float, alpha: float) -> SequentialTest:
        """The always-valid test of the clause ``traffic MEASURE OP VALUE`` (see ``always_valid``)."""
        above = op in (">=", ">")
        if measure.endswith("latency"):
            share = 1.0 - int(measure[1:].split()[0]) / 100.0
            # "pNN latency <= r": at most 1 - NN/100 of the queries slower than r x live: the indicator's mean below
            return always_valid(self.per_query(measure, value), share, "above" if above else "below", alpha, measure)
        return always_valid(self.per_query(measure), value, "above" if above else "below", alpha, measure)

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


SEQUENTIAL_METHOD = "always-valid betting e-process (Waudby-Smith & Ramdas 2024), valid under repeated looks"
_TRUNCATION = 0.5
"""Bets are capped at half the capital that could be lost on one query, as the paper recommends."""
_BISECTIONS = 20
"""Halvings of [0, 1] that find the confidence bound (to 1e-6; the bound reported is the outer end)."""


@dataclass(frozen=True)
class SequentialTest:
    """A traffic clause's always-valid test: is the mean of a per-query measure above (below) a threshold?"""

    measure: str
    side: str
    """"above": the clause holds when the mean exceeds the threshold; "below": when it is under it."""
    threshold: float
    alpha: float
    n: int
    estimate: float
    """The mean so far (the latency clauses': the share of queries slower than the allowed ratio)."""
    p_value: float
    """Always valid: the chance, were the clause false, that the capital ever got this high."""
    bound: float
    """The always-valid (1 - alpha) confidence bound of the mean: lower for "above", upper for "below"."""
    method: str = SEQUENTIAL_METHOD

    @property
    def holds(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "side": self.side,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "n": self.n,
            "estimate": _round(self.estimate),
            "p_value": None if self.p_value != self.p_value else float(self.p_value),
            "bound": _round(self.bound),
            "method": self.method,
        }


def _log_capital_paths(y: np.ndarray, m: np.ndarray, alpha: float) -> np.ndarray:
    """log capital after each query (rows) per candidate mean ``m`` (columns), betting the mean of ``y`` exceeds it.

    The stake is the predictable plug-in of Waudby-Smith & Ramdas (its one-sided form): it reads
    only the queries before the current one, so the product stays a supermartingale under the null.
    """
    t = np.arange(1, y.size + 1, dtype=np.float64)
    mean = (0.5 + np.cumsum(y)) / (t + 1)
    var = (0.25 + np.cumsum((y - mean) ** 2)) / (t + 1)
    previous_var = np.concatenate(([0.25], var[:-1]))
    stake = np.sqrt(2 * np.log(1 / alpha) / (previous_var * t * np.log1p(t)))
    cap = np.where(m > 0, _TRUNCATION / np.maximum(m, 1e-12), np.inf)
    lam = np.minimum(stake[:, None], cap[None, :])
    # 1 + lam * (y - m) >= 1 - _TRUNCATION > 0: lam <= 0.5 / m and y - m >= -m
    return np.cumsum(np.log1p(lam * (y[:, None] - m[None, :])), axis=0)


def _oriented(values: Any, threshold: float, side: str) -> tuple[np.ndarray, float]:
    """The values and threshold turned so that the clause holds when the mean is *above*: "below m" is
    "above 1 - m" for 1 - x."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return (1.0 - x, 1.0 - threshold) if side == "below" else (x, threshold)


def capital_path(values: Any, threshold: float, side: str, alpha: float = 0.05) -> np.ndarray:
    """log of the test's capital after each query: the always-valid p-value after query t is
    ``exp(-max(0, path[:t + 1].max()))``, and the clause holds at a look once the capital reached 1/alpha."""
    y, m = _oriented(values, threshold, side)
    return _log_capital_paths(y, np.asarray([m]), alpha)[:, 0]


def _highest(y: np.ndarray, m: float, alpha: float) -> float:
    """log of the highest capital reached so far (at least 0: the start) against the candidate mean ``m``."""
    return max(0.0, float(_log_capital_paths(y, np.asarray([m]), alpha).max())) if y.size else 0.0


def _bound(y: np.ndarray, alpha: float) -> float:
    """The always-valid lower confidence bound of the mean of ``y``: the largest candidate mean rejected so far.

    Every bet's factor 1 + lam (y - m) falls as m rises, so the capital does too and the rejected means
    are an interval [0, bound): bisection finds its end; the lower end of the last bracket is returned.
    """
    level = np.log(1 / alpha)
    if _highest(y, 0.0, alpha) < level:
        return 0.0
    low, high = 0.0, 1.0  # low rejected; high = 1 never is (no value exceeds it)
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        low, high = (mid, high) if _highest(y, mid, alpha) >= level else (low, mid)
    return low


def always_valid(values: Any, threshold: float, side: str, alpha: float, measure: str = "") -> SequentialTest:
    """The always-valid test that the mean of ``values`` (in [0, 1], in arrival order) is ``side`` ``threshold``.

    The p-value may be read after every query, as often as wanted: the chance that it ever falls
    below ``alpha`` while the clause is false is at most ``alpha``.
    """
    y, m = _oriented(values, threshold, side)
    # a mean above the top of the scale cannot be shown, nor anything from no queries
    p = 1.0 if m >= 1 or not y.size else float(min(1.0, np.exp(-_highest(y, m, alpha))))
    bound = _bound(y, alpha)
    estimate = float(np.mean(values)) if y.size else float("nan")
    flipped = side == "below"
    return SequentialTest(measure, side, threshold, alpha, int(y.size), estimate, p, 1.0 - bound if flipped else bound)


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
