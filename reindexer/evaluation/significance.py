"""Paired comparison of two systems on the same queries.

Both tests work on the per-query differences d = candidate - baseline, so a
hard query that both systems fail cancels out (which an unpaired test would
count as noise):

- a percentile bootstrap confidence interval of the mean difference:
  resample queries with replacement, take the mean, read the quantiles;
- a paired randomisation test (sign flip): under the null hypothesis that the
  two systems are exchangeable, each d_i is as likely to be -d_i. The
  two-sided p-value is the share of sign assignments whose |sum| is at least
  the observed one. With few non-zero differences every assignment is
  enumerated (an exact p); otherwise a seeded Monte Carlo sample is used, with
  the +1 correction of Phipson & Smyth (2010) so a p-value is never 0.

All metrics of one comparison share the same resamples and sign vectors, done
as one matrix product per chunk, so they are consistent with each other and
cheap. Results are reproducible for a given seed.

Each comparison also states the standard deviation of its per-query differences and
the minimum detectable effect of the query set: the smallest true mean difference the
test would detect with 80% power at alpha = 1 - confidence, two-sided
(reindexer.evaluation.power).

``adjusted_p_values`` corrects a family of p-values for multiplicity (Holm,
Benjamini-Hochberg), as statsmodels' ``multipletests`` does.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from reindexer.evaluation.power import POWER, minimum_detectable_effect, power_to_detect

TIE_TOLERANCE = 1e-12
"""Per-query differences smaller than this are ties: the same ranking can give
values that differ in the last bit when summed in another order."""

CORRECTION_METHODS = {"holm": "holm", "bh": "fdr_bh", "none": None}
"""Multiplicity corrections by name: statsmodels' ``multipletests`` method, None for none."""

EXACT_MAX_NONZERO = 16
"""Enumerate all 2**m sign vectors up to this many non-zero differences (65,536 rows)."""

_CHUNK_ELEMENTS = 2_000_000
"""Rows of resample matrices are built in chunks of about this many numbers (16 MB)."""


