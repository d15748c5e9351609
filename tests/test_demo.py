"""`reindex demo` end to end: the same run `make demo` does, fine-tune included."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from reindexer.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_flow(tmp_path):
    buffer = io.StringIO()
    summary = run_demo(keep_dir=tmp_path / "demo", console=Console(file=buffer, width=120))
    text = buffer.getvalue()
    for step in ("index the corpus", "fine-tune", "plan the re-index", "apply", "A/B", "gate", "cut over", "rollback"):
        assert step in text
    assert summary["gate_passed"] is True
    assert summary["ndcg@10"]["v2"] > summary["ndcg@10"]["v1"] + 0.1  # the fine-tune wins clearly
    assert (tmp_path / "demo" / "report.html").exists()
    assert summary["rollback_same_answers"] is True
    assert summary["live"] == "docs__v2"
