"""Label-free similarity of two rankings: top-k overlap and rank-biased overlap.

Without judgements one can still see *how much* a new model changes what
users get. Both measures are 1 for identical lists and 0 for disjoint ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|A ∩ B| / k for the top k of each list (not Jaccard).

    It reads as "the share of the top k that stayed". When a searcher returns
    fewer than k results (a tiny index) the divisor is the longer list's
    length, so two identical short lists still score 1; two empty lists
    score 1 too (nothing changed).
    """
    top_a, top_b = set(a[:k]), set(b[:k])
    size = max(len(top_a), len(top_b))
    return len(top_a & top_b) / size if size else 1.0


def rbo_ext(a: Sequence[str], b: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap, RBO_ext (Webber, Moffat & Zobel 2010, eq. 32).

    ``p`` is the persistence: the weight of the top d ranks is 1 - p**d, so
    with p = 0.9 the top 10 carry about 65% of the weight. Lists of unequal
    length are handled as in the paper: agreement beyond the shorter list is
    extrapolated, so a list that is a prefix of the other scores 1. Items are
    assumed unique (``metrics.rank`` removes duplicates).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"RBO persistence p must be in (0, 1), got {p}")
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, l = len(short), len(long_)  # noqa: E741 - the paper's names: s and l, the two depths
    if s == 0:
        return 1.0 if l == 0 else 0.0

    # X[d-1] = overlap of short[:d] and long[:d] (short[:d] is all of short
    # beyond s). An item shared at positions i and j is counted from depth max(i, j).
    position_in_long = {doc: j for j, doc in enumerate(long_, start=1)}
    shared_from = [max(i, position_in_long[doc]) for i, doc in enumerate(short, start=1) if doc in position_in_long]
    overlap = np.cumsum(np.bincount(np.asarray(shared_from, dtype=np.int64), minlength=l + 1)[1:])

    depths = np.arange(1, l + 1, dtype=np.float64)
    weights = p**depths
    x_s, x_l = overlap[s - 1], overlap[l - 1]
    agreement = (overlap / depths * weights).sum()
    beyond_short = depths[s:]
    extrapolated = (x_s * (beyond_short - s) / (s * beyond_short) * weights[s:]).sum()
    tail = ((x_l - x_s) / l + x_s / s) * p**l
    return float((1.0 - p) / p * (agreement + extrapolated) + tail)
