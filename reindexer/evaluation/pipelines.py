"""Retrieval pipelines as evaluation arms, and reciprocal-rank fusion.

An application rarely runs dense retrieval alone, so an evaluation can run each index version
under several pipelines:

- ``dense``: the version's own model, as the Searcher does (the arm is named ``v2``);
- ``lexical``: BM25 over the texts, which needs no model (one arm, named ``lexical``);
- ``hybrid``: the dense and lexical rankings of the version fused by RRF (named ``v2:hybrid``);
- ``dense+rerank``, ``hybrid+rerank``: that pipeline's top N rescored by a cross-encoder
  (``reindexer.rerank``; named ``v2:hybrid+rerank``).

The dense arms keep their plain names, so an evaluation of dense alone reads exactly as before.
The paired comparisons an operator needs before promoting a model are ``questions``: the new
dense model against the old dense one and against the old hybrid pipeline, new hybrid against
old hybrid, and every model's pipeline against lexical alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reindexer.errors import UsageError
from reindexer.evaluation.metrics import rank

PIPELINES = ("dense", "lexical", "hybrid", "dense+rerank", "hybrid+rerank")
MODEL_PIPELINES = ("dense", "hybrid", "dense+rerank", "hybrid+rerank")
RERANKED = ("dense+rerank", "hybrid+rerank")
"""Pipelines whose first stage's top N a cross-encoder rescores (``--rerank PATH``)."""
"""The pipelines whose results depend on the model, so a gate can judge a candidate under them."""
LEXICAL_ARM = "lexical"

RRF_K = 60
"""Cormack, Clarke and Büttcher's constant; Qdrant's and Milvus's RRF default too."""


@dataclass(frozen=True)
class Fusion:
    """Reciprocal-rank fusion: score(d) = sum over runs of 1 / (k + rank of d in that run)."""

    k: int = RRF_K
    prefetch: int = 100
    """How many results each run contributes before fusing (at least the evaluation's depth)."""

    def to_metadata(self) -> dict[str, object]:
        return {"method": "rrf", "k": self.k, "prefetch": self.prefetch}


def parse_pipelines(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``dense,lexical,hybrid`` as a tuple in canonical order; dense is always evaluated."""
    if text is None:
        return ("dense",)
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise UsageError(
            f"unknown pipeline {', '.join(repr(n) for n in unknown)}",
            hint=f"choose from {', '.join(PIPELINES)}, e.g. --pipelines dense,lexical,hybrid",
        )
    chosen = {"dense", *names}
    return tuple(p for p in PIPELINES if p in chosen)


def arm(version: str, pipeline: str) -> str:
    """The name of one version's arm under ``pipeline`` (``v2``, ``v2:hybrid``, ``lexical``)."""
    if pipeline == "dense":
        return version
    if pipeline == "lexical":
        return LEXICAL_ARM
    return f"{version}:{pipeline}"


def questions(baseline: str, candidates: Sequence[str], pipelines: Sequence[str]) -> list[tuple[str, str]]:
    """(baseline arm, candidate arm) pairs an operator asks about, beyond each candidate's dense A/B."""
    pairs: list[tuple[str, str]] = []
    hybrid, lexical = "hybrid" in pipelines, "lexical" in pipelines
    for c in candidates:
        if hybrid:
            pairs += [(arm(baseline, "hybrid"), c), (arm(baseline, "hybrid"), arm(c, "hybrid"))]
        if lexical:
            pairs += [(LEXICAL_ARM, c)] + ([(LEXICAL_ARM, arm(c, "hybrid"))] if hybrid else [])
    if lexical:
        pairs += [(LEXICAL_ARM, baseline)] + ([(LEXICAL_ARM, arm(baseline, "hybrid"))] if hybrid else [])
    for reranked in (p for p in RERANKED if p in pipelines):
        first = reranked.split("+")[0]
        for c in candidates:  # reranked against reranked, and the new first stage against the old reranked one
            pairs += [(arm(baseline, reranked), arm(c, reranked)), (arm(baseline, reranked), arm(c, first))]
        pairs += [(arm(baseline, first), arm(baseline, reranked))]  # what the reranker adds to the live version
    return list(dict.fromkeys(pairs))


def rrf(runs: Sequence[Sequence[tuple[str, float]]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse runs by reciprocal rank. Each run is ranked first as trec_eval ranks (score, then doc id,
    descending), and so is the fused list, so equal scores fall the same way in every arm."""
    scores: dict[str, float] = {}
    for run in runs:
        for position, (doc_id, _) in enumerate(rank(run), start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + position)
    return rank(scores.items())
