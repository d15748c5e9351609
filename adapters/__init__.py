"""Vector-store adapters, installed as ``reindexer.adapters``.

``open_store(url)`` picks the implementation from the URL scheme; see
``reindexer.adapters.base`` for the interface every backend implements.
"""

from reindexer.adapters.base import (  # noqa: F401
    Capabilities,
    CollectionInfo,
    CollectionSpec,
    Hit,
    Point,
    VectorStore,
)
from reindexer.adapters.registry import open_store, parse_store_url, redact_url  # noqa: F401
