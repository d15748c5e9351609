"""Run the same queries against two or more index versions and compare them.

A *searcher* is any callable ``(query texts, k) -> ranked [(doc id, score)]
lists``, one list per query. The caller builds one per index version, encoding
queries with that version's own model; this module never sees a model or an
index, which keeps it testable with plain functions.

``evaluate`` needs relevance judgements (qrels); ``compare_unlabelled`` only
needs queries and says how much the results moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reindexer.errors import ReindexError, UsageError
from reindexer.evaluation.inputs import RELEVANCE_THRESHOLD, LabelledQueries, SkippedCounts, align
from reindexer.evaluation.metrics import METRICS, compute, metric_name, metric_names, rank
from reindexer.evaluation.overlap import overlap_at_k, rbo_ext
from reindexer.evaluation.significance import PairedTest, bootstrap_means, paired_tests

Searcher = Callable[[list[str], int], list[list[tuple[str, float]]]]

DEFAULT_KS = (1, 3, 5, 10, 20, 50, 100)
"""Cut-offs reported by default: those up to the headline k, plus k itself."""


@dataclass(frozen=True)
class Regression:
    """A query on which the candidate did worse than the baseline."""

    query_id: str
    query_text: str
    metric: str
    baseline_value: float
    candidate_value: float
    delta: float
    missed_relevant: list[str]
    """Relevant documents in the baseline's top k that the candidate's top k lacks, in baseline order."""

    def as_dict(self) -> dict[str, object]:
        return {
            "query_id": self.query_id,
            "query_text": self.query_text,
            "metric": self.metric,
            "baseline": self.baseline_value,
            "candidate": self.candidate_value,
            "delta": self.delta,
            "missed_relevant": list(self.missed_relevant),
        }


@dataclass(frozen=True)
class WorstQuery:
    """One of the queries a version answers worst: the baseline's material for error analysis."""

    query_id: str
    query_text: str
    metric: str
    value: float
    missed_relevant: list[str]
    """Relevant documents not in the version's top k, most relevant first."""
    relevant_ranks: dict[str, int | None] = field(default_factory=dict)
    """Every relevant document's rank within the search depth (1-based), None when beyond it; best first."""

    def as_dict(self) -> dict[str, object]:
        return {
            "query_id": self.query_id,
            "query_text": self.query_text,
            "metric": self.metric,
            "value": self.value,
            "missed_relevant": list(self.missed_relevant),
            "relevant_ranks": dict(self.relevant_ranks),
        }


@dataclass(frozen=True)
class Comparison:
    """One candidate against the baseline, every metric."""

    baseline: str
    candidate: str
    tests: dict[str, PairedTest]
    worst_regressions: list[Regression] = field(default_factory=list)

    def __getitem__(self, metric: str) -> PairedTest:
        return self.tests[metric]


