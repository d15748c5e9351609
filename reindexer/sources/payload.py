"""The live collection as its own source: the text kept in each point's payload.

``PayloadSource`` scrolls a physical collection without vectors. Each point
becomes a ``Document``:

- ``doc_id`` is the point's document id as the adapter reports it;
- ``text`` is read from the payload at ``text_field``, a dotted path
  (``page_content`` for LangChain, ``_node_content`` for LlamaIndex, whose JSON
  string holds the node and its ``"text"``; see ``base.extract_text``);
- ``payload`` is the point's payload copied untouched, the text field included
  (applications read it), minus only the tool's own keys (``reindex_doc_id``,
  ``reindex_model``), which the executor writes afresh for the new index.

Points without text are never skipped silently. Iterating stops at the first
one with a ``UsageError``; ``scan()`` (and ``validate()``) make a full pass that
is cheap (no vectors are read, nothing is embedded) and report every such point
at once: "N of M points have no text under 'FIELD' (e.g. ids ...)". The planner
should scan before a build starts, so a build never stops half-way on this.

Incremental semantics: a full pass lists every current doc id, so diffing it
against a ledger finds new, changed *and deleted* documents. There is no
``since`` for this source: a collection is always read whole. ``updated_field``
(optional) fills ``Document.updated_at`` from the payload.

The collection must not change its shape while being scrolled; points written
during the pass may or may not be seen, which is why a build has a catch-up step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reindexer.sources.base import RecordSource

if TYPE_CHECKING:
    from reindexer.adapters.base import VectorStore


class PayloadSource(RecordSource):
    unit = "points"
    convert_payload = False

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        text_field: str = "text",
        batch_size: int = 256,
        *,
        updated_field: str | None = None,
    ) -> None:
        super().__init__(text_field=text_field, id_field=None, updated_field=updated_field)
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.store = store
        self.collection = collection
        self.batch_size = batch_size
        backend = getattr(store, "backend", "") or "store"
        self.description = f"payload:{backend}/{collection}"
        if text_field != "text":
            self.description += f" text={text_field}"

    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        n = 0
        for page in self.store.scroll(self.collection, batch_size=self.batch_size, with_vectors=False):
            for point in page:
                n += 1
                yield f"point #{n}", point.doc_id, point.payload or {}

    def close(self) -> None:
        """The store belongs to the caller, who closes it."""
