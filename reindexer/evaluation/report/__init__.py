"""Reports of an evaluation: JSON for CI, Markdown for pull requests, one HTML file for people, rich tables.

The index of the report's writers, one module per form, so a caller says ``report.to_json(...)`` without
knowing which module writes what:

- ``data``: the JSON (schema ``reindexer.evaluation/v1``, ``to_dict`` / ``to_json``) and the label-free
  comparison's (``unlabelled_to_dict`` / ``unlabelled_to_json``); numbers, the stable machine contract;
- ``tables``: the rows and sentences every human-readable form shares (``worst_rows``, ``headline_line``, ...);
- ``markdown``: ``to_markdown`` and ``unlabelled_to_markdown``;
- ``html``: ``to_html``, one self-contained file with inline SVG charts;
- ``terminal``: ``rich_table`` and ``rich_pipelines``, printed by reindexer.render.

Not here: where the report files of a command go and which are written (reindexer.report_files), and how a
command prints its outcome (reindexer.render).
"""

from reindexer.evaluation.report.data import (
    METHODS,
    SCHEMA,
    UNLABELLED_SCHEMA,
    to_dict,
    to_json,
    unlabelled_to_dict,
    unlabelled_to_json,
)
from reindexer.evaluation.report.html import to_html
from reindexer.evaluation.report.markdown import to_markdown, unlabelled_to_markdown
from reindexer.evaluation.report.tables import (
    gate_correction_line,
    gate_test_rows,
    headline_line,
    pair_rows,
    pipelines_line,
    power_line,
    skipped_line,
    worst_rows,
)
from reindexer.evaluation.report.terminal import rich_pipelines, rich_table

__all__ = [
    "METHODS",
    "SCHEMA",
    "UNLABELLED_SCHEMA",
    "gate_correction_line",
    "gate_test_rows",
    "headline_line",
    "pair_rows",
    "pipelines_line",
    "power_line",
    "rich_pipelines",
    "rich_table",
    "skipped_line",
    "to_dict",
    "to_html",
    "to_json",
    "to_markdown",
    "unlabelled_to_dict",
    "unlabelled_to_json",
    "unlabelled_to_markdown",
    "worst_rows",
]