@dataclass(frozen=True)
class EvaluationResult:
    versions: list[str]
    """Baseline first, then candidates in the order given."""
    baseline: str
    k: int
    ks: list[int]
    metrics: list[str]
    """Canonical metric names, e.g. ``ndcg@10``, in report order."""
    query_ids: list[str]
    queries: dict[str, str]
    means: dict[str, dict[str, float]]
    """version -> metric -> mean over ``query_ids``."""
    per_query: dict[str, dict[str, np.ndarray]]
    """version -> metric -> values aligned with ``query_ids``."""
    comparisons: dict[str, Comparison]
    """candidate -> comparison against the baseline."""
    skipped: SkippedCounts
    seed: int | None
    resamples: int
    confidence: float
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)
    """version -> query id -> ranked doc ids (top ``depth``)."""
    depth: int = 0
    """How many results each query asked for (at least the largest cut-off)."""
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    """version -> metric -> percentile bootstrap interval of the mean (absolute, not a difference)."""
    worst_queries: dict[str, list[WorstQuery]] = field(default_factory=dict)
    """version -> the queries it answers worst on the headline metric, with the relevant documents missed."""
    pairs: dict[str, Comparison] = field(default_factory=dict)
    """"candidate vs baseline" -> comparison, for pairs of arms beyond each candidate against the baseline
    (the pipelines' questions: new dense against old hybrid, against lexical alone ...)."""
    pipelines: dict[str, object] = field(default_factory=dict)
    """What the non-dense arms ran (pipelines, lexical settings, fusion), for the reports; empty for dense alone."""
    arms: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    """searcher name -> (version, pipeline) for pipeline arms (``v2:hybrid``, ``lexical``: version None);
    a name not here is a version searched densely."""

    @property
    def candidates(self) -> list[str]:
        return [v for v in self.versions if v != self.baseline]

    @property
    def headline_metric(self) -> str:
        return metric_name("ndcg", self.k)

    @property
    def version_candidates(self) -> list[str]:
        """The candidates that are versions (their dense arms), not other pipelines' arms."""
        return [c for c in self.candidates if self.arms.get(c, (c, "dense"))[1] == "dense"]

    def arm(self, version: str | None, pipeline: str) -> str:
        """The searcher name of ``version`` under ``pipeline``."""
        if pipeline == "dense" and version is not None:
            return version
        for name, (arm_version, arm_pipeline) in self.arms.items():
            if arm_pipeline == pipeline and (arm_version == version or arm_version is None):
                return name
        raise UsageError(
            f"the {pipeline} pipeline was not evaluated",
            hint="evaluate with --pipelines naming it, e.g. --pipelines dense,lexical,hybrid",
        )

    def comparison_for(self, candidate: str, candidate_pipeline: str, baseline_pipeline: str) -> Comparison:
        """The candidate version under one pipeline against the baseline version under another."""
        return self.compare(self.arm(self.baseline, baseline_pipeline), self.arm(candidate, candidate_pipeline))

    def compare(self, baseline: str, candidate: str) -> Comparison:
        """``candidate`` against ``baseline``, any two arms: the recorded comparison, or a new paired test."""
        if baseline == self.baseline and candidate in self.comparisons:
            return self.comparisons[candidate]
        key = pair_name(baseline, candidate)
        if key not in self.pairs:
            for name in (baseline, candidate):
                if name not in self.per_query:
                    raise UsageError(f"{name!r} was not evaluated (arms: {', '.join(self.versions)})")
            tests = paired_tests(
                {m: self.per_query[baseline][m] for m in self.metrics},
                {m: self.per_query[candidate][m] for m in self.metrics},
                seed=self.seed,
                resamples=self.resamples,
                permutations=self.resamples,
                confidence=self.confidence,
            )
            self.pairs[key] = Comparison(baseline, candidate, tests)
        return self.pairs[key]

    def deltas(self, candidate: str, metric: str) -> np.ndarray:
        """Per-query candidate - baseline for one metric."""
        return self.per_query[candidate][metric] - self.per_query[self.baseline][metric]


def pair_name(baseline: str, candidate: str) -> str:
    return f"{candidate} vs {baseline}"


def _order_versions(names: Sequence[str], baseline: str | None) -> tuple[list[str], str]:
    if not names:
        raise UsageError("no index versions to evaluate")
    if baseline is None:
        baseline = names[0]
    if baseline not in names:
        raise UsageError(f"baseline {baseline!r} is not among the versions: {', '.join(names)}")
    return [baseline] + [n for n in names if n != baseline], baseline


