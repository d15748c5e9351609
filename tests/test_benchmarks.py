"""The incremental-sync benchmark runs and reports; its speed targets are checked by the benchmark itself.

No timing is asserted here: a shared CI machine cannot hold a speed target, and
the benchmark prints ratios measured side by side in one run instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.incremental import change_documents, render, scaled_documents

ROOT = Path(__file__).resolve().parent.parent


def _langchain_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("langchain_core", "langchain_qdrant", "langchain_classic", "greenlet"))


def test_corpus_is_deterministic_and_distinct():
    docs = scaled_documents(1300)
    assert docs == scaled_documents(1300)
    assert len({d["id"] for d in docs}) == 1300
    assert len({d["text"] for d in docs}) == 1300

    before = [d["text"] for d in docs]
    changed = change_documents(docs, 0.01, seed=1)
    assert len(changed) == 13 == len(set(changed))
    assert sum(a != d["text"] for a, d in zip(before, docs, strict=False)) == 13
    assert {d["id"] for d, a in zip(docs, before, strict=False) if a != d["text"]} == set(changed)


def test_render_marks_a_missed_target():
    measures = [
        {"tool": "reindexer", "step": "full", "seconds": 100.0, "embedded": 1000, "runs": [100.0],
         "detail": {"plan_s": 2.0, "apply_s": 98.0}},
        {"tool": "reindexer", "step": "noop", "seconds": 1.0, "embedded": 0, "runs": [1.0], "detail": {}},
        {"tool": "reindexer", "step": "changed", "seconds": 5.0, "embedded": 10, "runs": [5.0], "detail": {}},
    ]
    report = {
        "docs": 1000, "store": "qdrant+local", "changed_fraction": 0.01, "batch_size": 256, "repeat": 1,
        "machine": {"device": "cpu", "cpu_count": 2, "cpus_usable": 2, "torch_threads": 2,
                    "load_avg_start": [0.1, 0.1, 0.1], "load_avg_end": [0.1, 0.1, 0.1]},
        "measures": measures,
        "ratios_to_own_full": {"reindexer": {"full": 1.0, "noop": 0.01, "changed": 0.05}},
        "reindexer_over_langchain": {},
        "langchain": "skipped (--skip-langchain)",
        "targets": {"noop": {"ratio": 0.01, "target": 0.02, "pass": True},
                    "changed": {"ratio": 0.05, "target": 0.03, "pass": False}},
        "pass": False,
    }
    text = render(report)
    assert "no-op sync             <= 2%: 1.00%  PASS" in text
    assert "sync, 1% changed       <= 3%: 5.00%  FAIL" in text
    assert text.rstrip().endswith("RESULT: FAIL")
    assert "langchain reference: skipped" in text


@pytest.mark.slow
def test_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path, minilm_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--docs", "200", "--repeat", "1",
           "--report-only", "--json", str(out)]
    with_langchain = _langchain_installed()
    if not with_langchain:
        cmd.append("--skip-langchain")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "REINDEX_PROGRESS": "0"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    text = done.stdout
    for needle in ("vs own full", "reindexer  full build", "reindexer  no-op sync", "reindexer  sync, 1% changed",
                   "no-op sync, new process (CLI)", "targets (reindexer, ratio to its own full build):",
                   "RESULT: "):
        assert needle in text, text
    assert "torch threads" in text and "CPUs" in text

    report = json.loads(out.read_text())
    got = {(m["tool"], m["step"]): m for m in report["measures"]}
    assert got[("reindexer", "full")]["embedded"] == 200
    assert got[("reindexer", "noop")]["embedded"] == 0
    assert got[("reindexer", "changed")]["embedded"] == 2  # 1% of 200
    assert got[("reindexer", "noop_cli")]["embedded"] == 0
    assert set(report["targets"]) == {"noop", "changed"}
    assert all(0 < r for r in report["ratios_to_own_full"]["reindexer"].values())
    if with_langchain:
        assert "reindexer / langchain, same work:" in text
        assert "langchain  no-op index()" in text
        assert got[("langchain", "full")]["embedded"] == 200
        assert got[("langchain", "noop")]["embedded"] == 0
        assert got[("langchain", "changed")]["embedded"] == 2
        assert set(report["reindexer_over_langchain"]) == {"full", "noop", "changed"}
    else:
        assert "langchain reference: skipped" in text
