"""What the framework integrations share; imports no framework.

``Answers`` wraps a ``reindexer.Searcher``: it makes one from a collection name
and store options (or takes one the caller made), runs a query, and splits
each hit's payload into the text and the metadata the framework's document
carries, by the text field of the version that answered.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from reindexer.adapters.base import MODEL_KEY, RESERVED_PAYLOAD_KEYS
from reindexer.errors import UsageError
from reindexer.sources.base import extract_text, is_template
from reindexer.version_search import check_mode

#: Key of the answering version's facts in every document's / node's metadata.
REINDEX_KEY = "reindex"
#: Where LangChain's own stores (langchain-qdrant, langchain-milvus' JSON layout) keep metadata.
LANGCHAIN_METADATA_KEY = "metadata"


def make_searcher(
    searcher: Any = None,
    collection: str | None = None,
    *,
    store: Any = None,
    state: Any = None,
    workspace: Any = None,
    options: dict[str, Any] | None = None,
) -> tuple[Any, bool]:
    """(searcher, owned): ``searcher`` as given, or a new ``Searcher`` that the caller must close."""
    if searcher is not None:
        if collection is not None or store is not None or workspace is not None or options:
            raise UsageError("pass either a searcher or a collection with store options, not both")
        return searcher, False
    if not collection:
        raise UsageError("name the collection to query (collection='docs'), or pass a reindexer Searcher")
    from reindexer.searcher import Searcher

    return Searcher(collection, store, state, workspace=workspace, **dict(options or {})), True


def check_filter(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value or None
    raise UsageError(
        f"filter must be a dict of payload path to value (e.g. {{'metadata.source': 'faq'}}), "
        f"not {type(value).__name__}",
        hint="reindexer filters are payload equality, the same on Qdrant and Milvus",
    )


def without_path(obj: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``obj`` without the value at the dotted ``path`` (a key holding dots wins).

    Only dicts are descended into; a path through a JSON string (``_node_content.text``)
    leaves ``obj`` as it is, since that string is the application's own field.
    """
    if path in obj:
        return {k: v for k, v in obj.items() if k != path}
    head, _, rest = path.partition(".")
    if not rest or not isinstance(obj.get(head), dict):
        return dict(obj)
    return {**obj, head: without_path(obj[head], rest)}


@dataclass
class Answer:
    """One hit, split for a framework document."""

    doc_id: str
    score: float
    text: str
    #: the payload without the tool's own keys (``reindex_doc_id``, ``reindex_model``)
    payload: dict[str, Any]
    #: the document's metadata: the payload's LangChain ``metadata`` object when there is
    #: one, else every payload field but the text; ``reindex`` added
    metadata: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Answers:
    """Queries through a Searcher and splits payloads; thread-safe as the Searcher is."""

    def __init__(
        self,
        searcher: Any,
        owned: bool,
        *,
        text_field: str | None = None,
        metadata_key: str | None = LANGCHAIN_METADATA_KEY,
        mode: str | None = None,
    ):
        self.searcher = searcher
        self.owned = owned
        self.text_field = text_field
        self.metadata_key = metadata_key
        #: dense, lexical or hybrid; None: the answering version's default (Searcher.search)
        self.mode = check_mode(mode) if mode is not None else None

    def text_field_of(self, physical: str) -> str:
        # A version's text field never changes; the Searcher keeps each version's facts.
        return self.text_field or self.searcher.version_info(physical).text_field or "text"

    # -- answers ------------------------------------------------------------------
    def search(self, query: str, k: int, filter: dict[str, Any] | None = None, mode: str | None = None) -> list[Answer]:
        if not isinstance(query, str):
            raise UsageError(f"query must be a string, not {type(query).__name__}")
        mode = check_mode(mode) if mode is not None else self.mode
        # mode only when asked: a searcher of the application's own making may not take it
        chosen = {"mode": mode} if mode is not None else {}
        hits = self.searcher.search(query, k=k, filter=check_filter(filter), **chosen)
        return [self.answer(h) for h in hits]

    def answer(self, hit: Any) -> Answer:
        text_field = self.text_field_of(hit.version)
        payload = {k: v for k, v in hit.payload.items() if k not in RESERVED_PAYLOAD_KEYS}
        text = extract_text(payload, text_field) or ""
        nested = payload.get(self.metadata_key) if self.metadata_key else None
        if isinstance(nested, dict):
            # LangChain's layout: text beside a metadata object (what langchain-qdrant reads back)
            metadata = copy.deepcopy(nested)
            head, _, rest = text_field.partition(".")
            if head == self.metadata_key and rest and text_field not in payload:
                metadata = without_path(metadata, rest)
        elif is_template(text_field):
            # a text template (``{title}. {text}``): page_content is the rendered text and every
            # field it reads stays in the metadata, where the application finds each one by name
            metadata = copy.deepcopy(payload)
        else:
            metadata = without_path(copy.deepcopy(payload), text_field)
        info = {
            "version": hit.version,
            "model": hit.model,
            "score": hit.score,
            "doc_id": hit.doc_id,
            "model_tag": hit.payload.get(MODEL_KEY),
        }
        metadata[REINDEX_KEY] = dict(info)
        return Answer(doc_id=hit.doc_id, score=hit.score, text=text, payload=payload, metadata=metadata, info=info)

    def close(self) -> None:
        if self.owned:
            self.searcher.close()


READ_ONLY = (
    "{what} is read-only: it answers queries, each wholly from the version the alias points at. "
    "Write documents where the collection's source of truth is and run `reindex sync {collection}`, "
    "which embeds new and changed documents into the live version and every built shadow, each with "
    "its own model (an application's own store embeds with its own model, which is right only while "
    "that model is the live version's)"
)
