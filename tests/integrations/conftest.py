"""Session-wide embeddings for the framework tests: each model version is loaded once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm(minilm_path):
    pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
    from reindexer.embedding import Embedder
    from tests.integrations.embeddings import EmbedderEmbeddings

    return EmbedderEmbeddings(Embedder(minilm_path))


@pytest.fixture(scope="session")
def minilm_256(minilm_path):
    pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
    from reindexer.embedding import Embedder
    from tests.integrations.embeddings import TRUNCATED, EmbedderEmbeddings

    return EmbedderEmbeddings(Embedder(minilm_path, TRUNCATED))
