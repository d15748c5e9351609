"""Reports of an evaluation: JSON for CI, Markdown for pull requests, one HTML file for people.

The JSON schema is versioned (``"schema": "reindexer.evaluation/v1"``) and
its keys are always present (``null`` when not applicable), so CI scripts can
rely on them; a change of meaning gets a new schema version, not a silent edit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from reindexer.evaluation.gate import CORRECTIONS, Gate, GateDecision
from reindexer.evaluation.power import METHOD as POWER_METHOD
from reindexer.evaluation.power import POWER
from reindexer.evaluation.runner import Comparison, EvaluationResult, UnlabelledResult
from reindexer.evaluation.svg import histogram, interval_plot

if TYPE_CHECKING:
    from rich.table import Table

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


def _decisions(result: EvaluationResult, gate: Gate | None) -> dict[str, GateDecision]:
    """The gate's decision per candidate; none without a gate (every caller checks the gate first)."""
    return gate.evaluate_all(result) if gate is not None else {}


def _family_size(decisions: dict[str, GateDecision]) -> int:
    """How many significance tests the gate corrected together (the same in every decision)."""
    return max((d.family_size for d in decisions.values()), default=0)


def gate_test_rows(gate: Gate, decisions: dict[str, GateDecision]) -> tuple[list[str], list[list[str]]]:
    """The gate's significance tests, raw and adjusted p-values side by side: one row per clause and metric."""
    adjusted = "p (uncorrected)" if gate.correction == "none" else f"{CORRECTIONS[gate.correction]}-adjusted p"
    header = ["candidate", "clause", "metric", "delta", "p", adjusted, "verdict", f"MDE ({POWER:.0%} power)"]
    rows = [
        [name, v.clause, v.metric, _d(v.delta), _p(v.p_value), _p(v.p_adjusted), v.verdict, _mde(v.mde)]
        for name, d in decisions.items()
        for v in d.significance
    ]
    return header, rows


def _mde(x: float) -> str:
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


def gate_correction_line(gate: Gate, decisions: dict[str, GateDecision]) -> str:
    size = _family_size(decisions)
    tests = f"{size} significance test{'' if size == 1 else 's'}"
    if gate.correction == "none":
        return f"The gate's {tests} are not corrected for multiplicity (--correction none)."
    name = {"holm": "Holm's step-down", "bh": "Benjamini-Hochberg"}[gate.correction]
    return f"The gate's {tests}, over every metric, pipeline and candidate, are corrected together by {name}."


# --- JSON -------------------------------------------------------------------


def to_dict(result: EvaluationResult, gate: Gate | None = None, *, per_query: bool | None = None) -> dict[str, Any]:
    """The JSON report as plain Python data (see the module docstring for the stability promise).

    ``per_query`` defaults to True for a single version (an absolute evaluation,
    whose per-query values are the baseline to compare later runs with).
    """
    decisions = _decisions(result, gate)
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
            "family_size": _family_size(decisions),
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


# --- shared table content ---------------------------------------------------


def _f(x: float) -> str:
    return f"{x:.4f}"


def _d(x: float) -> str:
    return f"{x:+.4f}"


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _means_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    header = ["metric"] + [f"{v} (baseline)" if v == result.baseline else v for v in result.versions]
    rows = []
    for m in result.metrics:
        row = [m, _f(result.means[result.baseline][m])]
        for v in result.candidates:
            row.append(f"{_f(result.means[v][m])} ({_d(result.comparisons[v].tests[m].delta)})")
        rows.append(row)
    return header, rows


def _absolute_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
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
            row += [_f(result.means[v][m]), f"[{_f(lo)}, {_f(hi)}]"]
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
        rows.append([w.query_id, w.query_text, _f(w.value), ", ".join(docs) or "-"])
    return header, rows


def headline_line(result: EvaluationResult) -> str:
    return (
        f"headline {result.headline_metric}; cut-offs {', '.join(str(k) for k in result.ks)}; "
        f"search depth {result.depth or max(result.ks)}."
    )


def _overall(decisions: dict[str, GateDecision]) -> str:
    """The gate's verdict over every candidate: fail, else inconclusive, else pass."""
    verdicts = {d.verdict for d in decisions.values()}
    return next((v for v in ("fail", "inconclusive") if v in verdicts), "pass")


def _comparison_rows(result: EvaluationResult, c: Comparison) -> tuple[list[str], list[list[str]]]:
    level = f"{round(result.confidence * 100):d}% CI"
    header = ["metric", c.baseline, c.candidate, "delta", level, "p", "wins / losses / ties", f"MDE ({POWER:.0%})"]
    rows = [
        [
            m,
            _f(t.baseline_mean),
            _f(t.candidate_mean),
            _d(t.delta),
            f"[{_d(t.ci_low)}, {_d(t.ci_high)}]",
            _p(t.p_value),
            f"{t.wins} / {t.losses} / {t.ties}",
            _mde(t.mde),
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
                f"{_f(t.candidate_mean)} vs {_f(t.baseline_mean)}",
                _d(t.delta),
                f"[{_d(t.ci_low)}, {_d(t.ci_high)}]",
                _p(t.p_value),
                f"{t.wins} / {t.losses} / {t.ties}",
                _mde(t.mde),
            ]
        )
    return header, rows


