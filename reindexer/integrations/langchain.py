"""LangChain over the Searcher: a retriever and a read-only vector store.

An application that queries a collection through LangChain changes one line::

    # before: store = QdrantVectorStore(client=client, collection_name="docs", embedding=embeddings)
    store = ReindexerVectorStore("docs", store="qdrant://qdrant.internal:6333")
    store.similarity_search("how do I reset my password", k=5)
    retriever = store.as_retriever(search_kwargs={"k": 5})

    # or, as a retriever only
    retriever = ReindexerRetriever(collection="docs", store="milvus://milvus.internal:19530", k=5)

Each query is encoded by the model of the version the alias points at and
searched in that same physical collection, so an answer never mixes versions,
and a cut-over or rollback (even one that changes the dimension) is followed
without a restart. No ``Embeddings`` object is passed: the index's own metadata
says which model encodes its queries.

Documents are laid out the way LangChain's own stores lay out payloads:
``page_content`` is the text under the collection's text field (nested paths
such as ``metadata.body`` too); ``metadata`` is the payload's ``metadata``
object when it has one (langchain-qdrant's layout), else every payload field
but the text; ``Document.id`` is the document id. ``metadata["reindex"]``
says who answered: ``version`` (the physical collection), ``model`` (its
label), ``score``, ``doc_id`` and ``model_tag`` (the point's ``reindex_model``).

Filters are a dict of payload path to value, equality only, the same on Qdrant
and Milvus: ``{"metadata.source": "faq"}`` for a langchain-qdrant collection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "reindexer.integrations.langchain needs langchain-core: pip install 'reindexer[langchain]'"
    ) from exc
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from reindexer.integrations._common import (
    LANGCHAIN_METADATA_KEY,
    READ_ONLY,
    REINDEX_KEY,
    Answer,
    Answers,
    make_searcher,
)

__all__ = ["ReindexerRetriever", "ReindexerVectorStore", "REINDEX_KEY"]

DEFAULT_K = 4  # LangChain's own default


def _document(answer: Answer) -> Document:
    return Document(id=answer.doc_id, page_content=answer.text, metadata=answer.metadata)


def _relevance(metric: str, score: float) -> float:
    """A score on [0, 1], 1 the most relevant, from the backend's score under ``metric``.

    cosine and dot (unit vectors, as sentence-transformers models with a Normalize
    module make) are similarities: negative ones are clipped to 0. euclid is a
    distance: LangChain's ``1 - d / sqrt(2)`` for unit vectors, clipped.
    """
    if metric == "euclid":
        value = 1.0 - score / math.sqrt(2)
    else:
        value = score
    return min(1.0, max(0.0, value))


def _no_extra(kwargs: dict[str, Any], where: str) -> None:
    if kwargs:
        raise TypeError(f"{where} got unexpected keyword arguments: {', '.join(sorted(kwargs))}")


class ReindexerRetriever(BaseRetriever):
    """LangChain retriever over a reindexer-managed collection.

    Give ``collection`` (the logical name) with ``store`` (a store URL, a
    reindexer VectorStore, or a QdrantClient / MilvusClient this process already
    opened; None reads REINDEX_STORE / reindex.toml) or ``workspace`` (a
    ``reindexer.workspace.Workspace``, to share an embedded store with admin
    commands in one process); ``searcher_options`` go to ``Searcher`` (``refresh``,
    ``models_root``, ``device``, ...). Or pass a ``searcher`` you made yourself.

    ``k`` and ``filter`` are defaults; ``invoke(query, k=..., filter=...)`` overrides them.
    A searcher the retriever made is closed by ``close()``.
    """

    collection: str | None = None
    store: Any = None
    state: Any = None
    workspace: Any = None
    searcher: Any = None
    searcher_options: dict[str, Any] = Field(default_factory=dict)
    k: int = DEFAULT_K
    filter: dict[str, Any] | None = None
    #: payload path of the text; None: the one recorded in the answering version
    text_field: str | None = None
    #: payload key of LangChain's metadata object; None reads every payload field as metadata
    metadata_key: str | None = LANGCHAIN_METADATA_KEY
    #: dense, lexical or hybrid (Searcher.search); None: the answering version's default
    mode: str | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _answers: Answers = PrivateAttr()

    @model_validator(mode="after")
    def _open_searcher(self) -> ReindexerRetriever:
        searcher, owned = make_searcher(
            self.searcher,
            self.collection,
            store=self.store,
            state=self.state,
            workspace=self.workspace,
            options=self.searcher_options,
        )
        self.searcher = searcher
        self._answers = Answers(
            searcher, owned, text_field=self.text_field, metadata_key=self.metadata_key, mode=self.mode
        )
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = kwargs.pop("k", self.k)
        filter = kwargs.pop("filter", self.filter)
        _no_extra(kwargs, "ReindexerRetriever")
        return [_document(a) for a in self._answers.search(query, k, filter)]

    def close(self) -> None:
        """Close the searcher if this retriever made it."""
        self._answers.close()

    def __enter__(self) -> ReindexerRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReindexerVectorStore(VectorStore):
    """A read-only LangChain vector store over a reindexer-managed collection.

    ``similarity_search``, ``similarity_search_with_score``,
    ``similarity_search_with_relevance_scores`` and ``as_retriever()`` work;
    arguments as ``ReindexerRetriever``. Writes raise ``NotImplementedError``:
    a write must reach the live version and every built shadow, each embedded by
    its own model and recorded in its ledger, which is what ``reindex sync``
    does from the collection's source. MMR search is not offered (the Searcher
    returns no vectors).
    """

    def __init__(
        self,
        collection: str | None = None,
        *,
        store: Any = None,
        state: Any = None,
        workspace: Any = None,
        searcher: Any = None,
        text_field: str | None = None,
        metadata_key: str | None = LANGCHAIN_METADATA_KEY,
        mode: str | None = None,
        **searcher_options: Any,
    ) -> None:
        searcher, owned = make_searcher(
            searcher, collection, store=store, state=state, workspace=workspace, options=searcher_options
        )
        self.searcher = searcher
        self.collection = collection
        self._answers = Answers(searcher, owned, text_field=text_field, metadata_key=metadata_key, mode=mode)

    @property
    def embeddings(self) -> Embeddings | None:
        """None: queries are encoded by the answering version's own model, never by a fixed one."""
        return None

    # -- reads ------------------------------------------------------------------
    def similarity_search(
        self, query: str, k: int = DEFAULT_K, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        mode = kwargs.pop("mode", None)  # dense, lexical or hybrid for this call (Searcher.search)
        _no_extra(kwargs, "similarity_search")
        return [_document(a) for a in self._answers.search(query, k, filter, mode)]

    def similarity_search_with_score(
        self, query: str, k: int = DEFAULT_K, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, score) best first; the score as the backend reports it (cosine: similarity)."""
        mode = kwargs.pop("mode", None)
        _no_extra(kwargs, "similarity_search_with_score")
        return [(_document(a), a.score) for a in self._answers.search(query, k, filter, mode)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = DEFAULT_K, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        # Per answer, by the metric of the version that answered: a copy plan may change it.
        filter = kwargs.pop("filter", None)
        _no_extra(kwargs, "similarity_search_with_relevance_scores")
        out = []
        for a in self._answers.search(query, k, filter):
            metric = self._answers.searcher.version_info(a.info["version"]).metric
            out.append((_document(a), _relevance(metric, a.score)))
        return out

    def _select_relevance_score_fn(self):
        metric = self.searcher.current().metric
        return lambda score: _relevance(metric, score)

    def close(self) -> None:
        """Close the searcher if this store made it."""
        self._answers.close()

    def __enter__(self) -> ReindexerVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes: refused, plainly -------------------------------------------------
    def _read_only(self) -> NotImplementedError:
        return NotImplementedError(
            READ_ONLY.format(what="ReindexerVectorStore", collection=self.collection or "COLLECTION")
        )

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None, **kwargs: Any
    ) -> list[str]:
        raise self._read_only()

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        raise self._read_only()

    async def aadd_texts(
        self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None, **kwargs: Any
    ) -> list[str]:
        raise self._read_only()

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        raise self._read_only()

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        raise self._read_only()

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        raise self._read_only()

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> ReindexerVectorStore:
        raise NotImplementedError(
            READ_ONLY.format(what="ReindexerVectorStore", collection="COLLECTION")
            + "; build a new collection with `reindex plan COLLECTION --model PATH --source jsonl:FILE` "
            "and `reindex apply`"
        )
