"""A small world for liveness tests: two versions of ``docs`` and an adopted ``kb``.

``Pair`` holds, in one store and one SQLite state database:

- ``docs``: v1 (MiniLM, ``N_PAIR_DOCS`` documents from a JSONL file) live behind
  the alias, and v2 (MiniLM truncated to 256 dimensions) built and verified, not
  cut over; their plans are in ``plan_v1`` and ``plan_v2``;
- ``kb``: a collection made outside the tool and queried by its real name,
  adopted (version 1, physical name ``kb``), ready for ``reindex migrate``.

On the embedded stores the world is built once per module and copied back
before each test (``restore``); on the Milvus server it is built again each time.
The store is closed between uses, so a ``reindex`` subprocess can open it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reindexer import commands
from reindexer.adapters.base import CollectionSpec, Point
from reindexer.config import Config
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

N_PAIR_DOCS = 24
N_KB_DOCS = 12
PAIR_BATCH = 16
TRUNCATED = ModelSettings(truncate_dim=256)


@dataclass
class Pair:
    kind: str
    base: Path
    ws_dir: Path
    pristine: Path
    store_url: str
    documents: list[dict]
    minilm_path: Path
    corpus: Path
    plan_v1: Path
    plan_v2: Path

    @property
    def state_db(self) -> Path:
        return self.ws_dir / "state.db"

    @property
    def embedded(self) -> bool:
        return self.kind in ("qdrant-local", "milvus-lite")

    def config(self, batch_size: int = PAIR_BATCH) -> Config:
        return Config(base_dir=self.base, store_url=self.store_url, state_url=f"sqlite:///{self.state_db}",
                      batch_size=batch_size)

    def workspace(self, batch_size: int = PAIR_BATCH) -> Workspace:
        return Workspace(self.config(batch_size))

    def env(self, batch_size: int = PAIR_BATCH) -> dict[str, str]:
        return {
            **os.environ,
            "REINDEX_STORE": self.store_url,
            "REINDEX_STATE": f"sqlite:///{self.state_db}",
            "REINDEX_BATCH_SIZE": str(batch_size),
            "REINDEX_PROGRESS": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def restore(self) -> None:
        if self.embedded:
            shutil.rmtree(self.ws_dir, ignore_errors=True)
            shutil.copytree(self.pristine, self.ws_dir)
        else:
            self.build()

    def build(self) -> None:
        from tests.plugins.stores import _drop_new

        if not self.embedded:
            _drop_new(self.store_url, None)
        shutil.rmtree(self.ws_dir, ignore_errors=True)
        self.ws_dir.mkdir(parents=True)
        write_jsonl(self.corpus, self.documents)
        with self.workspace() as ws:
            p1 = commands.plan(ws, "docs", model_path=str(self.minilm_path), estimate=False,
                               source=SourceSpec(kind="jsonl", location=str(self.corpus)))
            assert commands.apply(ws, p1).live == "docs__v1"
            p2 = commands.plan(ws, "docs", model_path=str(self.minilm_path), settings=TRUNCATED, estimate=False)
            r2 = commands.apply(ws, p2, cutover=False)
            assert not r2.cut_over and r2.verification["ok"]
            self.plan_v1.write_text(p1.to_json() + "\n")
            self.plan_v2.write_text(p2.to_json() + "\n")
            _make_kb(ws, self.minilm_path, self.documents[:N_KB_DOCS])
        if self.embedded:
            shutil.rmtree(self.pristine, ignore_errors=True)
            shutil.copytree(self.ws_dir, self.pristine)

    def statuses(self, collection: str = "docs") -> dict[int, str]:
        with self.workspace() as ws:
            return statuses(ws, collection)


def statuses(ws: Workspace, collection: str = "docs") -> dict[int, str]:
    lc = ws.state.get_collection(ws.store_url, collection)
    return {v.version: v.status for v in ws.state.versions(lc.id)}


def _make_kb(ws: Workspace, minilm_path: Path, docs: list[dict]) -> None:
    from reindexer.embedding import Embedder

    vectors = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    ws.store.create_collection(CollectionSpec(name="kb", dim=384))
    ws.store.upsert("kb", [Point(d["id"], v.tolist(), {"text": d["text"]}) for d, v in zip(docs, vectors, strict=True)])
    commands.adopt(ws, "kb", str(minilm_path), sample=4)


def _pair(request: Any, tmp_path_factory: pytest.TempPathFactory, minilm_path: Path, demo_corpus) -> Pair:
    kind = request.param
    base = tmp_path_factory.mktemp(f"pair-{kind}")
    if kind == "milvus-server":
        store_url = request.getfixturevalue("milvus_server").url
    elif kind == "qdrant-local":
        store_url = f"qdrant+local:{base / 'ws' / 'qdrant'}"
    else:
        store_url = f"milvus+lite:{base / 'ws' / 'milvus.db'}"
    pair = Pair(kind=kind, base=base, ws_dir=base / "ws", pristine=base / "pristine", store_url=store_url,
                documents=demo_corpus.documents[:N_PAIR_DOCS], minilm_path=minilm_path,
                corpus=base / "corpus.jsonl", plan_v1=base / "plan-v1.json", plan_v2=base / "plan-v2.json")
    pair.build()
    return pair


@pytest.fixture(scope="module", params=[
    pytest.param("qdrant-local", id="qdrant-local"),
    pytest.param("milvus-lite", id="milvus-lite"),
    pytest.param("milvus-server", id="milvus-server", marks=pytest.mark.server),
])
def pair(request, tmp_path_factory, minilm_path, demo_corpus):
    """The liveness world on Qdrant local, Milvus Lite and the Milvus server; call ``restore()`` first."""
    p = _pair(request, tmp_path_factory, minilm_path, demo_corpus)
    yield p
    if not p.embedded:
        from tests.plugins.stores import _drop_new

        _drop_new(p.store_url, None)


@pytest.fixture(scope="module", params=[pytest.param(k, id=k) for k in ("qdrant-local", "milvus-lite")])
def embedded_pair(request, tmp_path_factory, minilm_path, demo_corpus):
    """The liveness world on the embedded stores, restored before each use by the test."""
    return _pair(request, tmp_path_factory, minilm_path, demo_corpus)
