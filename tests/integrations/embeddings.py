"""The applications' embeddings: the same model the tool registers, behind LangChain's interface.

Imported by the framework tests after their ``importorskip("langchain_core")``.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from reindexer.embedding import Embedder, ModelSettings

#: the second model version the framework tests move to: the same weights, truncated to 256 dimensions
TRUNCATED = ModelSettings(truncate_dim=256)


class EmbedderEmbeddings(Embeddings):
    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()
