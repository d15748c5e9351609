"""The evaluation report as one self-contained HTML file for people (``to_html``): inline CSS and SVG charts.

Layout only: the rows and sentences come from reindexer.evaluation.report.tables, the charts from
reindexer.evaluation.svg; no scripts and no external references, so the file can be mailed or archived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_decision import GateDecision
from reindexer.evaluation.report.data import METHODS, gate_decisions
from reindexer.evaluation.report.tables import (
    absolute_rows,
    comparison_rows,
    gate_correction_line,
    gate_test_rows,
    headline_line,
    means_rows,
    pair_rows,
    pipelines_line,
    power_line,
    regression_rows,
    skipped_line,
    worst_rows,
)
from reindexer.evaluation.runner import EvaluationResult
from reindexer.evaluation.svg import histogram, interval_plot


def _pairs_plot(result: EvaluationResult) -> str:
    m, level = result.headline_metric, f"{round(result.confidence * 100):d}%"
    rows = [
        (f"{c.candidate} - {c.baseline}", c.tests[m].delta, c.tests[m].ci_low, c.tests[m].ci_high)
        for c in result.pairs.values()
    ]
    return interval_plot(rows, title=f"pipelines: {m} delta and {level} interval")


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
    decisions = gate_decisions(result, gate)
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>{escape(skipped_line(result))}</p>",
        f"<p>{escape(headline_line(result))}</p>",
    ]
    if gate is not None:
        body.append(_html_gate(gate, decisions))
    if not result.candidates:
        v, headline = result.baseline, result.headline_metric
        worst = worst_rows(result, v)
        body += [
            f"<h2>Metrics of {escape(v)}</h2>",
            _html_table(*absolute_rows(result)),
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
    body += ["<h2>Mean metrics</h2>", _html_table(*means_rows(result))]
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
            _html_table(*comparison_rows(result, c)),
            f"<h3>Worst regressions ({escape(headline)})</h3>",
            _html_table(*regression_rows(c), text_columns=(1, 5))
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
