"""A real, tiny fine-tune of all-MiniLM-L6-v2 on the demo's pairs."""

from __future__ import annotations

import numpy as np
import pytest

from reindexer.demo_corpus import build_demo_corpus
from reindexer.finetune import finetune


def test_rejects_too_few_pairs(tmp_path):
    with pytest.raises(ValueError):
        finetune("unused", [("only one", "pair")], tmp_path / "out")
    with pytest.raises(ValueError):
        finetune("unused", [("a", "b"), ("c", "d")], tmp_path / "out", batch_size=1)
    with pytest.raises(ValueError):
        finetune("unused", [("a", "b", "c"), ("c", "d", "e")], tmp_path / "out")


@pytest.mark.slow
def test_tiny_finetune_saves_a_loadable_model_with_new_vectors(minilm_path, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    pairs = build_demo_corpus(seed=0).train_pairs[:64]
    out = finetune(minilm_path, pairs, tmp_path / "v2", batch_size=16, max_steps=3, seed=0,
                   device="cpu", learning_rate=1e-4)

    assert out == tmp_path / "v2"
    assert (out / "modules.json").exists() and (out / "config_sentence_transformers.json").exists()
    assert capsys.readouterr().out == ""  # stdout stays free for --json

    texts = [pairs[0][0], pairs[0][1], "bounce heron"]
    base = SentenceTransformer(str(minilm_path), device="cpu")
    tuned = SentenceTransformer(str(out), device="cpu")
    v1 = base.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    v2 = tuned.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    assert v2.shape == v1.shape == (3, 384) and np.isfinite(v2).all()
    assert np.abs(v1 - v2).max() > 1e-4  # the weights really moved
    assert (v1 * v2).sum(axis=1).min() > 0.8  # ...by a short fine-tune, not a wreck
