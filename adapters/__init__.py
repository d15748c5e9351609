"""Vector-store adapters, installed as ``reindexer.adapters``.

Read in this order:

- ``base``: the store interface every adapter implements (``VectorStore``, its
  ``Capabilities`` and the data that crosses it). docs/adapters.md is the guide.
- ``backend``: the ``Backend`` an entry point of the ``reindexer.backends`` group
  names: a kind of store, its URL schemes, how it opens a store.
- ``registry``: ``open_store(url)`` finds the backend for the URL's scheme among
  those registered; ``addressing`` (locations, URLs safe to log, secrets) and
  ``names`` (name rules) are its helpers and the backends'.
- helpers adapters share: ``metadata`` (spec checks, metadata encoding),
  ``error_mapping`` (client exceptions as reindexer's errors),
  ``collection_schema`` (a collection's schema, carried from version to version).
- the adapters: ``qdrant``, ``milvus`` (a package), ``pgvector``.
"""

from reindexer.adapters.addressing import StoreLocation  # noqa: F401
from reindexer.adapters.backend import Backend, EmbeddedOrServerBackend  # noqa: F401
from reindexer.adapters.base import (  # noqa: F401
    Capabilities,
    CollectionInfo,
    CollectionSpec,
    Hit,
    Point,
    VectorStore,
)
from reindexer.adapters.registry import open_store, parse_store_url, redact_url  # noqa: F401
