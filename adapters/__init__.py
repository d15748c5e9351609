"""Vector-store adapters, installed as ``reindexer.adapters``.

``open_store(url)`` finds the backend for the URL's scheme among those
registered in the ``reindexer.backends`` entry-point group (see
``reindexer.adapters.registry``); ``reindexer.adapters.base`` holds the
interface every store implements (``VectorStore``) and the ``Backend`` an
entry point names. docs/adapters.md is the guide for adapter authors.
"""

from reindexer.adapters.base import (  # noqa: F401
    Backend,
    Capabilities,
    CollectionInfo,
    CollectionSpec,
    EmbeddedOrServerBackend,
    Hit,
    Point,
    StoreLocation,
    VectorStore,
)
from reindexer.adapters.registry import open_store, parse_store_url, redact_url  # noqa: F401
