"""What of an application's collection the tool carries from one version to the next, besides text and payload.

The schema itself (fields, keys, indexes, other vectors' settings) is read by the
adapter (``VectorStore.read_schema``, ``reindexer.adapters.collection_schema``) and given to
every new version's ``create_collection``. What remains are the values the tool
does not make: a point's other vectors (a sparse vector for hybrid search, a
second named dense vector). Copies (migrate, copy-mode plans) take them with
each point; a re-embedding writes only the vector it embeds, so after a build
or a catch-up pass ``carry_other_vectors`` writes the source version's other
vectors onto the new one, point by point, unchanged.
"""

from __future__ import annotations

from reindexer.adapters.base import VectorStore
from reindexer.adapters.collection_schema import CollectionSchema
from reindexer.errors import UsageError
from reindexer.sources.spec import SourceSpec


def tool_vectors(store: VectorStore, physical: str) -> set[str]:
    """The vectors of ``physical`` besides the embedded one that the tool makes itself (its BM25 vector):
    every build computes them again from the text, so they are never carried from one version to another."""
    lexical = store.describe(physical).index_params.get("lexical")
    return {lexical["vector"]} if isinstance(lexical, dict) and lexical.get("vector") else set()


def application_schema(store: VectorStore, physical: str) -> CollectionSchema | None:
    """``physical``'s schema as the application made it: without the vectors the tool makes itself."""
    schema = store.read_schema(physical)
    return schema.without(tool_vectors(store, physical)) if schema is not None else None


def has_other_vectors(store: VectorStore, physical: str) -> bool:
    """True where ``physical``'s points hold application vectors besides the embedded one that a
    re-embedding leaves out."""
    if store.other_vectors_in_payload:
        return False  # they travel in each point's payload, written with it
    schema = application_schema(store, physical)
    return schema is not None and any(f.kind.endswith("vector") and f.name != schema.vector for f in schema.fields)


def carry_other_vectors(store: VectorStore, src: str, dst: str, batch_size: int) -> int:
    """Write each point's other vectors from ``src`` onto the same point of ``dst``; the number written."""
    if not has_other_vectors(store, src):
        return 0
    written, ours = 0, tool_vectors(store, src)
    for page in store.scroll(src, batch_size=batch_size, with_vectors=True):
        for p in page:
            p.other_vectors = {k: v for k, v in p.other_vectors.items() if k not in ours}
        todo = [p for p in page if p.other_vectors]
        present = {p.doc_id for p in store.retrieve(dst, [p.doc_id for p in todo])}
        todo = [p for p in todo if p.doc_id in present]
        if todo:
            store.set_other_vectors(dst, todo)
            written += len(todo)
    return written


def refuse_stale_sparse(store: VectorStore, name: str, source: SourceSpec | None) -> None:
    """Exit 2 where a pass from ``source`` would leave an application's sparse vectors stale.

    The tool cannot make an application's sparse vectors (their encoder is the application's), so it
    keeps them as they are; that stays true only while the texts come from the collection's own
    payload, which the application writes together with its vectors. From a file or a query, a
    changed text would keep its old sparse vector, and a new document would get none.
    """
    if source is None or source.kind == "payload":
        return
    physical = store.resolve(name)
    schema = application_schema(store, physical) if physical else None
    sparse = [f.name for f in (schema.fields if schema else ()) if "sparse" in f.kind]
    if sparse:
        raise UsageError(
            f"{name} holds the application's sparse vectors ({', '.join(sparse)}), which reindexer cannot make; "
            f"texts read from {source.describe()} would leave a changed document's sparse vector stale and give a "
            "new one none",
            hint="sync and plan from the collection's own payload (the default), where the application writes each "
            "text with its sparse vector; or let the tool keep the lexical index itself (plan --lexical bm25)",
        )
