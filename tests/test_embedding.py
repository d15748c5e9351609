"""Model versions: fingerprints, validation and registration, on the real MiniLM."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reindexer.devices import pick_device
from reindexer.embedding import Embedder
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings, check_model_folder, fingerprint
from reindexer.model_registry import embedder_for, register_model
from reindexer.state import StateStore


@pytest.fixture
def cls_pooled_copy(minilm_path, tmp_path):
    """A genuinely different model: the same weights with CLS instead of mean pooling."""
    folder = tmp_path / "minilm-cls"
    shutil.copytree(minilm_path, folder)
    cfg_path = folder / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    cfg_path.write_text(json.dumps(cfg))
    return folder


def test_same_folder_same_fingerprint(minilm_path):
    assert fingerprint(minilm_path) == fingerprint(minilm_path)
    assert len(fingerprint(minilm_path)) == 64


def test_different_models_different_fingerprints(minilm_path, cls_pooled_copy):
    assert fingerprint(minilm_path) != fingerprint(cls_pooled_copy)
    a = Embedder(minilm_path).embed_documents(["alias swap"])
    b = Embedder(cls_pooled_copy).embed_documents(["alias swap"])
    assert not np.allclose(a, b), "the two folders really are different models"


def test_settings_change_the_fingerprint(minilm_path):
    base = fingerprint(minilm_path)
    assert fingerprint(minilm_path, ModelSettings(truncate_dim=128)) != base
    assert fingerprint(minilm_path, ModelSettings(query_prompt="query: ")) != base


def test_docs_do_not_change_the_fingerprint(minilm_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(minilm_path, copy)
    (copy / "README.md").write_text("a new model card")
    assert fingerprint(copy) == fingerprint(minilm_path), "identical weights are the same model version"


@pytest.mark.parametrize("make", ["missing", "file", "no_modules"])
def test_not_a_sentence_transformers_model(tmp_path, make):
    target = tmp_path / "m"
    if make == "file":
        target.write_text("weights?")
    elif make == "no_modules":
        target.mkdir()
        (target / "config.json").write_text("{}")
    with pytest.raises(UsageError) as exc:
        check_model_folder(target)
    assert exc.value.exit_code == 2


def test_register_is_idempotent_and_records_dimension(minilm_path, tmp_path):
    state = StateStore(f"sqlite:///{tmp_path}/state.db")
    first = register_model(state, minilm_path, name="minilm")
    again = register_model(state, minilm_path, name="other-name")
    assert first.fingerprint == again.fingerprint
    assert (first.dim, first.similarity, first.max_seq_length) == (384, "cosine", 256)
    truncated = register_model(state, minilm_path, settings=ModelSettings(truncate_dim=128))
    assert truncated.dim == 128 and truncated.fingerprint != first.fingerprint
    assert len(state.list_models()) == 2
    assert state.find_model(first.label).fingerprint == first.fingerprint
    assert state.find_model("minilm").fingerprint == first.fingerprint


def test_changed_files_are_refused_after_registration(minilm_path, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(minilm_path, copy)
    state = StateStore(f"sqlite:///{tmp_path}/state.db")
    model = register_model(state, copy)
    (copy / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "pooling_mode_cls_token": True})
    )
    with pytest.raises(UsageError, match="changed since it was registered"):
        embedder_for(model)


def test_checking_a_model_loads_no_weights(minilm_path, tmp_path, monkeypatch):
    import reindexer.embedding as embedding
    from reindexer.model_registry import require_unchanged

    model = register_model(StateStore(f"sqlite:///{tmp_path}/state.db"), minilm_path)
    monkeypatch.setattr(embedding, "_LOADED", embedding.OrderedDict())
    require_unchanged(model)  # what check_plan runs before an apply
    assert len(embedding._LOADED) == 0


def test_truncated_embeddings_are_prefixes(minilm_path):
    full = Embedder(minilm_path).embed_documents(["matryoshka"])
    short = Embedder(minilm_path, ModelSettings(truncate_dim=64)).embed_documents(["matryoshka"])
    assert short.shape == (1, 64)
    assert np.allclose(full[0, :64], short[0], atol=1e-5)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    import torch

    monkeypatch.delenv("REINDEX_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device() == expected
    assert pick_device("cpu") == "cpu"  # the caller's choice, then REINDEX_DEVICE, win over what is there
    monkeypatch.setenv("REINDEX_DEVICE", "cpu")
    assert pick_device() == "cpu"
