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


@pytest.fixture(scope="session")
def tuned_model_path(minilm_path: Path, demo_corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("datasets", reason="the fine-tune needs sentence-transformers' training extra (datasets)")
    from reindexer.demo import finetune_v2
    from reindexer.demo_corpus import DEMO_FINETUNE

    started = time.perf_counter()
    out = finetune_v2(minilm_path, demo_corpus.train_pairs, tmp_path_factory.mktemp("tuned") / "minilm-tuned")
    print(f"\nfine-tuned all-MiniLM-L6-v2 on {len(demo_corpus.train_pairs)} demo pairs "
          f"({DEMO_FINETUNE}) in {time.perf_counter() - started:.1f}s -> {out}")
    return out
