"""``MilvusStore``: Milvus (Lite and server) behind the ``VectorStore`` interface.

The store's operations on collections, points and aliases, over its layers:
``connection`` (client, errors, retries), ``structure`` (schemas and indexes),
``rows`` (points as rows, expressions) and ``auto_ids`` (auto-id collections).
The package's docstring (``reindexer.adapters.milvus``) says how the adapter
keeps schemas, metadata, index settings, consistency and scores.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from reindexer.adapters.base import (
    META_INDEX_PARAMS,
    META_PAYLOAD_INDEXES,
    META_VECTOR,
    CollectionSpec,
    Hit,
    Point,
)
from reindexer.adapters.metadata import check_metadata, validate_spec
from reindexer.adapters.milvus.auto_ids import MilvusAutoIds
from reindexer.adapters.milvus.layout import (
    PK_FIELD,
    PK_MAX_LENGTH,
    VECTOR_FIELD,
    check_name,
    pymilvus_schema,
    valid_name,
)
from reindexer.adapters.milvus.lexical import (
    add_lexical,
    query_text,
)
from reindexer.adapters.milvus.lite import clear_half_created_collection
from reindexer.adapters.milvus.rows import CHUNK, lit
from reindexer.errors import (
    BackendError,
    NotFoundError,
    UsageError,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class MilvusStore(MilvusAutoIds):
    """Milvus Lite (embedded) and Milvus servers, through pymilvus's ``MilvusClient``."""

    def list_collections(self) -> list[str]:
        names = self._call(lambda: self._client.list_collections(timeout=self._timeout), "list collections")
        return sorted(names)

    def create_collection(self, spec: CollectionSpec) -> None:
        from pymilvus import DataType, MilvusClient

        validate_spec(spec)
        lexical = spec.index_params.get("lexical")
        if lexical:
            refusal = self.lexical_refusal()
            if refusal is not None:
                raise UsageError(refusal, hint="plan without --lexical")
            if lexical.get("engine") != "store":
                raise UsageError(
                    f"{self.location}: Milvus computes BM25 itself; a lexical index of term weights made "
                    "elsewhere cannot be kept here",
                    hint="plan the version again (--lexical bm25) so it records Milvus's own BM25",
                )
        check_name(spec.name, "collection")
        self._check_new_collection(spec.name, self._alias_target(spec.name) is not None)
        like = spec.schema if spec.schema is not None and spec.schema.backend == self.backend else None
        if like is not None:
            self._check_vector_fields(spec.name, like)
        extra: dict[str, Any] = {}
        properties: dict[str, str] = {}
        if like is None:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
            schema.add_field(PK_FIELD, DataType.VARCHAR, is_primary=True, max_length=PK_MAX_LENGTH)
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=spec.dim)
        else:
            schema = pymilvus_schema(like, spec.dim)
            properties.update(like.options.get("properties") or {})
            if like.primary is not None and like.primary.auto_id and not self._lite:
                properties["allow_insert_auto_id"] = "true"  # the copies keep their keys (servers from 2.6)
            if like.shards:
                extra["num_shards"] = like.shards
            if like.partition_key and like.options.get("num_partitions"):
                extra["num_partitions"] = like.options["num_partitions"]
            properties[META_VECTOR] = like.vector
        if lexical:
            add_lexical(schema, lexical)
        properties.update(spec.metadata)
        properties[META_PAYLOAD_INDEXES] = json.dumps(spec.payload_indexes, sort_keys=True)
        properties[META_INDEX_PARAMS] = json.dumps(spec.index_params, sort_keys=True)
        if "shards" in spec.index_params:
            extra["num_shards"] = spec.index_params["shards"]
        self._forget()
        if self._lite:
            clear_half_created_collection(self._uri, spec.name)
        self._call(
            lambda: self._client.create_collection(
                spec.name,
                schema=schema,
                consistency_level="Strong",
                properties=properties,
                timeout=self._timeout,
                **extra,
            ),
            f"create collection {spec.name!r}",
        )
        try:
            self._create_vector_index(spec, like)
            if like is not None:
                self._create_scalar_indexes(spec.name, like)
            if lexical:
                self._create_lexical_index(spec.name, lexical)
            self._call(
                lambda: self._client.load_collection(spec.name, timeout=self._timeout),
                f"load {spec.name!r}",
                missing_is_transient=True,
                unexpected_is_transient=True,
            )
        except BaseException:
            try:
                self._client.drop_collection(spec.name, timeout=self._timeout)
            except Exception:  # noqa: BLE001 - best effort; the first error matters
                log.warning("could not drop half-created collection %r", spec.name)
            raise

    def lexical_refusal(self) -> str | None:
        if self._lite:
            return None
        version = self._server_version()
        if version == (0, 0) or version >= (2, 5):  # a server that does not say decides for itself
            return None
        return (
            f"{self.location} runs Milvus {'.'.join(map(str, version))}, which has no BM25 function "
            "(Milvus 2.5 added it)"
        )

    def search_lexical(
        self, name: str, vector_name: str, sparse: dict[str, Any], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        if k <= 0:
            return []
        s = self._schema(name)
        text = query_text(sparse, name)
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.search(
                name,
                data=[text],
                filter=self._where_expr(s, where),
                limit=k,
                output_fields=fields,
                search_params={"metric_type": "BM25"},
                anns_field=vector_name,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"search {name!r} by BM25",
            load=s.collection,
        )
        # BM25 scores are positive; Milvus Lite (3.2) returns them negated, servers as they are.
        return self._hits(s, res, lambda distance: abs(distance))

    def search_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        vector_name: str,
        sparse: dict[str, Any],
        k: int,
        where: dict[str, Any] | None = None,
        *,
        rrf_k: int = 60,
        prefetch: int = 100,
    ) -> list[Hit]:
        from pymilvus import AnnSearchRequest, RRFRanker

        if k <= 0:
            return []
        s = self._schema(name)
        expr = self._where_expr(s, where)
        dense: dict[str, Any] = {"metric_type": s.metric}
        if s.index_type.startswith("HNSW"):
            dense["params"] = {"ef": max(prefetch, 64)}
        requests = [
            AnnSearchRequest([[float(x) for x in vector]], s.vector, dense, prefetch, expr=expr or None),
            AnnSearchRequest(
                [query_text(sparse, name)], vector_name, {"metric_type": "BM25"}, prefetch, expr=expr or None
            ),
        ]
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.hybrid_search(
                name, requests, RRFRanker(rrf_k), limit=k, output_fields=fields, timeout=self._timeout
            ),
            f"hybrid search {name!r}",
            load=s.collection,
        )
        return self._hits(s, res, float)

    def set_other_vectors(self, name: str, points: Sequence[Point]) -> None:
        """Rows are written whole: the points are read again with their vectors and written with the
        new BM25 text (the only other vector the tool writes; an application's travel in the payload)."""
        s = self._schema(name)
        wanted = {p.doc_id: p.other_vectors for p in points if p.other_vectors}
        if not wanted:
            return
        if s.lexical is None or any(set(v) - {s.lexical} for v in wanted.values()):
            raise BackendError(f"{s.collection!r} keeps no vectors besides its own but the tool's BM25 text")
        stored = self.retrieve(name, list(wanted), with_vectors=True)
        for p in stored:
            p.other_vectors = {**p.other_vectors, **wanted[p.doc_id]}
        self.upsert(name, stored)

    def drop_collection(self, name: str) -> None:
        # Milvus 2.3 and Lite would drop the aliases with the collection: refused first.
        self._check_droppable(name, lambda: self._alias_target(name) is not None)
        self._forget()
        self._call(lambda: self._client.drop_collection(name, timeout=self._timeout), f"drop collection {name!r}")

    def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        check_metadata(metadata)
        if not metadata:
            self._schema(name, refresh=True)
            return
        physical = self._schema(name, refresh=True).collection
        self._call(
            lambda: self._client.alter_collection_properties(physical, metadata, timeout=self._timeout),
            f"set metadata of {physical!r}",
        )
        self._forget()  # a recorded META_VECTOR changes which field every name means

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        s = self._schema(name)
        # One row per document id, the last one winning, as in Qdrant: a
        # server upsert with a repeated key in one request would keep both.
        rows = list({p.doc_id: self._to_row(s, p) for p in points}.values())
        # Milvus Lite's upsert is a partial update: it merges the new row onto the
        # old one, so payload keys dropped by the caller would survive. Its insert
        # replaces a row with the same key whole, which is what upsert means here.
        write = self._client.insert if self._lite else self._client.upsert
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            self._call(
                lambda c=chunk: write(name, c, timeout=self._timeout),
                f"upsert {len(chunk)} points into {name!r}",
            )

    def finish_writes(self, name: str) -> None:
        # Milvus Lite keeps rows in an in-memory table (up to 128 MB) until a flush, and every
        # query, count or index description copies that whole table out row by row: a build's
        # verification scroll then costs the square of its size (16,000 rows: 9.6 s unflushed,
        # 1.2 s flushed, with the flush 0.9 s; docs/benchmarks.md). A server seals segments
        # on its own, and rate-limits flushes, so it is left to do that.
        if self._lite:
            self._call(lambda: self._client.flush(name, timeout=self._timeout), f"flush {name!r}")

    def delete(self, name: str, doc_ids: Sequence[str]) -> None:
        s = self._schema(name)
        unique = list(dict.fromkeys(doc_ids))
        for start in range(0, len(unique), CHUNK):
            expr = self._pk_expr(s, unique[start : start + CHUNK])
            if expr is None:
                continue
            # The result is not used: Milvus Lite echoes the requested ids,
            # the server counts rows; neither says which ids existed.
            self._call(
                lambda e=expr: self._client.delete(name, filter=e, timeout=self._timeout),
                f"delete from {name!r}",
                load=s.collection,
            )

    def count(self, name: str) -> int:
        s = self._schema(name)
        res = self._call(
            lambda: self._client.query(
                name,
                filter="",
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"count {name!r}",
            load=s.collection,
        )
        return int(res[0]["count(*)"]) if res else 0

    def scroll(self, name: str, batch_size: int = 256, with_vectors: bool = False) -> Iterator[list[Point]]:
        """Pages in primary-key order: each request asks for keys above the last one.

        Requests carry Milvus' ``iterator`` flag, which makes the server (and
        Milvus Lite) return the smallest keys first; they are read at the
        collection's default consistency level (Strong for collections the tool
        made). Requests fetch at least 1,024 rows, so a small ``batch_size``
        does not multiply the round trips. pymilvus' query_iterator is not used:
        it pastes string keys into its expression unescaped, so a document id
        with a quote or a newline breaks it.
        """
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        s = self._schema(name)
        fields = self._output_fields(s, with_vectors)
        fetch = min(max(batch_size, 1024), 16384)
        last: str | int | None = None
        buffer: list[Point] = []
        while True:
            if last is None:
                # Every key; -2**63 itself does not parse as a literal.
                expr = f'{s.pk} != ""' if s.pk_is_str else f"({s.pk} >= {1 - 2**63} or {s.pk} < {1 - 2**63})"
            else:
                expr = f"{s.pk} > {lit(last)}"
            rows = self._call(
                lambda e=expr: self._client.query(
                    name,
                    filter=e,
                    output_fields=fields,
                    limit=fetch,
                    iterator="True",
                    timeout=self._timeout,
                ),
                f"scroll {name!r}",
                load=s.collection,
            )
            if not rows:
                break
            last = max(r[s.pk] for r in rows)
            for row in rows:
                buffer.append(self._point(s, row, with_vectors))
            while len(buffer) >= batch_size:
                yield buffer[:batch_size]
                buffer = buffer[batch_size:]
            if len(rows) < fetch:
                break
        if buffer:
            yield buffer

    def scroll_untagged(self, name: str, key: str, value: str, batch_size: int = 256) -> Iterator[list[Point]]:
        """The store filters the dynamic field, paged by primary key as ``scroll`` is.

        A collection that declares ``key`` as a field of its own, or has no dynamic field,
        takes the default (a full scroll filtered here).
        """
        if batch_size <= 0:
            raise UsageError("batch_size must be positive")
        s = self._schema(name)
        if not s.dynamic or key in s.fields:
            yield from super().scroll_untagged(name, key, value, batch_size)
            return
        untagged = self._untagged_expr(key, value)
        fields = self._output_fields(s, False)
        fetch = min(max(batch_size, 1024), 16384)
        last: str | int | None = None
        while True:
            if last is None:
                keys = f'{s.pk} != ""' if s.pk_is_str else f"({s.pk} >= {1 - 2**63} or {s.pk} < {1 - 2**63})"
            else:
                keys = f"{s.pk} > {lit(last)}"
            rows = self._call(
                lambda e=f"({keys}) and ({untagged})": self._client.query(
                    name, filter=e, output_fields=fields, limit=fetch, iterator="True", timeout=self._timeout
                ),
                f"scroll {name!r} for points without {key}={value}",
                load=s.collection,
            )
            if rows:
                last = max(r[s.pk] for r in rows)
                points = [self._point(s, row, False) for row in rows]
                for start in range(0, len(points), batch_size):
                    yield points[start : start + batch_size]
            if len(rows) < fetch:
                return

    def retrieve(self, name: str, doc_ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        s = self._schema(name)
        fields = self._output_fields(s, with_vectors)
        unique = list(dict.fromkeys(doc_ids))
        out: list[Point] = []
        for start in range(0, len(unique), CHUNK):
            expr = self._pk_expr(s, unique[start : start + CHUNK])
            if expr is None:
                continue
            rows = self._call(
                lambda e=expr: self._client.query(
                    name,
                    filter=e,
                    output_fields=fields,
                    consistency_level="Strong",
                    timeout=self._timeout,
                ),
                f"retrieve from {name!r}",
                load=s.collection,
            )
            for row in rows:
                out.append(self._point(s, row, with_vectors))
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
        s = self._schema(name)
        expr = self._where_expr(s, where)
        params: dict[str, Any] = {"metric_type": s.metric}
        if s.index_type.startswith("HNSW"):
            params["params"] = {"ef": max(k, 64)}
        elif s.index_type.startswith("IVF"):
            params["params"] = {"nprobe": 32}
        fields = self._output_fields(s, with_vectors=False, searching=True)
        res = self._call(
            lambda: self._client.search(
                name,
                data=[[float(x) for x in vector]],
                filter=expr,
                limit=k,
                output_fields=fields,
                search_params=params,
                anns_field=s.vector,
                consistency_level="Strong",
                timeout=self._timeout,
            ),
            f"search {name!r}",
            load=s.collection,
        )
        return self._hits(s, res, (lambda d: math.sqrt(max(d, 0.0))) if s.metric == "L2" else float)

    def _alias_target(self, alias: str) -> str | None:
        if not valid_name(alias):
            return None
        try:
            info = self._call(
                lambda: self._client.describe_alias(alias, timeout=self._timeout), f"describe alias {alias!r}"
            )
        except NotFoundError:
            return None
        return (info or {}).get("collection_name")

    def get_alias(self, alias: str) -> str | None:
        # One describe instead of list_aliases' describe per alias: the query side asks this often.
        return self._alias_target(alias)

    def list_aliases(self) -> dict[str, str]:
        res = self._call(lambda: self._client.list_aliases(timeout=self._timeout), "list aliases")
        out = {}
        for alias in res.get("aliases", []) if isinstance(res, dict) else res:
            target = self._alias_target(alias)
            if target is not None:
                out[alias] = target
        return out

    def set_alias(self, alias: str, collection: str) -> None:
        check_name(alias, "alias")
        self._check_alias_target(alias, collection)
        current = self._alias_target(alias)
        if current == collection:
            return
        self._forget()
        if current is None:
            self._call(
                lambda: self._client.create_alias(collection, alias, timeout=self._timeout),
                f"create alias {alias!r} -> {collection!r}",
            )
        else:
            # alter_alias repoints in one step: readers see the old or the new target.
            self._call(
                lambda: self._client.alter_alias(collection, alias, timeout=self._timeout),
                f"repoint alias {alias!r} -> {collection!r}",
            )

    def drop_alias(self, alias: str) -> None:
        if self._alias_target(alias) is None:
            return
        self._forget()
        self._call(lambda: self._client.drop_alias(alias, timeout=self._timeout), f"drop alias {alias!r}")
