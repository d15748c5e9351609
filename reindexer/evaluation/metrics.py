"""Ranking metrics that agree with trec_eval to the last digit.

A run is ``{query id: [(doc id, score), ...]}``; qrels are
``{query id: {doc id: grade}}``. Every metric is computed at once for all
queries and cut-offs from one padded matrix of grades, so the work is a few
numpy cumulative sums whatever the number of queries.

Agreement with trec_eval (checked against pytrec_eval in the tests):

- Ranking: results are sorted by score descending, ties broken by doc id
  descending (trec_eval sorts that way; the order the searcher returned is
  ignored). A document returned twice keeps its best score.
- Relevant means grade >= 1 (trec_eval's default relevance level).
- ``precision@k`` divides by k even when fewer than k results came back.
- ``recall@k`` and ``map@k`` divide by the number of relevant judged
  documents, retrieved or not (``map@k`` is trec_eval's ``map_cut_k``).
- ``ndcg@k`` uses the grade as gain (negative grades count as 0), discount
  log2(rank + 1), and the ideal ranking of all judged documents
  (``ndcg_cut_k``).
- ``mrr@k`` is the reciprocal rank of the first relevant document within the
  top k, 0 if none (trec_eval's ``recip_rank`` on a run cut at k).
- ``hit_rate@k`` is 1 if any relevant document is in the top k (``success_k``).

Queries that are in the qrels but missing from the run score 0 on every
metric (trec_eval's ``-c``), so a searcher cannot improve its mean by
returning nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from reindexer.evaluation.inputs import RELEVANCE_THRESHOLD, has_relevant

Run = Mapping[str, Sequence[tuple[str, float]]]

METRICS = ("ndcg", "recall", "precision", "mrr", "map", "hit_rate")
"""Metric families, in the order reports list them."""

_ALIASES = {
    "ndcg": "ndcg",
    "ndcg_cut": "ndcg",
    "recall": "recall",
    "r": "recall",
    "precision": "precision",
    "p": "precision",
    "mrr": "mrr",
    "rr": "mrr",
    "recip_rank": "mrr",
    "map": "map",
    "map_cut": "map",
    "ap": "map",
    "hit_rate": "hit_rate",
    "hitrate": "hit_rate",
    "hit": "hit_rate",
    "hits": "hit_rate",
    "success": "hit_rate",
}

_NAME = re.compile(r"^\s*([A-Za-z_]+)\s*@\s*(\d+)\s*$")


def parse_metric(name: str) -> tuple[str, int]:
    """``'nDCG@10'`` -> ``('ndcg', 10)``; accepts the aliases P@k, success@k, hit@k ..."""
    m = _NAME.match(name)
    family = _ALIASES.get(m.group(1).lower()) if m else None
    if m is None or family is None or int(m.group(2)) < 1:
        raise ValueError(
            f"unknown metric {name!r}: expected <name>@<k> with k >= 1 and name one of {', '.join(METRICS)}"
        )
    return family, int(m.group(2))


def metric_name(family: str, k: int) -> str:
    """The canonical spelling used as key everywhere: ``ndcg@10``."""
    return f"{family}@{k}"


def metric_names(ks: Iterable[int], families: Iterable[str] = METRICS) -> list[str]:
    """Canonical names grouped by family, then by increasing k."""
    ks = sorted(set(ks))
    return [metric_name(f, k) for f in families for k in ks]


def rank(results: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Sort results as trec_eval does: score descending, then doc id descending.

    Duplicate doc ids keep their highest score, because trec_eval would count
    a document retrieved twice as two hits. Python compares strings by code
    point, which for UTF-8 is the same order as trec_eval's ``strcmp``.
    """
    best: dict[str, float] = {}
    for doc_id, score in results:
        score = float(score)
        if math.isnan(score):
            # NaN compares false both ways, so the sort (and trec_eval's) would be arbitrary
            raise ValueError(f"document {doc_id!r} has a NaN score")
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    return sorted(best.items(), key=lambda item: (item[1], item[0]), reverse=True)


@dataclass(frozen=True)
class QueryMetrics:
    """Per-query values of every metric, aligned with ``query_ids``."""

    query_ids: list[str]
    values: dict[str, np.ndarray]

    def mean(self) -> dict[str, float]:
        return {name: float(v.mean()) if v.size else 0.0 for name, v in self.values.items()}

    def for_query(self, query_id: str) -> dict[str, float]:
        i = self.query_ids.index(query_id)
        return {name: float(v[i]) for name, v in self.values.items()}


