"""The Ray executor builds the same index version as the local executor, on every store.

A local Ray instance (2 CPUs, one per session) runs the partitioned read, the parse-and-filter
tasks and the model replicas; the real MiniLM model embeds a tiny corpus. Each Ray build is
compared point by point with one local build of the same corpus: ids, counts, payloads, model
tags, ledger hashes, and vectors within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reindexer import commands, killpoints
from reindexer.adapters.base import MODEL_KEY
from reindexer.config import Config
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

# Ray starts actors and loads the model per build: minutes on a loaded 2-core machine, not the default 600 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DOCS = 36
BATCH = 8


def _workspace(url: str, folder) -> Workspace:
    folder.mkdir(parents=True, exist_ok=True)
    return Workspace(Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder}/state.db",
                            batch_size=BATCH))


def snapshot(ws: Workspace, collection: str = "docs") -> dict:
    """What a build produced: every point (payload, vector) and the ledger, keyed by doc id."""
    physical = ws.store.resolve(collection)
    points = {p.doc_id: p for page in ws.store.scroll(physical, batch_size=50, with_vectors=True) for p in page}
    version = [v for v in ws.state.versions(ws.state.get_collection(ws.store_url, collection).id)
               if v.physical_name == physical][0]
    return {"count": ws.store.count(physical), "points": points, "ledger": ws.state.ledger(version.id)}


def assert_same(got: dict, want: dict) -> None:
    assert got["count"] == want["count"] == DOCS
    assert set(got["points"]) == set(want["points"])
    assert got["ledger"] == want["ledger"]
    for doc_id, p in got["points"].items():
        q = want["points"][doc_id]
        assert p.payload == q.payload, doc_id  # the model tag (MODEL_KEY) included
        assert np.abs(np.asarray(p.vector) - np.asarray(q.vector)).max() <= 1e-5, doc_id


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, demo_corpus):
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", demo_corpus.documents[:DOCS])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus_file, minilm_path):
    """The local executor's build of the corpus (vectors do not depend on the store)."""
    folder = tmp_path_factory.mktemp("local")
    with _workspace(f"qdrant+local:{folder}/qdrant", folder) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path),
                             source=SourceSpec(kind="jsonl", location=str(corpus_file)))
        result = commands.apply(ws, plan, executor="local")
        assert result.cut_over
        snap = snapshot(ws)
    assert {p.payload[MODEL_KEY] for p in snap["points"].values()} == {plan.to_version["model_fingerprint"][:12]}
    return snap


def _ray_build(ws: Workspace, corpus_file, minilm_path):
    plan = commands.plan(ws, "docs", model_path=str(minilm_path),
                         source=SourceSpec(kind="jsonl", location=str(corpus_file)))
    return commands.apply(ws, plan, executor="ray")


def test_ray_build_on_milvus_lite_equals_the_local_build(ray_local, reference, tmp_path, corpus_file, minilm_path):
    with _workspace(f"milvus+lite:{tmp_path}/milvus.db", tmp_path) as ws:
        result = _ray_build(ws, corpus_file, minilm_path)
        assert result.cut_over and result.live == "docs__v1" and result.verification["ok"]
        assert result.stats["embedded"] == DOCS and result.stats["unchanged"] == 0
        assert_same(snapshot(ws), reference)


@pytest.mark.server
def test_ray_build_on_the_milvus_server_writes_from_workers_and_equals_the_local_build(
        ray_local, reference, milvus_server, tmp_path, corpus_file, minilm_path):
    from tests.plugins.stores import _drop_new

    _drop_new(milvus_server.url, None)
    try:
        with _workspace(milvus_server.url, tmp_path) as ws:
            assert not ws.location.embedded  # the writer actors, not this process, write the points
            result = _ray_build(ws, corpus_file, minilm_path)
            assert result.cut_over and result.verification["ok"]
            assert_same(snapshot(ws), reference)
    finally:
        _drop_new(milvus_server.url, None)


def test_a_ray_build_killed_between_write_and_ledger_resumes_with_the_local_executor(
        ray_local, reference, tmp_path, corpus_file, minilm_path, monkeypatch):
    class Killed(Exception):
        pass

    hits = []

    def kill() -> None:
        hits.append(1)
        if len(hits) == 3:  # two batches recorded, the third in the store only
            raise Killed

    monkeypatch.setenv(killpoints.ENV, "ray-before-ledger")
    monkeypatch.setattr(killpoints, "_kill", kill)
    with _workspace(f"qdrant+local:{tmp_path}/qdrant", tmp_path) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path),
                             source=SourceSpec(kind="jsonl", location=str(corpus_file)))
        with pytest.raises(Killed):
            commands.apply(ws, plan, executor="ray")
        version = ws.state.versions(ws.state.get_collection(ws.store_url, "docs").id)[-1]
        assert len(ws.state.ledger(version.id)) == 2 * BATCH
        assert ws.store.count(version.physical_name) >= 3 * BATCH - BATCH  # the unrecorded batch may be there
        monkeypatch.delenv(killpoints.ENV)
        resumed = commands.apply(ws, plan, executor="local")
        assert resumed.cut_over and resumed.verification["ok"]
        assert resumed.stats["embedded"] == DOCS - 2 * BATCH  # the ledger's two batches are not embedded again
        assert_same(snapshot(ws), reference)


def test_cli_apply_executor_ray_builds_verifies_and_cuts_over(ray_local, reference, tmp_path, corpus_file,
                                                              minilm_path):
    """The user's path, in a fresh folder: plan, then apply --executor ray in a fresh process.

    That process joins the session's Ray instance through RAY_ADDRESS, as `ray job submit` does.
    The plan runs the same command line in this process: it does not touch Ray, and a process
    of its own would only pay the torch and model import once more.
    """
    from click.testing import CliRunner

    from reindexer.cli import cli

    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    store, state = f"qdrant+local:{tmp_path}/qdrant", f"sqlite:///{tmp_path}/state.db"
    where = ("--store", store, "--state", state)

    planned = CliRunner().invoke(cli, [*where, "plan", "docs", "--model", str(minilm_path), "--source",
                                       f"jsonl:{corpus_file}", "-o", str(tmp_path / "plan.json")], env=env,
                                 catch_exceptions=False)
    assert planned.exit_code == 0, planned.output
    applied = subprocess.run([sys.executable, "-m", "reindexer.cli", *where, "--yes", "--json", "apply", "plan.json",
                              "--executor", "ray"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
    assert applied.returncode == 0, applied.stderr
    out = json.loads(applied.stdout)
    assert out["cut_over"] and out["live"] == "docs__v1" and out["verification"]["ok"]
    with _workspace(store, tmp_path) as ws:
        assert_same(snapshot(ws), reference)