def _pairs_plot(result: EvaluationResult) -> str:
    m, level = result.headline_metric, f"{round(result.confidence * 100):d}%"
    rows = [
        (f"{c.candidate} - {c.baseline}", c.tests[m].delta, c.tests[m].ci_low, c.tests[m].ci_high)
        for c in result.pairs.values()
    ]
    return interval_plot(rows, title=f"pipelines: {m} delta and {level} interval")


def _regression_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["query id", "query", c.baseline, c.candidate, "delta", "relevant docs missed"]
    rows = [
        [
            r.query_id,
            r.query_text,
            _f(r.baseline_value),
            _f(r.candidate_value),
            _d(r.delta),
            ", ".join(r.missed_relevant) or "-",
        ]
        for r in c.worst_regressions
    ]
    return header, rows


def skipped_line(result: EvaluationResult) -> str:
    return _skipped_line(result)


def _skipped_line(result: EvaluationResult) -> str:
    s = result.skipped
    return (
        f"{len(result.query_ids)} queries evaluated; skipped {s.queries_without_relevant} without a relevant "
        f"judgement; ignored qrels of {s.qrels_unknown_queries} unknown query ids "
        f"({s.qrels_unknown_judgements} judgements)."
    )


# --- Markdown ---------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: Sequence[int] = ()) -> list[str]:
    # numbers right-aligned, the first column and free text left-aligned
    align = ["---" if i == 0 or i in text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _md_gate(gate: Gate, decisions: dict[str, GateDecision]) -> list[str]:
    lines = ["## Gate", "", f"`{gate.text}`", ""]
    for name, d in decisions.items():
        lines.append(f"- **{_md_cell(name)}: {d.verdict.upper()}**")
        lines += [f"  - {_md_cell(r)}" for r in d.reasons]
    lines.append("")
    header, rows = gate_test_rows(gate, decisions)
    if rows:
        lines += [gate_correction_line(gate, decisions), "", *_md_table(header, rows, text_columns=(1, 6)), ""]
    return lines


def to_markdown(result: EvaluationResult, gate: Gate | None = None) -> str:
    decisions = _decisions(result, gate)
    lines = ["# Retrieval evaluation", "", _skipped_line(result), "", headline_line(result), ""]
    if gate is not None:
        lines += _md_gate(gate, decisions)
    if not result.candidates:
        v = result.baseline
        lines += [f"## Metrics of {v}", "", *_md_table(*_absolute_rows(result)), ""]
        lines += [f"## Worst queries of {v} ({result.headline_metric})", ""]
        worst = worst_rows(result, v)
        if worst[1]:
            lines += [*_md_table(*worst, text_columns=(1, 3)), ""]
        else:
            lines += ["Every query is answered perfectly.", ""]
        lines.append(f"Intervals are {METHODS['interval']} ({result.resamples} resamples, seed {result.seed}).")
        return "\n".join(lines) + "\n"
    lines += ["## Mean metrics", "", *_md_table(*_means_rows(result)), ""]
    if result.pairs:
        lines += ["## Pipelines", "", pipelines_line(result), "", *_md_table(*pair_rows(result)), ""]
    for c in result.comparisons.values():
        lines += [f"## {c.candidate} vs {c.baseline}", "", *_md_table(*_comparison_rows(result, c)), ""]
        lines += [f"### Worst regressions ({result.headline_metric})", ""]
        if c.worst_regressions:
            lines += [*_md_table(*_regression_rows(c), text_columns=(1, 5)), ""]
        else:
            lines += ["No query got worse.", ""]
    lines.append(
        f"Deltas are candidate minus baseline; intervals are {METHODS['interval']} "
        f"({result.resamples} resamples, seed {result.seed}); p-values are from a {METHODS['p_value']}. "
        + power_line(result)
    )
    return "\n".join(lines) + "\n"


def unlabelled_to_markdown(result: UnlabelledResult) -> str:
    lines = [
        "# Label-free comparison",
        "",
        f"{len(result.query_ids)} queries; overlap@{result.k} is |A ∩ B| / {result.k}; "
        f"RBO is RBO_ext with p = {result.p}.",
        "",
    ]
    rows = [[c.candidate, _f(c.mean_overlap), _f(c.mean_rbo)] for c in result.comparisons.values()]
    lines += _md_table(["candidate", f"overlap@{result.k}", "RBO"], rows) + [""]
    for c in result.comparisons.values():
        lines += [f"## Most changed: {c.candidate} vs {c.baseline}", ""]
        changed = [
            [q.query_id, q.query_text, _f(q.overlap), _f(q.rbo), ", ".join(q.dropped) or "-", ", ".join(q.added) or "-"]
            for q in c.most_changed
        ]
        header = ["query id", "query", "overlap", "RBO", "dropped", "added"]
        lines += _md_table(header, changed, text_columns=(1, 4, 5)) if changed else ["No query changed."]
        lines.append("")
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, th.text { text-align: left; }
td.text { text-align: left; max-width: 420px; }
.pass { color: #1e8449; } .fail { color: #c0392b; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: Sequence[int] = ()) -> str:
    head = "".join(
        f'<th class="text">{escape(h)}</th>' if i in text_columns else f"<th>{escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{escape(c)}</td>' if i in text_columns else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_gate(gate: Gate, decisions: dict[str, GateDecision]) -> str:
    parts = [f"<h2>Gate</h2><p><code>{escape(gate.text)}</code></p><ul>"]
    for name, d in decisions.items():
        cls, word = ("pass", "PASS") if d.passed else ("fail", d.verdict.upper())
        reasons = "".join(f"<li>{escape(r)}</li>" for r in d.reasons)
        parts.append(f'<li><strong class="{cls}">{escape(name)}: {word}</strong><ul>{reasons}</ul></li>')
    parts.append("</ul>")
    header, rows = gate_test_rows(gate, decisions)
    if rows:
        parts += [f"<p>{escape(gate_correction_line(gate, decisions))}</p>", _html_table(header, rows, (1, 6))]
    return "".join(parts)


def to_html(result: EvaluationResult, gate: Gate | None = None, *, title: str = "Retrieval evaluation") -> str:
    """One self-contained HTML file: inline CSS and SVG, no scripts, no external references."""
    decisions = _decisions(result, gate)
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>{escape(_skipped_line(result))}</p>",
        f"<p>{escape(headline_line(result))}</p>",
    ]
    if gate is not None:
        body.append(_html_gate(gate, decisions))
    if not result.candidates:
        v, headline = result.baseline, result.headline_metric
        worst = worst_rows(result, v)
        body += [
            f"<h2>Metrics of {escape(v)}</h2>",
            _html_table(*_absolute_rows(result)),
            f"<h3>Worst queries ({escape(headline)})</h3>",
            _html_table(*worst, text_columns=(1, 3)) if worst[1] else "<p>Every query is answered perfectly.</p>",
            f"<p><small>Intervals are {escape(METHODS['interval'])} ({result.resamples} resamples, "
            f"seed {result.seed}).</small></p>",
        ]
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )
    body += ["<h2>Mean metrics</h2>", _html_table(*_means_rows(result))]
    if result.pairs:
        body += [
            "<h2>Pipelines</h2>",
            f"<p>{escape(pipelines_line(result))}</p>",
            f'<div class="charts">{_pairs_plot(result)}</div>',
            _html_table(*pair_rows(result)),
        ]
    headline = result.headline_metric
    for c in result.comparisons.values():
        # the chart shows the headline cut-off only (every cut-off is in the table below it)
        rows = [(m, t.delta, t.ci_low, t.ci_high) for m, t in c.tests.items() if m.endswith(f"@{result.k}")]
        level = f"{round(result.confidence * 100):d}%"
        body += [
            f"<h2>{escape(c.candidate)} vs {escape(c.baseline)}</h2>",
            '<div class="charts">',
            interval_plot(rows, title=f"{c.candidate} - {c.baseline} at k={result.k}: delta and {level} interval"),
            histogram(result.deltas(c.candidate, headline), title=f"{c.candidate}: per-query {headline} delta"),
            "</div>",
            _html_table(*_comparison_rows(result, c)),
            f"<h3>Worst regressions ({escape(headline)})</h3>",
            _html_table(*_regression_rows(c), text_columns=(1, 5))
            if c.worst_regressions
            else "<p>No query got worse.</p>",
        ]
    body.append(
        f"<p><small>Deltas are candidate minus baseline; intervals are {escape(METHODS['interval'])} "
        f"({result.resamples} resamples, seed {result.seed}); p-values are from a {escape(METHODS['p_value'])}. "
        f"{escape(power_line(result))}</small></p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# --- terminal ---------------------------------------------------------------


def rich_table(result: EvaluationResult, candidate: str | None = None) -> Table:
    """A rich Table of one candidate against the baseline (the first candidate by default)."""
    from rich.table import Table  # imported here: only terminal output needs rich

    name = candidate or (result.candidates[0] if result.candidates else None)
    if name is None:
        header, rows = _absolute_rows(result)
        table = Table(title=f"{result.baseline} ({len(result.query_ids)} queries, headline {result.headline_metric})")
    else:
        c = result.comparisons[name]
        header, rows = _comparison_rows(result, c)
        table = Table(title=f"{c.candidate} vs {c.baseline} ({len(result.query_ids)} queries)")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        style = None
        if name is not None:
            t = result.comparisons[name].tests[row[0]]
            significant = t.ci_low > 0 or t.ci_high < 0
            style = ("green" if t.delta > 0 else "red") if significant else None
        table.add_row(*row, style=style)
    return table


def rich_pipelines(result: EvaluationResult) -> list[Table]:
    """Every arm's means (deltas against the baseline) and the pipelines' questions, as rich Tables."""
    from rich.table import Table

    tables = []
    for title, (header, rows) in (
        (f"every arm ({len(result.query_ids)} queries; deltas against {result.baseline})", _means_rows(result)),
        (f"the pipelines' questions ({result.headline_metric})", pair_rows(result)),
    ):
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i < 2 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables
