"""The evaluation report as data: the JSON for CI (``to_dict`` / ``to_json``) and its label-free twin.

The JSON schema is versioned (``"schema": "reindexer.evaluation/v1"``) and
its keys are always present (``null`` when not applicable), so CI scripts can
rely on them; a change of meaning gets a new schema version, not a silent edit.
Human-readable forms are the sibling modules (markdown, html, terminal), written from the same result.
"""

from __future__ import annotations

import json
import math
from typing import Any

from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_decision import GateDecision
from reindexer.evaluation.power import METHOD as POWER_METHOD
from reindexer.evaluation.power import POWER
from reindexer.evaluation.runner import Comparison, EvaluationResult, UnlabelledResult

SCHEMA = "reindexer.evaluation/v1"


UNLABELLED_SCHEMA = "reindexer.evaluation.unlabelled/v1"


METHODS = {
    "delta": "mean of per-query (candidate - baseline)",
    "interval": "percentile bootstrap over queries",
    "p_value": "paired randomisation (sign-flip) test, two-sided",
    "mde": f"minimum detectable effect at alpha = 1 - confidence and {POWER:.0%} power: {POWER_METHOD}",
}


def _number(x: float) -> float | None:
    """JSON has no NaN or infinity; an undefined number is null."""
    return x if math.isfinite(x) else None


def gate_decisions(result: EvaluationResult, gate: Gate | None) -> dict[str, GateDecision]:
    """The gate's decision per candidate; none without a gate (every caller checks the gate first)."""
    return gate.evaluate_all(result) if gate is not None else {}


def family_size(decisions: dict[str, GateDecision]) -> int:
    """How many significance tests the gate corrected together (the same in every decision)."""
    return max((d.family_size for d in decisions.values()), default=0)


def _power_dict(result: EvaluationResult) -> dict[str, Any]:
    """The query set's power, per comparison and metric: the sd of the per-query differences and the MDE."""

    def metrics(c: Comparison) -> dict[str, Any]:
        return {m: {"sd_diff": _number(t.sd_diff), "mde": _number(t.mde)} for m, t in c.tests.items()}

    return {
        "power": POWER,
        "alpha": round(1 - result.confidence, 12),  # 0.05, not 0.050000000000000044
        "method": POWER_METHOD,
        "comparisons": {name: metrics(c) for name, c in result.comparisons.items()},
        "pairs": {name: metrics(c) for name, c in result.pairs.items()},
    }


def to_dict(result: EvaluationResult, gate: Gate | None = None, *, per_query: bool | None = None) -> dict[str, Any]:
    """The JSON report as plain Python data (see the module docstring for the stability promise).

    ``per_query`` defaults to True for a single version (an absolute evaluation,
    whose per-query values are the baseline to compare later runs with).
    """
    decisions = gate_decisions(result, gate)
    if per_query is None:
        per_query = not result.candidates
    return {
        "schema": SCHEMA,
        "versions": list(result.versions),
        "baseline": result.baseline,
        "k": result.k,
        "headline": result.headline_metric,
        "depth": result.depth or max(result.ks),
        "ks": list(result.ks),
        "metric_names": list(result.metrics),
        "num_queries": len(result.query_ids),
        "skipped": result.skipped.as_dict(),
        "significance": {
            "confidence": result.confidence,
            "resamples": result.resamples,
            "seed": result.seed,
            "methods": dict(METHODS),
            "power": _power_dict(result),
        },
        "metrics": {v: {m: _number(x) for m, x in result.means[v].items()} for v in result.versions},
        "intervals": {
            v: {m: {"low": _number(lo), "high": _number(hi)} for m, (lo, hi) in result.intervals.get(v, {}).items()}
            for v in result.versions
        },
        "worst_queries": {v: [w.as_dict() for w in result.worst_queries.get(v, [])] for v in result.versions},
        "comparisons": {name: _comparison_dict(c) for name, c in result.comparisons.items()},
        "pipelines": dict(result.pipelines) or None,
        "pairs": {name: _comparison_dict(c) for name, c in result.pairs.items()},
        "gate": None
        if gate is None
        else {
            "expression": gate.text,
            "correction": gate.correction,
            "allow_underpowered": gate.allow_underpowered,
            "family_size": family_size(decisions),
            "passed": all(d.passed for d in decisions.values()),
            "verdict": _overall(decisions),
            "decisions": {name: d.as_dict() for name, d in decisions.items()},
        },
        "per_query": None
        if not per_query
        else {
            "query_ids": list(result.query_ids),
            "values": {
                v: {m: [_number(float(x)) for x in values] for m, values in result.per_query[v].items()}
                for v in result.versions
            },
        },
    }


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    return {
        "baseline": c.baseline,
        "candidate": c.candidate,
        "metrics": {
            name: {
                "baseline": _number(t.baseline_mean),
                "candidate": _number(t.candidate_mean),
                "delta": _number(t.delta),
                "ci_low": _number(t.ci_low),
                "ci_high": _number(t.ci_high),
                "p_value": _number(t.p_value),
                "p_method": t.p_method,
                "wins": t.wins,
                "losses": t.losses,
                "ties": t.ties,
            }
            for name, t in c.tests.items()
        },
        "worst_regressions": [r.as_dict() for r in c.worst_regressions],
    }


def to_json(
    result: EvaluationResult, gate: Gate | None = None, *, per_query: bool | None = None, indent: int = 2
) -> str:
    return json.dumps(to_dict(result, gate, per_query=per_query), indent=indent, ensure_ascii=False, allow_nan=False)


def unlabelled_to_dict(result: UnlabelledResult) -> dict[str, Any]:
    return {
        "schema": UNLABELLED_SCHEMA,
        "versions": list(result.versions),
        "baseline": result.baseline,
        "k": result.k,
        "rbo_p": result.p,
        "num_queries": len(result.query_ids),
        "definitions": {
            "overlap": "|top-k(baseline) ∩ top-k(candidate)| / k (not Jaccard)",
            "rbo": "extrapolated rank-biased overlap, RBO_ext (Webber, Moffat & Zobel 2010)",
        },
        "comparisons": {
            name: {
                "baseline": c.baseline,
                "candidate": c.candidate,
                "mean_overlap": c.mean_overlap,
                "mean_rbo": c.mean_rbo,
                "unchanged": c.unchanged,
                "most_changed": [q.as_dict() for q in c.most_changed],
            }
            for name, c in result.comparisons.items()
        },
    }


def unlabelled_to_json(result: UnlabelledResult, *, indent: int = 2) -> str:
    return json.dumps(unlabelled_to_dict(result), indent=indent, ensure_ascii=False, allow_nan=False)


def _overall(decisions: dict[str, GateDecision]) -> str:
    """The gate's verdict over every candidate: fail, else inconclusive, else pass."""
    verdicts = {d.verdict for d in decisions.values()}
    return next((v for v in ("fail", "inconclusive") if v in verdicts), "pass")
