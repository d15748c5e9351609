"""The spine end to end on PostgreSQL through the command line: plan, apply, a model change
with a dimension change (MiniLM truncated to 128), status, verify, cut-over, the
application's SQL through the view, rollback and gc, on ``pgvector+local``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reindexer.cli import cli

pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {
        "REINDEX_STORE": f"pgvector+local:{tmp_path}/pg",
        "REINDEX_STATE": f"sqlite:///{tmp_path}/state.db",
        "REINDEX_BATCH_SIZE": "32",
        "REINDEX_PROGRESS": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _view(env) -> tuple[str, int, int]:
    """(the physical table behind the view, its dimension, its rows), read as the application reads it."""
    from reindexer.adapters import open_store

    with open_store(env["REINDEX_STORE"]) as s:
        conn = s._client
        target = conn.execute(
            "SELECT DISTINCT c.relname FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_class v ON v.oid = r.ev_class JOIN pg_class c ON c.oid = d.refobjid "
            "WHERE v.relname = 'docs' AND c.relname <> 'docs'"
        ).fetchone()[0]
        dim, rows = conn.execute("SELECT max(vector_dims(embedding)), count(*) FROM docs").fetchone()
    return str(target), int(dim), int(rows)


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_plan_apply_model_change_cutover_rollback_on_postgres(env, minilm_path, small_corpus_file, tmp_path):
    r = invoke(
        "--json",
        "plan",
        "docs",
        "--model",
        str(minilm_path),
        "--source",
        f"jsonl:{small_corpus_file}",
        "-o",
        str(tmp_path / "p1.json"),
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"]["source_docs"] == 60
    r = invoke("--json", "--yes", "apply", str(tmp_path / "p1.json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["live"] == "docs__v1"
    assert _view(env) == ("docs__v1", 384, 60)

    r = invoke(
        "--json", "plan", "docs", "--model", str(minilm_path), "--truncate-dim", "128", "-o", str(tmp_path / "p2.json")
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dimension_change"] is True
    r = invoke("--json", "apply", str(tmp_path / "p2.json"), "--no-cutover")
    assert r.exit_code == 0, r.output
    assert _view(env) == ("docs__v1", 384, 60)  # the shadow is built; the application still reads v1

    r = invoke("--json", "status", "docs")
    [row] = json.loads(r.stdout)
    assert row["live"]["physical"] == "docs__v1" and row["shadows"][0]["physical"] == "docs__v2"
    r = invoke("--json", "verify", "docs", "--version", "2")
    assert r.exit_code == 0, r.output

    assert invoke("--yes", "cutover", "docs").exit_code == 0
    assert _view(env) == ("docs__v2", 128, 60)  # one view swap, a new column type
    r = invoke("--json", "verify", "docs")
    assert r.exit_code == 0, r.output

    r = invoke("--json", "--yes", "rollback", "docs")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["live"] == "docs__v1"
    assert _view(env) == ("docs__v1", 384, 60)
    r = invoke("--json", "history", "docs")
    assert [v["status"] for v in json.loads(r.stdout)["versions"]] == ["live", "retired"]

    from reindexer.adapters import open_store

    with open_store(env["REINDEX_STORE"]) as s:
        # The HNSW index of each version was built after its load, with the metric's operator class.
        defs = [d for (d,) in s._client.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'")]
        assert len(defs) == 2 and all("vector_cosine_ops" in d for d in defs)


@pytest.mark.slow  # builds two versions with the real model
def test_cutover_killed_between_the_view_swap_and_the_state_record_is_repaired(
    env, minilm_path, small_corpus_file, tmp_path
):
    import os
    import signal
    import subprocess
    import sys

    from reindexer import killpoints

    assert (
        invoke(
            "--yes",
            "plan",
            "docs",
            "--model",
            str(minilm_path),
            "--source",
            f"jsonl:{small_corpus_file}",
            "-o",
            str(tmp_path / "p1.json"),
        ).exit_code
        == 0
    )
    assert invoke("--yes", "apply", str(tmp_path / "p1.json")).exit_code == 0
    assert (
        invoke(
            "plan", "docs", "--model", str(minilm_path), "--truncate-dim", "128", "-o", str(tmp_path / "p2.json")
        ).exit_code
        == 0
    )
    assert invoke("apply", str(tmp_path / "p2.json"), "--no-cutover").exit_code == 0

    # The process dies right after the view moved, before the state records it: SIGKILL, no clean-up
    # (its embedded PostgreSQL keeps running, and its pid stays on pgserver's list of holders).
    killed = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--yes", "cutover", "docs"],
        env={**os.environ, killpoints.ENV: "after-alias-swap"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _view(env) == ("docs__v2", 128, 60)  # the store moved

    r = invoke("--json", "status", "docs")  # the next command repairs the state from the view
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["live"]["physical"] == "docs__v2" and [x["physical"] for x in row["retired"]] == ["docs__v1"]
    assert [(x["kind"], x["recorded"]) for x in row["repairs"]] == [("completed", True)]
    r = invoke("--json", "--yes", "rollback", "docs")
    assert r.exit_code == 0 and json.loads(r.stdout)["live"] == "docs__v1", r.output
    assert _view(env) == ("docs__v1", 384, 60)
