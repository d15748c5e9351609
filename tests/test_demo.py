"""`reindex demo` end to end, with a shortened fine-tune to keep the suite quick."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from reindexer.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_flow(tmp_path):
    buffer = io.StringIO()
    summary = run_demo(keep_dir=tmp_path / "demo", console=Console(file=buffer, width=120), train_steps=4)
    text = buffer.getvalue()
    for step in ("index the corpus", "fine-tune", "plan the re-index", "apply", "cut over", "rollback"):
        assert step in text
    assert summary["rollback_same_answers"] is True
    assert summary["live"] == "docs__v2"