@dataclass(frozen=True)
class PairedTest:
    """One metric, candidate against baseline."""

    n: int
    baseline_mean: float
    candidate_mean: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    ties: int
    confidence: float
    p_method: str  # "exact" or "monte-carlo"
    sd_diff: float = math.nan
    """Standard deviation (ddof 1) of the per-query differences; NaN when not known."""
    mde: float = math.nan
    """Minimum detectable effect: the smallest true |delta| a two-sided test at alpha = 1 - confidence
    detects with 80% power (``mde_power``), given ``sd_diff`` and ``n``; inf when none is detectable."""
    mde_power: float = POWER

    def power_for(self, effect: float, alpha: float) -> float:
        """The chance that this query set's paired test at ``alpha`` detects a true change of ``effect``."""
        return power_to_detect(effect, self.sd_diff, self.n, alpha)

    def mde_at(self, alpha: float, power: float = POWER) -> float:
        """The minimum detectable effect at another level than the comparison's own."""
        return minimum_detectable_effect(self.sd_diff, self.n, alpha, power)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _chunks(total: int, row_width: int) -> list[int]:
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, row_width))
    sizes = [per_chunk] * (total // per_chunk)
    if total % per_chunk:
        sizes.append(total % per_chunk)
    return sizes


def bootstrap_means(diffs: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of each column of ``diffs`` (n x m) -> (resamples x m).

    Each resample is a row of counts (how often each query was drawn), so the
    means of all metrics are one matrix product.
    """
    n = diffs.shape[0]
    out = []
    for size in _chunks(resamples, n):
        draws = rng.integers(0, n, size=(size, n), dtype=np.int32)
        # Flatten (row, query) into one index so one bincount counts every row.
        counts = np.bincount((draws + n * np.arange(size)[:, None]).ravel(), minlength=size * n)
        out.append(counts.reshape(size, n) @ diffs / n)
    return np.vstack(out)


def _exact_p(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p-value over every sign vector of the non-zero d."""
    m = d.size
    if m == 0:
        return 1.0
    bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
    sums = np.abs((1 - 2 * bits) @ d)
    observed = abs(d.sum())
    return float(np.count_nonzero(sums >= observed - _eps(d)) / 2**m)


def _eps(d: np.ndarray) -> np.ndarray:
    # Sums of the same numbers in another order differ by rounding; an
    # assignment that ties the observed statistic must count as "as extreme".
    return 1e-9 * np.maximum(1.0, np.abs(d).sum(axis=0))


def sign_flip_p_values(
    diffs: np.ndarray, permutations: int, rng: np.random.Generator, exact_max: int = EXACT_MAX_NONZERO
) -> tuple[np.ndarray, list[str]]:
    """Two-sided p-value of each column of ``diffs`` (n x m), and how it was computed."""
    n, m = diffs.shape
    nonzero = np.abs(diffs) > TIE_TOLERANCE
    exact = nonzero.sum(axis=0) <= exact_max
    p = np.empty(m)
    for j in np.flatnonzero(exact):
        p[j] = _exact_p(diffs[nonzero[:, j], j])
    sampled = np.flatnonzero(~exact)
    if sampled.size:
        d = np.where(nonzero[:, sampled], diffs[:, sampled], 0.0)
        observed = np.abs(d.sum(axis=0))
        eps = _eps(d)
        extreme = np.zeros(sampled.size, dtype=np.int64)
        for size in _chunks(permutations, n):
            signs = 1.0 - 2.0 * rng.integers(0, 2, size=(size, n), dtype=np.int8)
            extreme += (np.abs(signs @ d) >= observed - eps).sum(axis=0)
        p[sampled] = (extreme + 1) / (permutations + 1)
    methods = ["exact" if e else "monte-carlo" for e in exact]
    return p, methods


def paired_tests(
    baseline: Mapping[str, ArrayLike],
    candidate: Mapping[str, ArrayLike],
    *,
    seed: int | None = 0,
    resamples: int = 10_000,
    permutations: int = 10_000,
    confidence: float = 0.95,
) -> dict[str, PairedTest]:
    """Compare per-query values of every metric in ``baseline`` (keys must match)."""
    if set(baseline) != set(candidate):
        raise ValueError(f"metrics differ: {sorted(set(baseline) ^ set(candidate))}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1 or permutations < 1:
        raise ValueError("resamples and permutations must be at least 1")
    names = list(baseline)
    if not names:
        return {}
    base = np.column_stack([np.asarray(baseline[k], dtype=np.float64) for k in names])
    cand = np.column_stack([np.asarray(candidate[k], dtype=np.float64) for k in names])
    if base.shape != cand.shape:
        raise ValueError(f"paired arrays must have the same length, got {base.shape[0]} and {cand.shape[0]}")
    n = base.shape[0]
    if n == 0:
        raise ValueError("no queries to compare")

    diffs = cand - base
    rng = np.random.default_rng(seed)
    alpha = 1.0 - confidence
    lows, highs = np.quantile(bootstrap_means(diffs, resamples, rng), [alpha / 2, 1 - alpha / 2], axis=0)
    p_values, methods = sign_flip_p_values(diffs, permutations, rng)
    wins = (diffs > TIE_TOLERANCE).sum(axis=0)
    losses = (diffs < -TIE_TOLERANCE).sum(axis=0)
    sds = diffs.std(axis=0, ddof=1) if n > 1 else np.full(len(names), np.nan)

    return {
        name: PairedTest(
            n=n,
            baseline_mean=float(base[:, j].mean()),
            candidate_mean=float(cand[:, j].mean()),
            delta=float(diffs[:, j].mean()),
            ci_low=float(lows[j]),
            ci_high=float(highs[j]),
            p_value=float(p_values[j]),
            wins=int(wins[j]),
            losses=int(losses[j]),
            ties=int(n - wins[j] - losses[j]),
            confidence=confidence,
            p_method=methods[j],
            sd_diff=float(sds[j]),
            mde=minimum_detectable_effect(float(sds[j]), n, alpha),
        )
        for j, name in enumerate(names)
    }


def paired_test(
    baseline: ArrayLike,
    candidate: ArrayLike,
    *,
    seed: int | None = 0,
    resamples: int = 10_000,
    permutations: int = 10_000,
    confidence: float = 0.95,
) -> PairedTest:
    """Compare one metric's per-query values (same queries, same order)."""
    return paired_tests(
        {"metric": baseline},
        {"metric": candidate},
        seed=seed,
        resamples=resamples,
        permutations=permutations,
        confidence=confidence,
    )["metric"]


def adjusted_p_values(p_values: ArrayLike, correction: str) -> np.ndarray:
    """The family's p-values adjusted for multiplicity: ``correction`` is a key of CORRECTION_METHODS.

    "holm": Holm's step-down (controls the family-wise error rate); "bh": Benjamini-Hochberg
    (controls the false discovery rate); "none": unchanged. A test is significant at level
    alpha when its adjusted p-value is below alpha. Non-finite p-values are left out of the
    family and stay as they are; a family of one is its own adjustment.
    """
    if correction not in CORRECTION_METHODS:
        raise ValueError(f"unknown correction {correction!r} (known: {', '.join(CORRECTION_METHODS)})")
    p = np.array(p_values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(p)
    method = CORRECTION_METHODS[correction]
    if method is None or finite.sum() < 2:
        return p
    from statsmodels.stats.multitest import multipletests  # imported here: it takes a second, only gates need it

    with _young_objects_only():
        p[finite] = multipletests(p[finite], method=method)[1]
    return p


@contextmanager
def _young_objects_only() -> Iterator[None]:
    """Keep the objects that exist now out of a full garbage collection for a while.

    statsmodels' Holm branch ends with ``gc.collect()``, a full collection: in a process that
    holds a model (torch, sentence-transformers) it walks half a million objects, seconds per
    gate. Frozen (``gc.freeze``), the objects of before the call are skipped; unfrozen after.
    A process that froze objects itself (a pre-fork server) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
