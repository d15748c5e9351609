"""Issue 12 point 4: checks compare fingerprints from the files, never by loading weights.

Once the collection is built, loading any weights is made to raise; every check must
still answer (or refuse on a fingerprint mismatch) without reaching it.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict

import pytest

from reindexer import commands, model_identity
from reindexer import embedding as embedding_module
from reindexer.build.verify import verify_version
from reindexer.config import Config
from reindexer.encoders import EncoderSpec, load_encoder
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings
from reindexer.model_registry import require_unchanged
from reindexer.planner import check_plan
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl


class WeightsLoaded(AssertionError):
    pass


@pytest.fixture
def no_weights(monkeypatch):
    """From here on, loading a model raises: through reindexer and through sentence-transformers itself."""
    import sentence_transformers

    def refuse(*args, **kwargs):
        raise WeightsLoaded("a check loaded model weights")

    class Refused:
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(embedding_module, "_LOADED", OrderedDict())  # nothing already loaded can hide a load
    monkeypatch.setattr(model_identity, "_MATCHED", set())  # and every fingerprint is hashed again
    monkeypatch.setattr(embedding_module, "load_sentence_transformer", refuse)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Refused)


def test_plan_check_status_verify_and_encoder_check_load_no_weights(minilm_path, demo_corpus, tmp_path, request):
    corpus = write_jsonl(tmp_path / "c.jsonl", demo_corpus.documents[:16])
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path / 'q'}",
                    state_url=f"sqlite:///{tmp_path}/state.db", batch_size=8)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
        pending = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=64),
                                estimate=False)
        meta = ws.store.describe("docs__v1").metadata
        lc = ws.state.get_collection(ws.store_url, "docs")
        live = ws.state.version_by_physical(lc.id, "docs__v1")
        model = ws.state.get_model(live.model_fingerprint)

        request.getfixturevalue("no_weights")
        assert check_plan(ws, pending)[2].fingerprint == pending.to_version["model_fingerprint"]
        require_unchanged(model)
        assert commands.status(ws, "docs")[0]["collection"] == "docs"
        report = verify_version(ws, lc, live, model, sample=0)
        assert report.ok, report.problems()
        # The Searcher's encoder check: files that are not the recorded model are refused by fingerprint,
        # before anything is loaded.
        other = tmp_path / "other-model"
        shutil.copytree(minilm_path, other)
        (other / "config_sentence_transformers.json").write_text("{}")
        spec = EncoderSpec.from_metadata("docs__v1", meta, dim=384, metric="cosine")
        with pytest.raises(UsageError, match="do not match the fingerprint"):
            load_encoder(spec, models_root=f"{spec.path}={other}")
        # and the right files pass the check, so the load (here refused) is the next step, not the check.
        with pytest.raises(WeightsLoaded):
            load_encoder(spec)
