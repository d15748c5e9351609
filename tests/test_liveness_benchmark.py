"""The cut-over and rollback benchmark runs at a tiny size and its commands catch up by changes only.

No timing is asserted (a shared machine cannot hold one); what is asserted is what the
timings stand for: every command succeeded as a new ``reindex`` process, the catch-ups
read only the application's writes, and none of those writes was lost.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.liveness import main

pytestmark = pytest.mark.slow  # two real builds and five reindex processes


def test_liveness_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    assert main(["--sizes", "60", "--real", "40", "--writes", "3", "--stores", "qdrant+local",
                 "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    [row] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert row["points"] == 60 and row["lost_writes"] == 0
    assert row["cutover_how"].startswith("changes only: 0 points without v1's model tag, 0 re-read")
    assert row["rollback_how"].startswith("changes only: 0 points without v2's model tag, 0 re-read")
    assert row["cutover_writes_how"].startswith("changes only: 3 points without v1's model tag")
    assert row["rollback_writes_how"].startswith("changes only: 3 points without v2's model tag")
    # One deletion leaves no trace: the count check names it and the full pass runs.
    assert row["cutover_deleted_how"] == "full catch-up: store count 65 != ledger 66"  # 60 + 2 x 3 written, 1 deleted
    assert all(row[f"{step}_s"] > 0 for step in ("status", "cutover", "rollback", "cutover_writes",
                                                   "rollback_writes", "cutover_deleted"))
    assert "| qdrant+local | 60 |" in out