def bootstrap_intervals(
    values: Mapping[str, np.ndarray], *, seed: int | None, resamples: int, confidence: float
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of the mean of each metric's per-query values."""
    names = list(values)
    if not names:
        return {}
    matrix = np.column_stack([np.asarray(values[m], dtype=np.float64) for m in names])
    if matrix.shape[0] == 0:
        return {m: (math.nan, math.nan) for m in names}
    alpha = 1.0 - confidence
    means = bootstrap_means(matrix, resamples, np.random.default_rng(seed))
    lows, highs = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return {m: (float(lows[j]), float(highs[j])) for j, m in enumerate(names)}


def _worst_queries(
    rankings: Mapping[str, list[str]],
    metric: str,
    k: int,
    query_ids: Sequence[str],
    labelled: LabelledQueries,
    values: np.ndarray,
    limit: int,
) -> list[WorstQuery]:
    """The ``limit`` queries with the lowest ``metric``, and the relevant documents their top k lacks."""
    out = []
    for i in np.argsort(values, kind="stable")[:limit]:
        qid = query_ids[i]
        ranked = rankings[qid]
        if values[i] >= 1.0:
            continue  # a perfect answer is nobody's worst
        top = set(ranked[:k])
        position = {d: r for r, d in enumerate(ranked, start=1)}
        relevant = [d for d, g in labelled.qrels[qid].items() if g >= RELEVANCE_THRESHOLD]
        relevant.sort(key=lambda d: (position.get(d, len(ranked) + 1), -labelled.qrels[qid][d], d))
        missed = [d for d in relevant if d not in top]
        ranks = {d: position.get(d) for d in relevant}
        out.append(WorstQuery(qid, labelled.queries[qid], metric, float(values[i]), missed, ranks))
    return out


def _resolve_ks(k: int, ks: Sequence[int] | None) -> list[int]:
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    if ks is None:
        chosen = {x for x in DEFAULT_KS if x <= k} | {k}
    else:
        chosen = {int(x) for x in ks} | {k}
    if min(chosen) < 1:
        raise UsageError(f"cut-offs must be at least 1, got {sorted(chosen)}")
    return sorted(chosen)


def search_all(
    name: str, searcher: Searcher, texts: Sequence[str], depth: int, batch_size: int
) -> list[list[tuple[str, float]]]:
    """Call ``searcher`` batch by batch; results come back ranked the trec_eval way and cut at ``depth``."""
    results: list[list[tuple[str, float]]] = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        answer = searcher(batch, depth)
        if len(answer) != len(batch):
            raise ReindexError(f"searcher {name!r} returned {len(answer)} result lists for {len(batch)} queries")
        try:
            results.extend(rank(hits)[:depth] for hits in answer)
        except ValueError as exc:
            raise ReindexError(f"searcher {name!r}: {exc}") from exc
    return results


def _ranked_ids(
    name: str, searcher: Searcher, queries: Mapping[str, str], depth: int, batch_size: int
) -> dict[str, list[str]]:
    """{query id: ranked doc ids} for every query, scores dropped once the order is fixed."""
    query_ids = list(queries)
    ranked = search_all(name, searcher, [queries[q] for q in query_ids], depth, batch_size)
    return {qid: [doc for doc, _ in hits] for qid, hits in zip(query_ids, ranked, strict=True)}


def _regressions(
    base_rankings: Mapping[str, list[str]],
    cand_rankings: Mapping[str, list[str]],
    metric: str,
    k: int,
    query_ids: Sequence[str],
    labelled: LabelledQueries,
    base_values: np.ndarray,
    cand_values: np.ndarray,
    limit: int,
) -> list[Regression]:
    """The ``limit`` queries that lost most on ``metric``, with the relevant documents lost."""
    delta = cand_values - base_values
    # stable sort: among equal losses, query-file order
    worst = [i for i in np.argsort(delta, kind="stable")[:limit] if delta[i] < 0]
    out = []
    for i in worst:
        qid = query_ids[i]
        judged = labelled.qrels[qid]
        cand_top = set(cand_rankings[qid][:k])
        missed = [d for d in base_rankings[qid][:k] if judged.get(d, 0) >= RELEVANCE_THRESHOLD and d not in cand_top]
        out.append(
            Regression(
                query_id=qid,
                query_text=labelled.queries[qid],
                metric=metric,
                baseline_value=float(base_values[i]),
                candidate_value=float(cand_values[i]),
                delta=float(delta[i]),
                missed_relevant=missed,
            )
        )
    return out


def evaluate(
    searchers: Mapping[str, Searcher],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    ks: Sequence[int] | None = None,
    baseline: str | None = None,
    seed: int | None = 0,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    worst: int = 10,
    batch_size: int = 256,
    depth: int | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    pipelines: Mapping[str, object] | None = None,
    arms: Mapping[str, tuple[str | None, str]] | None = None,
) -> EvaluationResult:
    """Evaluate every searcher on the judged queries and compare each candidate with the baseline.

    ``k`` is the headline cut-off (worst regressions are ranked by ndcg@k and
    judged on the top k); ``ks`` adds other cut-offs (default 1, 3, 5, 10 ...
    up to k). Searchers are asked for ``max(ks)`` results. Queries without a
    relevant judgement and qrels of unknown queries are skipped and counted in
    ``result.skipped``. ``depth`` is how many results each query asks for
    (default: the largest cut-off), so recall@100 can be reported beside a
    headline nDCG@10. A single searcher is an absolute evaluation: means with
    bootstrap intervals, per-query values and worst queries, no comparison.
    ``pairs`` adds (baseline, candidate) comparisons between any two searchers, in ``result.pairs``;
    ``arms`` names the (version, pipeline) of searchers that are pipelines' arms, and ``pipelines``
    describes what they ran.
    """
    versions, baseline = _order_versions(list(searchers), baseline)
    cutoffs = _resolve_ks(k, ks)
    depth = _search_depth(cutoffs, depth)
    labelled = align(queries, qrels)
    query_ids = list(labelled.queries)
    judged = [labelled.qrels[q] for q in query_ids]
    rankings = {v: _ranked_ids(v, searchers[v], labelled.queries, depth, batch_size) for v in versions}
    per_query = {v: compute([rankings[v][q] for q in query_ids], judged, cutoffs) for v in versions}

    names = metric_names(cutoffs, METRICS)
    headline = metric_name("ndcg", k)

    def compared(candidate: str) -> Comparison:
        tests = paired_tests(
            {m: per_query[baseline][m] for m in names},
            {m: per_query[candidate][m] for m in names},
            seed=seed,
            resamples=resamples,
            permutations=resamples,
            confidence=confidence,
        )
        regressions = _regressions(
            rankings[baseline], rankings[candidate], headline, k, query_ids, labelled,
            per_query[baseline][headline], per_query[candidate][headline], worst,
        )  # fmt: skip
        return Comparison(baseline, candidate, tests, regressions)

    result = EvaluationResult(
        versions=versions,
        baseline=baseline,
        k=k,
        ks=cutoffs,
        metrics=names,
        query_ids=query_ids,
        queries=dict(labelled.queries),
        means={v: {m: float(per_query[v][m].mean()) for m in names} for v in versions},
        per_query=per_query,
        comparisons={candidate: compared(candidate) for candidate in versions[1:]},
        skipped=labelled.skipped,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
        rankings=rankings,
        depth=depth,
        intervals={
            v: bootstrap_intervals(
                {m: per_query[v][m] for m in names}, seed=seed, resamples=resamples, confidence=confidence
            )
            for v in versions
        },
        worst_queries={
            v: _worst_queries(rankings[v], headline, k, query_ids, labelled, per_query[v][headline], worst)
            for v in versions
        },
        pipelines=dict(pipelines or {}),
        arms=dict(arms or {}),
    )
    for base, cand in pairs:
        result.compare(base, cand)
    return result


def _search_depth(cutoffs: list[int], depth: int | None) -> int:
    """How many results each query asks for: ``depth``, never below the largest cut-off (the default)."""
    depth = cutoffs[-1] if depth is None else int(depth)
    if depth < cutoffs[-1]:
        raise UsageError(
            f"search depth {depth} is below the largest cut-off {cutoffs[-1]}",
            hint=f"pass --depth {cutoffs[-1]} or more, or smaller cut-offs",
        )
    return depth


# --- label-free comparison -------------------------------------------------


@dataclass(frozen=True)
class ChangedQuery:
    query_id: str
    query_text: str
    overlap: float
    rbo: float
    dropped: list[str]
    """In the baseline's top k, not in the candidate's."""
    added: list[str]
    """In the candidate's top k, not in the baseline's."""

    def as_dict(self) -> dict[str, object]:
        return {
            "query_id": self.query_id,
            "query_text": self.query_text,
            "overlap": self.overlap,
            "rbo": self.rbo,
            "dropped": list(self.dropped),
            "added": list(self.added),
        }


@dataclass(frozen=True)
class UnlabelledComparison:
    baseline: str
    candidate: str
    overlap: np.ndarray
    """Per query |A ∩ B| / k, aligned with the result's ``query_ids``."""
    rbo: np.ndarray
    """Per query RBO_ext with persistence ``p``."""
    most_changed: list[ChangedQuery]
    unchanged: int = 0
    """Queries whose top k is identical, order included."""

    @property
    def mean_overlap(self) -> float:
        return float(self.overlap.mean()) if self.overlap.size else 1.0

    @property
    def mean_rbo(self) -> float:
        return float(self.rbo.mean()) if self.rbo.size else 1.0


@dataclass(frozen=True)
class UnlabelledResult:
    versions: list[str]
    baseline: str
    k: int
    p: float
    query_ids: list[str]
    queries: dict[str, str]
    comparisons: dict[str, UnlabelledComparison]
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)


