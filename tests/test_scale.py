"""Done-when of the spine: a 5,000-document model change on each embedded backend."""

from __future__ import annotations

import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY
from reindexer.config import Config
from reindexer.embedding import ModelSettings
from reindexer.query import search
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import scaled_documents, write_jsonl


@pytest.mark.slow
def test_full_model_change_of_5000_documents(embedded_store_url, tmp_path, minilm_path, demo_corpus):
    docs = scaled_documents(demo_corpus, 5000)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    config = Config(base_dir=tmp_path, store_url=embedded_store_url, state_url=f"sqlite:///{tmp_path}/state.db")
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path),
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
        queries = list(demo_corpus.queries.values())[:20]
        before = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=10)]

        plan = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=256))
        result = commands.apply(ws, plan)
        assert result.live == "docs__v2" and ws.store.resolve("docs") == "docs__v2"
        new_model = ws.state.get_model(plan.to_version["model_fingerprint"])
        ids, tags = set(), set()
        for page in ws.store.scroll("docs__v2", batch_size=500):
            for p in page:
                ids.add(p.doc_id)
                tags.add(p.payload[MODEL_KEY])
        assert ids == {d["id"] for d in docs}
        assert ws.store.count("docs__v2") == 5000
        assert tags == {new_model.short}

        commands.rollback(ws, "docs")
        after = [[h.doc_id for h in hits] for hits in search(ws, "docs", queries, k=10)]
        assert after == before
