"""The command line: thin over the library, JSON on stdout, documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from reindexer.cli import cli


@pytest.fixture
def env(tmp_path, monkeypatch):
    # The CLI is a thin layer over the library, whose flow tests run on every embedded backend.
    monkeypatch.chdir(tmp_path)
    values = {
        "REINDEX_STORE": f"qdrant+local:{tmp_path}/q",
        "REINDEX_STATE": f"sqlite:///{tmp_path}/state.db",
        "REINDEX_BATCH_SIZE": "32",
        "REINDEX_PROGRESS": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def reindex(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script, as an operator or a cron job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "reindexer.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env_extra or {})}, timeout=300,
    )


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_plan_apply_status_rollback_history_as_json(env, minilm_path, small_corpus_file, tmp_path):
    r = invoke("--json", "plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{small_corpus_file}",
               "-o", str(tmp_path / "p1.json"))
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["mode"] == "full" and plan["counts"]["source_docs"] == 60
    assert json.loads((tmp_path / "p1.json").read_text())["id"] == plan["id"]

    r = invoke("--json", "--yes", "apply", str(tmp_path / "p1.json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["live"] == "docs__v1"

    r = invoke("--json", "plan", "docs", "--model", str(minilm_path), "--truncate-dim", "128",
               "-o", str(tmp_path / "p2.json"))
    assert r.exit_code == 0, r.output
    r = invoke("--json", "apply", str(tmp_path / "p2.json"), "--no-cutover")
    assert r.exit_code == 0, r.output

    r = invoke("--json", "status", "docs")
    [row] = json.loads(r.stdout)
    assert row["live"]["physical"] == "docs__v1" and row["shadows"][0]["physical"] == "docs__v2"

    assert invoke("--yes", "cutover", "docs").exit_code == 0
    r = invoke("--json", "--yes", "rollback", "docs")
    assert r.exit_code == 0 and json.loads(r.stdout)["live"] == "docs__v1"

    r = invoke("--json", "history", "docs")
    assert [v["status"] for v in json.loads(r.stdout)["versions"]] == ["live", "retired"]
    r = invoke("--json", "model", "list")
    assert len(json.loads(r.stdout)) == 2
    r = invoke("status")
    assert "docs__v1" in r.output


def test_destructive_steps_refuse_without_yes_off_a_terminal(env, minilm_path, small_corpus_file, tmp_path):
    invoke("plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{small_corpus_file}",
           "-o", str(tmp_path / "p.json"))
    r = reindex("apply", str(tmp_path / "p.json"))
    assert r.returncode == 2 and "--yes" in r.stderr
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / ".reindex")  # nothing was built


@pytest.mark.slow  # builds a version with the real model: left out of make test-fast
def test_apply_resume_after_a_finished_apply_exits_0_and_names_the_live_version(env, minilm_path,
                                                                               small_corpus_file, tmp_path):
    """A scheduled retry runs `apply --resume` after a run that finished: that is done (exit 0), not exit 3.

    Exit 3 stays for a collection no apply ever finished: unknown, or planned and never applied.
    """
    resume = ("--json", "--yes", "apply", "--resume", "docs")
    r = invoke(*resume)
    assert r.exit_code == 3 and "unknown collection 'docs'" in r.stderr, r.output
    r = invoke("--json", "plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{small_corpus_file}",
               "-o", str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.output
    plan_id = json.loads(r.stdout)["id"]
    r = invoke(*resume)  # planned, never applied: nothing to resume and nothing applied
    assert r.exit_code == 3 and "no apply of it ever finished" in r.stderr and r.stdout == "", r.output

    assert invoke("--json", "--yes", "apply", str(tmp_path / "p.json")).exit_code == 0
    r = invoke(*resume)
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["already_applied"] and not done["cut_over"] and done["stats"] == {}
    assert (done["plan_id"], done["version"], done["live"]) == (plan_id, 1, "docs__v1")
    assert done["message"] == f"nothing to resume: plan {plan_id[:12]} is already applied; v1 (docs__v1) is live"

    r = invoke("--yes", "apply", "--resume", "docs")
    assert r.exit_code == 0 and "already applied; v1 (docs__v1) is live" in r.stdout, r.output
    r = invoke("--json", "status", "docs")
    assert json.loads(r.stdout)[0]["live"]["physical"] == "docs__v1"  # the answer changed nothing


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["plan", "nope", "--model", "{model}"], 3, "unknown collection"),
        (["plan", "docs", "--model", "{tmp}", "--source", "jsonl:{corpus}"], 2, "not a sentence-transformers model"),
        (["apply", "{tmp}/missing.json", "--no-cutover"], 2, "cannot read plan file"),
        (["--yes", "rollback", "nope"], 3, "unknown collection"),
        (["--yes", "cutover", "nope"], 3, "unknown collection"),
        (["plan", "docs", "--model", "{model}", "--source", "jsonl:{tmp}/none.jsonl"], 2, ""),
    ],
)
def test_errors_map_to_exit_codes(env, minilm_path, small_corpus_file, tmp_path, args, code, text):
    # In process: the mapping is run_command's. The console script's own exit (sys.exit from main,
    # no traceback on stderr) is the subprocess tests' here and in test_destructive_steps_refuse_...
    fill = {"model": str(minilm_path), "tmp": str(tmp_path), "corpus": str(small_corpus_file)}
    r = CliRunner().invoke(cli, [a.format(**fill) for a in args])
    assert isinstance(r.exception, SystemExit), r.exc_info  # mapped and exited, not raised
    assert r.exit_code == code, r.stderr
    assert r.stderr.startswith("error:") and text in r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_backend_exits_5_after_bounded_retries(tmp_path):
    from reindexer.state import StateStore

    StateStore(f"sqlite:///{tmp_path}/s.db").close()  # status never creates a state: missing would be exit 3
    r = reindex("--store", "milvus://127.0.0.1:9", "--state", f"sqlite:///{tmp_path}/s.db", "status",
                env_extra={"REINDEX_RETRY_ATTEMPTS": "2", "REINDEX_RETRY_INITIAL": "0.05"})
    assert r.returncode == 5, r.stderr
    assert "unavailable" in r.stderr and "Traceback" not in r.stderr


def test_credentials_in_store_url_are_refused_and_not_echoed(tmp_path):
    r = CliRunner().invoke(cli, ["--store", "qdrant://admin:s3cret@127.0.0.1:6333",
                                 "--state", f"sqlite:///{tmp_path}/s.db", "status"])
    assert r.exit_code == 2 and "s3cret" not in r.stderr + r.stdout


def test_global_options_are_accepted_after_the_verb(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from reindexer.cli import cli

    monkeypatch.chdir(tmp_path)
    store = f"milvus+lite:{tmp_path / 'late.db'}"
    after = CliRunner().invoke(cli, ["config", "show", "--json", "--store", store, "-v"])
    before = CliRunner().invoke(cli, ["--json", "--store", store, "-v", "config", "show"])
    assert after.exit_code == before.exit_code == 0, after.output
    assert json.loads(after.output) == json.loads(before.output)
    assert json.loads(after.output)["store"]["url"] == store
    assert CliRunner().invoke(cli, ["history", "docs", "--yes", "--state", f"sqlite:///{tmp_path}/s.db"]).exit_code == 3


def test_adopt_names_the_vectors_of_a_collection_with_several(env, minilm_path, tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=f"{tmp_path}/q")
    client.create_collection("kb", vectors_config={n: models.VectorParams(size=384, distance=models.Distance.COSINE)
                                                   for n in ("title", "body")})
    client.upsert("kb", [models.PointStruct(id=1, vector={"title": [1.0] * 384, "body": [1.0] * 384},
                                            payload={"text": "one"})])
    client.close()
    r = invoke("adopt", "kb", "--model", str(minilm_path))
    assert r.exit_code == 2 and "2 dense vectors ('body', 'title')" in r.output and "--vector-name" in r.output
    r = invoke("adopt", "kb", "--model", str(minilm_path), "--vector-name", "summary")
    assert r.exit_code == 2 and "no dense vector 'summary'; its dense vectors: 'body', 'title'" in r.output
    (tmp_path / "reindex.toml").write_text('[collections.kb]\nvector_name = "abstract"\n')
    r = invoke("adopt", "kb", "--model", str(minilm_path))
    assert r.exit_code == 2 and "no dense vector 'abstract'" in r.output
    # Nothing recorded: the collection is still unmanaged.
    assert json.loads(invoke("--json", "status").output) == [{"collection": "kb", "managed": False, "live": "kb"}]
