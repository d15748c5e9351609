"""An evaluation as rich Tables for the terminal (``rich_table``, ``rich_pipelines``).

The rows are reindexer.evaluation.report.tables'; printing them (and everything else a command prints) is
reindexer.render's. rich is imported only when a table is made: the JSON and file reports never need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reindexer.evaluation.report.tables import absolute_rows, comparison_rows, means_rows, pair_rows
from reindexer.evaluation.runner import EvaluationResult

if TYPE_CHECKING:
    from rich.table import Table


def rich_table(result: EvaluationResult, candidate: str | None = None) -> Table:
    """A rich Table of one candidate against the baseline (the first candidate by default)."""
    from rich.table import Table  # imported here: only terminal output needs rich

    name = candidate or (result.candidates[0] if result.candidates else None)
    if name is None:
        header, rows = absolute_rows(result)
        table = Table(title=f"{result.baseline} ({len(result.query_ids)} queries, headline {result.headline_metric})")
    else:
        c = result.comparisons[name]
        header, rows = comparison_rows(result, c)
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
        (f"every arm ({len(result.query_ids)} queries; deltas against {result.baseline})", means_rows(result)),
        (f"the pipelines' questions ({result.headline_metric})", pair_rows(result)),
    ):
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i < 2 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables
