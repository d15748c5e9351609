"""The applications' embeddings: the same model the tool registers, behind LangChain's interface.

Imported by the framework tests after their ``importorskip("langchain_core")``.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from reindexer.embedding import Embedder

#: the second model version the framework tests move to: the same weights, truncated to 256 dimensions
from reindexer.model_identity import ModelSettings

#: the second model version the framework tests move to: the same weights, truncated to 256 dimensions
TRUNCATED = ModelSettings(truncate_dim=256)


class EmbedderEmbeddings(Embeddings):
    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        # The framework tests ask the same few queries after every step of a flow, once per
        # framework: each query is encoded once per model version and session (the model is
        # deterministic on CPU, so the vector is the one a fresh encode would give).
        self._queries: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        if text not in self._queries:
            self._queries[text] = self.embedder.embed_queries([text])[0].tolist()
        return list(self._queries[text])
