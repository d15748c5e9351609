"""LlamaIndex over the Searcher: a retriever returning ``NodeWithScore``.

An application that retrieves through LlamaIndex changes one line::

    # before: retriever = index.as_retriever(similarity_top_k=5)
    retriever = ReindexerRetriever("docs", store="milvus://milvus.internal:19530", similarity_top_k=5)
    nodes = retriever.retrieve("how do I reset my password")
    engine = RetrieverQueryEngine.from_args(retriever)   # everything downstream is unchanged

Each query is encoded by the model of the version the alias points at and
searched in that same physical collection, so an answer never mixes versions,
and a cut-over or rollback (even one that changes the dimension) is followed
without a restart. A ``QueryBundle``'s own ``embedding`` is ignored for that
reason: only the answering version's model may encode its queries.

When a payload holds LlamaIndex's own ``_node_content`` the node is rebuilt
from it (``metadata_dict_to_node``: its class, id, relationships and metadata
come back as they were written); otherwise it is a ``TextNode`` whose id is
the document id, whose text is the collection's text field and whose metadata
is the rest of the payload (a LangChain ``metadata`` object, when there is one).
``node.metadata["reindex"]`` says who answered (``version``, ``model``,
``score``, ``doc_id``, ``model_tag``); it is excluded from the text that
LLMs and embedders see.

Filters: a dict of payload path to value, or LlamaIndex ``MetadataFilters``
made only of equality filters joined by AND (``ExactMatchFilter``, or
``MetadataFilter`` with ``FilterOperator.EQ``); others are refused, not ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode
    from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters
    from llama_index.core.vector_stores.utils import metadata_dict_to_node
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "reindexer.integrations.llamaindex needs llama-index-core: pip install 'reindexer[llamaindex]'"
    ) from exc

from reindexer.errors import UsageError
from reindexer.integrations._common import (
    LANGCHAIN_METADATA_KEY,
    REINDEX_KEY,
    Answer,
    Answers,
    make_searcher,
)
from reindexer.sources.base import NODE_CONTENT_KEY

__all__ = ["ReindexerRetriever", "REINDEX_KEY", "filters_to_dict"]


def filters_to_dict(filters: Any) -> dict[str, Any] | None:
    """A reindexer payload filter from a dict or from equality-only, AND-joined ``MetadataFilters``."""
    if filters is None or isinstance(filters, dict):
        return filters or None
    if not isinstance(filters, MetadataFilters):
        raise UsageError(f"filters must be MetadataFilters or a dict, not {type(filters).__name__}")
    out: dict[str, Any] = {}
    if len(filters.filters) > 1 and filters.condition not in (None, FilterCondition.AND):
        raise UsageError(f"only AND-joined filters are supported, not {filters.condition}")
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            out.update(filters_to_dict(f) or {})
            continue
        if f.operator != FilterOperator.EQ:
            raise UsageError(
                f"filter on {f.key!r}: only equality (FilterOperator.EQ) is supported, not {f.operator}",
                hint="reindexer filters are payload equality, the same on Qdrant and Milvus",
            )
        if f.key in out and out[f.key] != f.value:
            raise UsageError(f"filter on {f.key!r} asks for two values: {out[f.key]!r} and {f.value!r}")
        out[f.key] = f.value
    return out or None


def _node(answer: Answer) -> BaseNode:
    node: BaseNode | None = None
    if isinstance(answer.payload.get(NODE_CONTENT_KEY), str):
        try:
            node = metadata_dict_to_node(answer.payload, text=answer.text or None)
        except (ValueError, TypeError, KeyError):
            node = None  # not a node LlamaIndex wrote: read it as plain text and metadata
    if node is None:
        node = TextNode(
            id_=answer.doc_id, text=answer.text, metadata={k: v for k, v in answer.metadata.items() if k != REINDEX_KEY}
        )
    node.metadata[REINDEX_KEY] = dict(answer.info)
    for keys in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        if REINDEX_KEY not in keys:
            keys.append(REINDEX_KEY)
    return node


class ReindexerRetriever(BaseRetriever):
    """LlamaIndex retriever over a reindexer-managed collection.

    ``collection`` is the logical name; ``store`` a store URL, a reindexer
    VectorStore, or a QdrantClient / MilvusClient this process already opened
    (None reads REINDEX_STORE / reindex.toml); ``workspace`` a
    ``reindexer.workspace.Workspace`` to share an embedded store with admin
    commands in one process; ``searcher_options`` go to ``Searcher``. Or pass a
    ``searcher`` you made yourself. A searcher the retriever made is closed by ``close()``.
    """

    def __init__(
        self,
        collection: str | None = None,
        *,
        store: Any = None,
        state: Any = None,
        workspace: Any = None,
        searcher: Any = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | dict[str, Any] | None = None,
        text_field: str | None = None,
        metadata_key: str | None = LANGCHAIN_METADATA_KEY,
        searcher_options: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        mode: str | None = None,
    ) -> None:
        self._filter = filters_to_dict(filters)
        searcher, owned = make_searcher(
            searcher, collection, store=store, state=state, workspace=workspace, options=searcher_options
        )
        self.searcher = searcher
        self.collection = collection
        self.similarity_top_k = similarity_top_k
        self._answers = Answers(searcher, owned, text_field=text_field, metadata_key=metadata_key, mode=mode)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def filters(self) -> dict[str, Any] | None:
        return self._filter

    @filters.setter
    def filters(self, value: MetadataFilters | dict[str, Any] | None) -> None:
        self._filter = filters_to_dict(value)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        answers = self._answers.search(query_bundle.query_str, self.similarity_top_k, self._filter)
        return [NodeWithScore(node=_node(a), score=a.score) for a in answers]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The Searcher blocks (model and store); keep the event loop free.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def close(self) -> None:
        """Close the searcher if this retriever made it."""
        self._answers.close()

    def __enter__(self) -> ReindexerRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