def _grade_matrix(ranked_docs: Sequence[Sequence[str]], qrels: Sequence[Mapping[str, int]], depth: int) -> np.ndarray:
    """grades[i, r] = grade of the document at rank r+1 for query i (0 if unjudged or absent)."""
    grades = np.zeros((len(ranked_docs), depth), dtype=np.float64)
    for i, (docs, judged) in enumerate(zip(ranked_docs, qrels, strict=True)):
        row = [judged.get(d, 0) for d in docs[:depth]]
        grades[i, : len(row)] = row
    return grades


def _ideal_gains(qrels: Sequence[Mapping[str, int]], depth: int) -> np.ndarray:
    """ideal[i, r] = the (r+1)-th largest positive grade of query i, 0 beyond."""
    ideal = np.zeros((len(qrels), depth), dtype=np.float64)
    for i, judged in enumerate(qrels):
        gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:depth]
        ideal[i, : len(gains)] = gains
    return ideal


def compute(
    ranked_docs: Sequence[Sequence[str]],
    qrels: Sequence[Mapping[str, int]],
    ks: Iterable[int],
    families: Iterable[str] = METRICS,
) -> dict[str, np.ndarray]:
    """Metrics for already ranked doc id lists, one per query, aligned with ``qrels``.

    The core of ``evaluate_run``; callers that rank themselves (with ``rank``)
    can call it directly.
    """
    ks = sorted(set(int(k) for k in ks))
    families = list(families)
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    unknown = [f for f in families if f not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric families {unknown}; known: {', '.join(METRICS)}")
    depth = ks[-1]

    grades = _grade_matrix(ranked_docs, qrels, depth)
    relevant = grades >= RELEVANCE_THRESHOLD
    num_relevant = np.array(
        [sum(g >= RELEVANCE_THRESHOLD for g in judged.values()) for judged in qrels], dtype=np.float64
    )
    # Divisions by the number of relevant documents give 0, not NaN, for a
    # query without any (pytrec_eval reports 0 there too).
    safe_num_relevant = np.where(num_relevant > 0, num_relevant, 1.0)

    ranks = np.arange(1, depth + 1, dtype=np.float64)
    hits = np.cumsum(relevant, axis=1)  # relevant documents in the top r
    # Precision at each relevant rank; summed up to k and divided by R it is AP@k.
    precision_at_relevant = np.where(relevant, hits / ranks, 0.0).cumsum(axis=1)
    discount = 1.0 / np.log2(ranks + 1.0)
    dcg = (np.maximum(grades, 0.0) * discount).cumsum(axis=1)
    idcg = (_ideal_gains(qrels, depth) * discount).cumsum(axis=1)
    # First relevant rank (1-based), or depth+1 when none was retrieved.
    first_relevant = np.where(relevant.any(axis=1), relevant.argmax(axis=1) + 1, depth + 1)

    out: dict[str, np.ndarray] = {}
    for family in METRICS:
        if family not in families:
            continue
        for k in ks:
            c = k - 1
            if family == "ndcg":
                value = np.divide(dcg[:, c], idcg[:, c], out=np.zeros(len(qrels)), where=idcg[:, c] > 0)
            elif family == "recall":
                value = hits[:, c] / safe_num_relevant
            elif family == "precision":
                value = hits[:, c] / k
            elif family == "mrr":
                value = np.where(first_relevant <= k, 1.0 / first_relevant, 0.0)
            elif family == "map":
                value = precision_at_relevant[:, c] / safe_num_relevant
            else:  # hit_rate
                value = (hits[:, c] > 0).astype(np.float64)
            out[metric_name(family, k)] = value
    return out


def evaluate_run(
    run: Run,
    qrels: Mapping[str, Mapping[str, int]],
    ks: Iterable[int] = (10,),
    families: Iterable[str] = METRICS,
    query_ids: Sequence[str] | None = None,
) -> QueryMetrics:
    """Per-query metrics of a run.

    ``query_ids`` picks and orders the queries scored; by default every query
    of the qrels with at least one relevant document, in qrels order (queries
    with none are skipped, as trec_eval does). Run queries absent from the
    qrels are ignored.
    """
    if query_ids is None:
        query_ids = [qid for qid, judged in qrels.items() if has_relevant(judged)]
    query_ids = list(query_ids)
    ranked = [[doc for doc, _ in rank(run.get(qid, ()))] for qid in query_ids]
    values = compute(ranked, [qrels.get(qid, {}) for qid in query_ids], ks, families)
    return QueryMetrics(query_ids, values)