def _changed_query(
    qid: str,
    queries: Mapping[str, str],
    base: Mapping[str, list[str]],
    cand: Mapping[str, list[str]],
    overlap: float,
    rbo: float,
) -> ChangedQuery:
    base_docs, cand_docs = set(base[qid]), set(cand[qid])
    return ChangedQuery(
        query_id=qid,
        query_text=queries[qid],
        overlap=float(overlap),
        rbo=float(rbo),
        dropped=[d for d in base[qid] if d not in cand_docs],
        added=[d for d in cand[qid] if d not in base_docs],
    )


def compare_unlabelled(
    searchers: Mapping[str, Searcher],
    query_texts: Mapping[str, str] | Sequence[str],
    k: int = 10,
    baseline: str | None = None,
    *,
    p: float = 0.9,
    most_changed: int = 10,
    batch_size: int = 256,
) -> UnlabelledResult:
    """How much each candidate's top k differs from the baseline's, without judgements.

    ``overlap@k`` is |A ∩ B| / k (the share of the baseline's top k that the
    candidate kept; not Jaccard; see ``overlap_at_k`` for short lists), ``rbo`` is Webber et al.'s extrapolated
    rank-biased overlap, which weighs agreement near the top more. Both are 1
    for identical results and 0 for disjoint ones. ``query_texts`` is a
    {query id: text} mapping (see ``load_query_log``) or a plain list, whose
    ids become the list positions.
    """
    versions, baseline = _order_versions(list(searchers), baseline)
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    if isinstance(query_texts, Mapping):
        queries = dict(query_texts)
    else:
        queries = {str(i): text for i, text in enumerate(query_texts)}
    if not queries:
        raise UsageError("no queries to compare")
    query_ids = list(queries)
    rankings = {v: _ranked_ids(v, searchers[v], queries, k, batch_size) for v in versions}
    comparisons = {}
    for candidate in versions[1:]:
        base, cand = rankings[baseline], rankings[candidate]
        overlap = np.array([overlap_at_k(base[q], cand[q], k) for q in query_ids])
        rbo = np.array([rbo_ext(base[q], cand[q], p) for q in query_ids])
        # most changed first: lowest RBO, then lowest overlap, then file order
        order = np.lexsort((np.arange(len(query_ids)), overlap, rbo))
        moved = [i for i in order if base[query_ids[i]] != cand[query_ids[i]]][:most_changed]
        changed = [_changed_query(query_ids[i], queries, base, cand, overlap[i], rbo[i]) for i in moved]
        unchanged = len(query_ids) - sum(base[q] != cand[q] for q in query_ids)
        comparisons[candidate] = UnlabelledComparison(baseline, candidate, overlap, rbo, changed, unchanged)
    return UnlabelledResult(versions, baseline, k, p, query_ids, queries, comparisons, rankings)
