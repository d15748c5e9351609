"""`reindex demo` end to end: the same run `make demo` does.

The demo's fine-tune step (``reindexer.demo.finetune_v2``) runs once per session, as the
``tuned_model_path`` fixture, and the demo here is handed its result; every other step
runs as `make demo` runs it.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from reindexer.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_flow(tmp_path, tuned_model_path):
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)
    summary = run_demo(keep_dir=tmp_path / "demo", console=console, tuned_model=tuned_model_path)
    text = buffer.getvalue()
    for step in ("index the corpus", "fine-tune", "plan the re-index", "apply", "A/B", "gate", "cut over", "rollback"):
        assert step in text
    assert summary["gate_passed"] is True
    assert summary["ndcg@10"]["v2"] > summary["ndcg@10"]["v1"] + 0.1  # the fine-tune wins clearly
    assert (tmp_path / "demo" / "report.html").exists()
    assert summary["rollback_same_answers"] is True
    assert summary["live"] == "docs__v2"
