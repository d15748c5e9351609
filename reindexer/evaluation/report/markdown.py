"""The evaluation report in Markdown, for a pull request or a CI summary (``to_markdown``).

Layout only: the rows and sentences come from reindexer.evaluation.report.tables, the gate's decisions
from reindexer.evaluation.report.data, so the Markdown says what the HTML and the terminal say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    value_cell,
    worst_rows,
)
from reindexer.evaluation.runner import EvaluationResult, UnlabelledResult


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
    decisions = gate_decisions(result, gate)
    lines = ["# Retrieval evaluation", "", skipped_line(result), "", headline_line(result), ""]
    if gate is not None:
        lines += _md_gate(gate, decisions)
    if not result.candidates:
        v = result.baseline
        lines += [f"## Metrics of {v}", "", *_md_table(*absolute_rows(result)), ""]
        lines += [f"## Worst queries of {v} ({result.headline_metric})", ""]
        worst = worst_rows(result, v)
        if worst[1]:
            lines += [*_md_table(*worst, text_columns=(1, 3)), ""]
        else:
            lines += ["Every query is answered perfectly.", ""]
        lines.append(f"Intervals are {METHODS['interval']} ({result.resamples} resamples, seed {result.seed}).")
        return "\n".join(lines) + "\n"
    lines += ["## Mean metrics", "", *_md_table(*means_rows(result)), ""]
    if result.pairs:
        lines += ["## Pipelines", "", pipelines_line(result), "", *_md_table(*pair_rows(result)), ""]
    for c in result.comparisons.values():
        lines += [f"## {c.candidate} vs {c.baseline}", "", *_md_table(*comparison_rows(result, c)), ""]
        lines += [f"### Worst regressions ({result.headline_metric})", ""]
        if c.worst_regressions:
            lines += [*_md_table(*regression_rows(c), text_columns=(1, 5)), ""]
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
    rows = [[c.candidate, value_cell(c.mean_overlap), value_cell(c.mean_rbo)] for c in result.comparisons.values()]
    lines += _md_table(["candidate", f"overlap@{result.k}", "RBO"], rows) + [""]
    for c in result.comparisons.values():
        lines += [f"## Most changed: {c.candidate} vs {c.baseline}", ""]
        changed = [
            [
                q.query_id,
                q.query_text,
                value_cell(q.overlap),
                value_cell(q.rbo),
                ", ".join(q.dropped) or "-",
                ", ".join(q.added) or "-",
            ]
            for q in c.most_changed
        ]
        header = ["query id", "query", "overlap", "RBO", "dropped", "added"]
        lines += _md_table(header, changed, text_columns=(1, 4, 5)) if changed else ["No query changed."]
        lines.append("")
    return "\n".join(lines)
