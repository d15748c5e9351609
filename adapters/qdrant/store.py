"""``QdrantStore``: Qdrant (local mode and server) behind the ``VectorStore`` interface.

The store's operations on points (writes, reads, searches: dense, lexical, hybrid) and
aliases, over its layers: ``connection`` (client, errors) and ``structure``
(collections, their vectors and schema). The package's docstring
(``reindexer.adapters.qdrant``) says how the adapter keys points, keeps metadata and
reports scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from reindexer.adapters.base import DOC_ID_KEY, Hit, Point
from reindexer.adapters.qdrant.conversions import (
    client_vector,
    extract_vector,
    payload_filter,
    plain_vector,
    to_hits,
)
from reindexer.adapters.qdrant.point_ids import point_id_for
from reindexer.adapters.qdrant.structure import QdrantStructure
from reindexer.errors import UsageError


class QdrantStore(QdrantStructure):
    """An open Qdrant store, local or on a server; ``QdrantBackend`` opens it from a store URL."""

    def _to_point(self, record: Any, with_vectors: bool, vector_name: str | None) -> Point:
        payload = dict(record.payload or {})
        doc_id = payload.pop(DOC_ID_KEY, None)
        if not isinstance(doc_id, str):
            doc_id = str(record.id)
        vector = None
        others: dict[str, Any] = {}
        if with_vectors:
            vector = extract_vector(record.vector, vector_name)
            if isinstance(record.vector, dict):
                others = {k: plain_vector(v) for k, v in record.vector.items() if k != (vector_name or "")}
        return Point(doc_id=doc_id, vector=vector, payload=payload, other_vectors=others)

    # -- points --------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        from qdrant_client import models

        if not points:
            return
        vector_name = self._vector_name(name)
        kept = self._kept_other_vectors(name, points)
        structs = []
        for p in points:
            if p.vector is None:
                raise UsageError(f"point {p.doc_id!r} has no vector")
            vector: Any = [float(x) for x in p.vector]
            others = {**kept.get(p.doc_id, {}), **p.other_vectors}
            if vector_name or others:
                vector = {vector_name or "": vector, **{k: client_vector(v) for k, v in others.items()}}
            payload = dict(p.payload)
            payload[DOC_ID_KEY] = p.doc_id
            structs.append(models.PointStruct(id=point_id_for(p.doc_id), vector=vector, payload=payload))
        self._call(
            lambda: self._client.upsert(name, points=structs, wait=True),
            f"upsert {len(structs)} points into {name!r}",
        )

    def _kept_other_vectors(self, name: str, points: Sequence[Point]) -> dict[str, dict[str, Any]]:
        """The stored other vectors of points written without theirs (a re-embedded text keeps its sparse vector)."""
        if not self._has_other_vectors(name):
            return {}
        every = set(self._sparse_names.get(name, ())) | set(self._dense_names.get(name, ())) - {
            self._vector_name(name) or ""
        }
        bare = [p.doc_id for p in points if not every <= set(p.other_vectors)]
        if not bare:
            return {}
        return {p.doc_id: p.other_vectors for p in self.retrieve(name, bare, with_vectors=True) if p.other_vectors}

    def set_other_vectors(self, name: str, points: Sequence[Point]) -> None:
        from qdrant_client import models

        todo = [
            models.PointVectors(
                id=point_id_for(p.doc_id), vector={k: client_vector(v) for k, v in p.other_vectors.items()}
            )
            for p in points
            if p.other_vectors
        ]
        if todo:
            self._call(
                lambda: self._client.update_vectors(name, points=todo, wait=True),
                f"write other vectors of {len(todo)} points of {name!r}",
            )

    def set_payload_key(self, name: str, points: Sequence[Point], key: str, value: Any | None) -> None:
        # set_payload / delete_payload leave every vector of the point (sparse, other named ones) as it is.
        from qdrant_client import models

        if not points:
            return
        ids: list[Any] = [point_id_for(p.doc_id) for p in points]
        if value is None:
            self._call(
                lambda: self._client.delete_payload(name, keys=[key], points=ids, wait=True),
                f"remove {key!r} from {len(ids)} points of {name!r}",
            )
        else:
            self._call(
                lambda: self._client.set_payload(
                    name, payload={key: value}, points=models.PointIdsList(points=ids), wait=True
                ),
                f"set {key!r} on {len(ids)} points of {name!r}",
            )

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        from qdrant_client import models

        if not doc_ids:
            # Still say so when the collection is missing.
            self._vector_name(name)
            return
        ids: list[Any] = list(dict.fromkeys(point_id_for(d) for d in doc_ids))
        self._call(
            lambda: self._client.delete(name, points_selector=models.PointIdsList(points=ids), wait=True),
            f"delete {len(ids)} points from {name!r}",
        )

    def count(self, name: str) -> int:
        result = self._call(lambda: self._client.count(name, exact=True), f"count {name!r}")
        return int(result.count)

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        vector_name = self._vector_name(name) if with_vectors else None
        offset = None
        while True:
            records, offset = self._call(
                lambda o=offset: self._client.scroll(
                    name, limit=batch_size, offset=o, with_payload=True, with_vectors=with_vectors
                ),
                f"scroll {name!r}",
            )
            if records:
                yield [self._to_point(r, with_vectors, vector_name) for r in records]
            if offset is None:
                return

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """The store filters: ``must_not`` a match keeps the points that lack ``key`` as well as other values.

        A server evaluates it in its engine; local mode in its own loop, without building a
        Point, a document and a ledger lookup for each point as a full pass does.
        """
        from qdrant_client import models

        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        flt = models.Filter(must_not=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])
        offset = None
        while True:
            records, offset = self._call(
                lambda o=offset: self._client.scroll(
                    name, scroll_filter=flt, limit=batch_size, offset=o, with_payload=True, with_vectors=False
                ),
                f"scroll {name!r} for points without {key}={value}",
            )
            if records:
                yield [self._to_point(r, False, None) for r in records]
            if offset is None:
                return

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        vector_name = self._vector_name(name) if with_vectors else None
        unique = list(dict.fromkeys(doc_ids))
        out: list[Point] = []
        for start in range(0, len(unique), 1024):
            ids = [point_id_for(d) for d in unique[start : start + 1024]]
            records = self._call(
                lambda ids=ids: self._client.retrieve(name, ids=ids, with_payload=True, with_vectors=with_vectors),
                f"retrieve from {name!r}",
            )
            out.extend(self._to_point(r, with_vectors, vector_name) for r in records)
        if not unique:
            self._vector_name(name)  # a missing collection is still an error
        return out

    def search(
        self,
        name: str,
        vector: Sequence[float],
        k: int,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        vector_name = self._vector_name(name)
        query_filter = payload_filter(where)
        resp = self._call(
            lambda: self._client.query_points(
                name,
                query=[float(x) for x in vector],
                using=vector_name or None,
                limit=k,
                query_filter=query_filter,
                with_payload=True,
            ),
            f"search {name!r}",
        )
        return to_hits(resp.points)

    def search_lexical(
        self, name: str, vector_name: str, sparse: dict[str, list], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        from qdrant_client import models

        if k <= 0 or not sparse["indices"]:
            return []  # no query term: nothing matches (and Qdrant refuses an empty sparse query)
        resp = self._call(
            lambda: self._client.query_points(
                name,
                query=models.SparseVector(indices=sparse["indices"], values=sparse["values"]),
                using=vector_name,
                limit=k,
                query_filter=payload_filter(where),
                with_payload=True,
            ),
            f"lexical search {name!r}",
        )
        return to_hits(p for p in resp.points if p.score > 0)

    def search_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        vector_name: str,
        sparse: dict[str, list],
        k: int,
        where: dict[str, Any] | None = None,
        *,
        rrf_k: int = 60,
        prefetch: int = 100,
    ) -> list[Hit]:
        from qdrant_client import models

        if k <= 0:
            return []
        query_filter = payload_filter(where)
        dense = models.Prefetch(
            query=[float(x) for x in vector], using=self._vector_name(name) or None, limit=prefetch, filter=query_filter
        )
        prefetches = [dense]
        if sparse["indices"]:
            prefetches.append(
                models.Prefetch(
                    query=models.SparseVector(indices=sparse["indices"], values=sparse["values"]),
                    using=vector_name,
                    limit=prefetch,
                    filter=query_filter,
                )
            )
        resp = self._call(
            lambda: self._client.query_points(
                name,
                prefetch=prefetches,
                query=models.RrfQuery(rrf=models.Rrf(k=rrf_k)),
                limit=k,
                query_filter=query_filter,
                with_payload=True,
            ),
            f"hybrid search {name!r}",
        )
        return to_hits(resp.points)

    # -- aliases -------------------------------------------------------------
    def list_aliases(self) -> dict[str, str]:
        resp = self._call(lambda: self._client.get_aliases(), "list aliases")
        return {a.alias_name: a.collection_name for a in resp.aliases}

    def set_alias(self, alias: str, collection: str) -> None:
        from qdrant_client import models

        self._check_alias_target(alias, collection)
        current = self.list_aliases().get(alias)
        if current == collection:
            return
        ops: list[Any] = []
        if current is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self._forget(alias)
        # One request: Qdrant applies the delete and the create atomically.
        self._call(lambda: self._client.update_collection_aliases(ops), f"set alias {alias!r} -> {collection!r}")

    def drop_alias(self, alias: str) -> None:
        from qdrant_client import models

        if alias not in self.list_aliases():
            return
        self._forget(alias)
        self._call(
            lambda: self._client.update_collection_aliases(
                [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))]
            ),
            f"drop alias {alias!r}",
        )
