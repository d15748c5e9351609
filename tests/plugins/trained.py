"""A real second model version: all-MiniLM-L6-v2 fine-tuned on the demo corpus's training pairs.

``tuned_model_path`` runs the demo's own fine-tune step (``reindexer.demo.finetune_v2``:
``DEMO_FINETUNE``, 2 epochs, batch 32, learning rate 2e-4, MultipleNegativesRankingLoss)
once per session, into a session temporary folder; about 20-40 s on two CPU cores. The
one session fine-tune serves the demo test (as the demo's v2), the gate test, and the
trainer-callback test (which continues it for a few steps).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.plugins.shared import made_once


@pytest.fixture(scope="session")
def tuned_model_path(minilm_path: Path, demo_corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("datasets", reason="the fine-tune needs sentence-transformers' training extra (datasets)")
    from reindexer.demo import finetune_v2
    from reindexer.demo_corpus import DEMO_FINETUNE

    started = time.perf_counter()
    pairs = demo_corpus.train_pairs
    out = made_once(tmp_path_factory, "tuned", lambda folder: finetune_v2(minilm_path, pairs, folder / "minilm-tuned"))
    print(f"\nfine-tuned all-MiniLM-L6-v2 on {len(demo_corpus.train_pairs)} demo pairs "
          f"({DEMO_FINETUNE}) in {time.perf_counter() - started:.1f}s -> {out}")
    return out


@pytest.fixture(scope="session")
def cross_encoder_path(minilm_path: Path, demo_corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real cross-encoder: MiniLM's packaged weights with a new one-logit head, trained for one epoch
    on 96 of the demo's (query, positive) pairs against a random negative each (about 20 s on two cores).

    Weak by design (the suite needs a real CrossEncoder whose scores it can check, not a good one).
    """
    pytest.importorskip("datasets", reason="training needs sentence-transformers' training extra (datasets)")
    return made_once(
        tmp_path_factory, "cross-encoder", lambda folder: _train_cross_encoder(minilm_path, demo_corpus, folder)
    )


def _train_cross_encoder(minilm_path: Path, demo_corpus, folder: Path) -> Path:
    import random

    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    started = time.perf_counter()
    pairs = demo_corpus.train_pairs[:96]
    texts = [t for _, t in demo_corpus.train_pairs]
    rng = random.Random(0)
    rows: dict[str, list] = {"query": [], "text": [], "label": []}
    for query, positive in pairs:
        rows["query"] += [query, query]
        rows["text"] += [positive, rng.choice(texts)]
        rows["label"] += [1.0, 0.0]
    model = CrossEncoder(str(minilm_path), num_labels=1, local_files_only=True)
    args = CrossEncoderTrainingArguments(
        output_dir=str(folder / "run"), num_train_epochs=1, per_device_train_batch_size=16, learning_rate=2e-4,
        save_strategy="no", report_to=[], seed=0, use_cpu=True, disable_tqdm=True, logging_steps=1000,
    )  # fmt: skip
    CrossEncoderTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=BinaryCrossEntropyLoss(model)
    ).train()
    out = folder / "minilm-cross-encoder"
    model.save(str(out))
    print(f"\ntrained a cross-encoder from all-MiniLM-L6-v2 on {len(rows['label'])} pairs "
          f"in {time.perf_counter() - started:.1f}s -> {out}")
    return out
