"""The Ray executor builds the same index version as the local executor, on every store.

A local Ray instance (2 CPUs) runs the partitioned read, the parse-and-filter tasks and the
model replicas; the real MiniLM model embeds a tiny corpus. The comparison is point by point:
ids, counts, payloads, model tags and vectors within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY
from reindexer.config import Config
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

pytestmark = pytest.mark.slow

DOCS = 36


def _workspace(url: str, folder) -> Workspace:
    return Workspace(Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder}/state.db", batch_size=8))


def _points(ws: Workspace, physical: str) -> dict:
    return {p.doc_id: p for page in ws.store.scroll(physical, batch_size=50, with_vectors=True) for p in page}


def _build(url: str, folder, spec: SourceSpec, minilm_path, executor: str, collection: str = "docs"):
    folder.mkdir(parents=True, exist_ok=True)
    ws = _workspace(url, folder)
    plan = commands.plan(ws, collection, model_path=str(minilm_path), source=spec)
    result = commands.apply(ws, plan, executor=executor)
    return ws, result


def assert_same_version(ws_a, ws_b, physical: str) -> None:
    a, b = _points(ws_a, physical), _points(ws_b, physical)
    assert set(a) == set(b) and len(a) == DOCS
    assert ws_a.store.count(physical) == ws_b.store.count(physical) == DOCS
    for doc_id, pa in a.items():
        pb = b[doc_id]
        assert pa.payload == pb.payload, doc_id
        assert pa.payload[MODEL_KEY] == pb.payload[MODEL_KEY]
        assert np.abs(np.asarray(pa.vector) - np.asarray(pb.vector)).max() <= 1e-5, doc_id
    version_a = ws_a.state.versions(ws_a.state.get_collection(ws_a.store_url, "docs").id)[-1]
    version_b = ws_b.state.versions(ws_b.state.get_collection(ws_b.store_url, "docs").id)[-1]
    assert ws_a.state.ledger(version_a.id) == ws_b.state.ledger(version_b.id)


@pytest.fixture
def corpus_file(tmp_path, demo_corpus):
    return write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:DOCS])


@pytest.mark.parametrize("kind", ["qdrant-local", "milvus-lite"])
def test_ray_build_equals_local_on_embedded_stores(ray_local, kind, tmp_path, corpus_file, minilm_path):
    spec = SourceSpec(kind="jsonl", location=str(corpus_file))
    urls = {"local": tmp_path / "local", "ray": tmp_path / "ray"}
    made = {}
    for executor, folder in urls.items():
        url = f"qdrant+local:{folder}/qdrant" if kind == "qdrant-local" else f"milvus+lite:{folder}/milvus.db"
        made[executor] = _build(url, folder, spec, minilm_path, executor)
    (ws_local, r_local), (ws_ray, r_ray) = made["local"], made["ray"]
    try:
        assert r_ray.cut_over and r_ray.live == "docs__v1" and r_ray.verification["ok"]
        assert r_ray.stats["embedded"] == r_local.stats["embedded"] == DOCS
        assert_same_version(ws_local, ws_ray, "docs__v1")
    finally:
        ws_local.close()
        ws_ray.close()
