"""The report files an evaluation is written to (--report-json, --report-md, --report-html).

The same functions serve `reindex eval`, `reindex apply` and ``reindexer.deploy()``,
so a file written from Python is the file the CLI writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reindexer.evaluation import report
from reindexer.evaluation.gate import Gate

if TYPE_CHECKING:
    from reindexer.evaluation.runner import EvaluationResult, UnlabelledResult

NO_JUDGED_EVALUATION = (
    "no judged evaluation ran (no gate with judged clauses, or nothing to compare): no report written"
)


@dataclass(frozen=True)
class ReportFiles:
    """Where an evaluation's reports go; a format left None is not written."""

    json: Path | None = None
    md: Path | None = None
    html: Path | None = None

    @classmethod
    def of(cls, json: str | Path | None = None, md: str | Path | None = None, html: str | Path | None = None):
        return cls(*(Path(p) if p is not None else None for p in (json, md, html)))

    def __bool__(self) -> bool:
        return any((self.json, self.md, self.html))


def write_reports(
    result: EvaluationResult,
    gate: Gate | None,
    files: ReportFiles,
    *,
    title: str = "Retrieval evaluation",
    per_query: bool | None = None,
) -> None:
    """A judged evaluation (and the gate's decisions, with a gate) in each format asked for."""
    if files.json:
        files.json.write_text(report.to_json(result, gate, per_query=per_query))
    if files.md:
        files.md.write_text(report.to_markdown(result, gate))
    if files.html:
        files.html.write_text(report.to_html(result, gate, title=title))


def write_unlabelled_reports(result: UnlabelledResult, files: ReportFiles) -> None:
    """A label-free comparison as JSON and Markdown (it has no HTML form)."""
    if files.json:
        files.json.write_text(report.unlabelled_to_json(result))
    if files.md:
        files.md.write_text(report.unlabelled_to_markdown(result))


def write_traffic_report(data: dict[str, Any], files: ReportFiles) -> None:
    """What shadow traffic says, as JSON (its only report form)."""
    if files.json:
        files.json.write_text(json.dumps(data, indent=2))


class GatedApply(Protocol):
    """What an apply's reports are written from: the parts of reindexer.commands.ApplyResult they read.

    Named here as a protocol so that this module, which the command layer calls, names no
    type of the command layer.
    """

    collection: str
    gate: dict[str, Any] | None
    evaluation_result: EvaluationResult | None


def report_gate(gate: dict[str, Any] | None) -> Gate | None:
    """The gate an apply's report judges by (``gate`` is ApplyResult.gate).

    None for a gate with traffic clauses: the report would judge them without the
    traffic; the apply's own verdict, which saw it, is in the result. The gate keeps
    the apply's multiplicity correction (Holm when the result names none).
    """
    if not gate:
        return None
    parsed = Gate.parse(gate["gate"], gate.get("correction", "holm"), gate.get("allow_underpowered", False))
    return None if parsed.needs_traffic else parsed


def write_apply_reports(result: GatedApply, files: ReportFiles) -> str | None:
    """The gate's evaluation in an apply's result as ``files``; a notice instead when no judged evaluation ran."""
    if result.evaluation_result is None:
        return NO_JUDGED_EVALUATION if files else None
    gate = report_gate(result.gate)
    write_reports(result.evaluation_result, gate, files, title=f"{result.collection}: gate evaluation")
    return None
