"""The content of an evaluation report's tables and sentences, shared by every human-readable form.

Each ``*_rows`` function returns (header, rows) as strings and each ``*_line`` one sentence; the Markdown
(reindexer.evaluation.report.markdown), HTML (.html) and terminal (.terminal) writers lay them out, so the
three forms say the same things in the same words. The JSON data (.data) keeps numbers, not text.
"""

from __future__ import annotations

import math
from typing import Any

from reindexer.evaluation.gate import CORRECTIONS, Gate
from reindexer.evaluation.gate_decision import GateDecision
from reindexer.evaluation.power import POWER
from reindexer.evaluation.report.data import family_size
from reindexer.evaluation.runner import Comparison, EvaluationResult


def gate_test_rows(gate: Gate, decisions: dict[str, GateDecision]) -> tuple[list[str], list[list[str]]]:
    """The gate's significance tests, raw and adjusted p-values side by side: one row per clause and metric."""
    adjusted = "p (uncorrected)" if gate.correction == "none" else f"{CORRECTIONS[gate.correction]}-adjusted p"
    header = ["candidate", "clause", "metric", "delta", "p", adjusted, "verdict", f"MDE ({POWER:.0%} power)"]
    rows = [
        [
            name,
            v.clause,
            v.metric,
            delta_cell(v.delta),
            p_cell(v.p_value),
            p_cell(v.p_adjusted),
            v.verdict,
            mde_cell(v.mde),
        ]
        for name, d in decisions.items()
        for v in d.significance
    ]
    return header, rows


def mde_cell(x: float) -> str:
    """A minimum detectable effect: '-' when unknown, 'none' when the query set cannot detect any change."""
    if math.isnan(x):
        return "-"
    return "none (too few queries)" if math.isinf(x) else f"{x:.4f}"


def power_line(result: EvaluationResult) -> str:
    """What the MDE column means, in one sentence."""
    alpha = 1 - result.confidence
    return (
        f"MDE: the smallest true delta this query set detects with {POWER:.0%} power by a two-sided test at "
        f"alpha {alpha:.2g} ({len(result.query_ids)} queries; paired t-test power from the observed per-query "
        "variance of the differences); a delta smaller than it can go unseen."
    )


def gate_correction_line(gate: Gate, decisions: dict[str, GateDecision]) -> str:
    size = family_size(decisions)
    tests = f"{size} significance test{'' if size == 1 else 's'}"
    if gate.correction == "none":
        return f"The gate's {tests} are not corrected for multiplicity (--correction none)."
    name = {"holm": "Holm's step-down", "bh": "Benjamini-Hochberg"}[gate.correction]
    return f"The gate's {tests}, over every metric, pipeline and candidate, are corrected together by {name}."


def value_cell(x: float) -> str:
    return f"{x:.4f}"


def delta_cell(x: float) -> str:
    return f"{x:+.4f}"


def p_cell(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def means_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    header = ["metric"] + [f"{v} (baseline)" if v == result.baseline else v for v in result.versions]
    rows = []
    for m in result.metrics:
        row = [m, value_cell(result.means[result.baseline][m])]
        for v in result.candidates:
            row.append(f"{value_cell(result.means[v][m])} ({delta_cell(result.comparisons[v].tests[m].delta)})")
        rows.append(row)
    return header, rows


def absolute_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    """Every version's means with their own bootstrap intervals (the single-version report)."""
    level = f"{round(result.confidence * 100):d}% CI"
    header = ["metric"]
    for v in result.versions:
        header += [v, f"{v} {level}" if len(result.versions) > 1 else level]
    rows = []
    for m in result.metrics:
        row = [m]
        for v in result.versions:
            lo, hi = result.intervals.get(v, {}).get(m, (math.nan, math.nan))
            row += [value_cell(result.means[v][m]), f"[{value_cell(lo)}, {value_cell(hi)}]"]
        rows.append(row)
    return header, rows


def worst_rows(result: EvaluationResult, version: str) -> tuple[list[str], list[list[str]]]:
    header = ["query id", "query", result.headline_metric, f"relevant docs (rank; missed: not in the top {result.k})"]
    rows = []
    for w in result.worst_queries.get(version, []):
        docs = []
        for d, r in w.relevant_ranks.items():
            if r is None:
                docs.append(f"{d} (missed, not in the top {result.depth or max(result.ks)})")
            elif d in w.missed_relevant:
                docs.append(f"{d} (missed, rank {r})")
            else:
                docs.append(f"{d} ({r})")
        rows.append([w.query_id, w.query_text, value_cell(w.value), ", ".join(docs) or "-"])
    return header, rows


def headline_line(result: EvaluationResult) -> str:
    return (
        f"headline {result.headline_metric}; cut-offs {', '.join(str(k) for k in result.ks)}; "
        f"search depth {result.depth or max(result.ks)}."
    )


def comparison_rows(result: EvaluationResult, c: Comparison) -> tuple[list[str], list[list[str]]]:
    level = f"{round(result.confidence * 100):d}% CI"
    header = ["metric", c.baseline, c.candidate, "delta", level, "p", "wins / losses / ties", f"MDE ({POWER:.0%})"]
    rows = [
        [
            m,
            value_cell(t.baseline_mean),
            value_cell(t.candidate_mean),
            delta_cell(t.delta),
            f"[{delta_cell(t.ci_low)}, {delta_cell(t.ci_high)}]",
            p_cell(t.p_value),
            f"{t.wins} / {t.losses} / {t.ties}",
            mde_cell(t.mde),
        ]
        for m, t in c.tests.items()
    ]
    return header, rows


def pipelines_line(result: EvaluationResult) -> str:
    """What the lexical and hybrid arms ran, in one sentence."""
    info: dict[str, Any] = dict(result.pipelines)
    lexical, fusion = info.get("lexical") or {}, info.get("fusion")
    stored = dict(lexical.get("stored") or {})
    corpus = lexical.get("corpus")
    if stored and all(stored.values()):
        corpus = "the BM25 vectors each version stores, weighted by the store's IDF"
    elif any(stored.values()):
        corpus = f"the BM25 vectors stored in {', '.join(v for v, s in stored.items() if s)}, else the version's texts"
    text = (
        f"pipelines {', '.join(info.get('pipelines', []))}; lexical: BM25 ({lexical.get('implementation')}, "
        f"{lexical.get('method')}, k1 {lexical.get('k1')}, b {lexical.get('b')}, stemmer {lexical.get('stemmer')}, "
        f"stop words {lexical.get('stopwords')}) over {corpus}"
    )
    if fusion:
        text += f"; hybrid: RRF with k {fusion['k']} over the top {fusion['prefetch']} of each"
    return text + "."


def pair_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    """The pipelines' questions, on the headline metric: one row per pair of arms."""
    level = f"{round(result.confidence * 100):d}% CI"
    m = result.headline_metric
    header = ["candidate", "baseline", m, "delta", level, "p", "wins / losses / ties", f"MDE ({POWER:.0%})"]
    rows = []
    for c in result.pairs.values():
        t = c.tests[m]
        rows.append(
            [
                c.candidate,
                c.baseline,
                f"{value_cell(t.candidate_mean)} vs {value_cell(t.baseline_mean)}",
                delta_cell(t.delta),
                f"[{delta_cell(t.ci_low)}, {delta_cell(t.ci_high)}]",
                p_cell(t.p_value),
                f"{t.wins} / {t.losses} / {t.ties}",
                mde_cell(t.mde),
            ]
        )
    return header, rows


def regression_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["query id", "query", c.baseline, c.candidate, "delta", "relevant docs missed"]
    rows = [
        [
            r.query_id,
            r.query_text,
            value_cell(r.baseline_value),
            value_cell(r.candidate_value),
            delta_cell(r.delta),
            ", ".join(r.missed_relevant) or "-",
        ]
        for r in c.worst_regressions
    ]
    return header, rows


def skipped_line(result: EvaluationResult) -> str:
    s = result.skipped
    return (
        f"{len(result.query_ids)} queries evaluated; skipped {s.queries_without_relevant} without a relevant "
        f"judgement; ignored qrels of {s.qrels_unknown_queries} unknown query ids "
        f"({s.qrels_unknown_judgements} judgements)."
    )
