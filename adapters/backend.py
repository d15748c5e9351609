"""The ``Backend``: a kind of vector store, as the registry finds it through its entry point.

A backend knows its URL schemes, reads a location from a store URL and opens a
``VectorStore`` there (``reindexer.adapters.base``); it also holds the checks plan
runs before anything is written (names, document ids, metric, dimension).
``EmbeddedOrServerBackend`` does the usual shape, an embedded mode and a server
over HTTP(S). The registry (``reindexer.adapters.registry``) loads backends;
``reindexer.adapters.addressing`` and ``reindexer.adapters.names`` hold the URL and
name helpers they use.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from reindexer.adapters.addressing import (
    StoreLocation,
    parse_embedded_path,
    parse_server_address,
    secret_from_env,
)
from reindexer.adapters.base import METRICS, VectorStore
from reindexer.adapters.names import SAFE_NAME_RULE, safe_name_problem
from reindexer.errors import UsageError


class Backend(abc.ABC):
    """A kind of vector store: its URL schemes, how to read its location, how to open it.

    Registered as an entry point in the ``reindexer.backends`` group, named by
    ``name``, pointing at the class (``qdrant = "reindexer.adapters.qdrant:QdrantBackend"``).
    The registry instantiates it with no arguments. Keep the module it lives in
    cheap to import: every store URL is parsed through it.
    """

    #: The backend's name: the entry point's name, ``VectorStore.backend``, the state's record.
    name: ClassVar[str]
    #: Every URL scheme this backend answers for, lowercase ("qdrant", "qdrant+https", ...).
    schemes: ClassVar[tuple[str, ...]]
    #: URL forms shown when a URL cannot be read at all ("qdrant+local:PATH", "qdrant://HOST:PORT").
    examples: ClassVar[tuple[str, ...]] = ()
    #: The environment variable the credentials come from (``NAME_FILE`` reads a file), if any.
    secret_env: ClassVar[str | None] = None
    #: The distance metrics its collections can use.
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: The rule ``validate_collection_name`` holds names to, in words (messages and docs/adapters.md).
    name_rule: ClassVar[str] = SAFE_NAME_RULE
    #: The longest document id, in UTF-8 bytes, the collections the adapter creates can key on; None: no limit.
    max_doc_id_bytes: ClassVar[int | None] = None
    #: The ANN indexes its collections can have (``index_params["ann_index"]``, ``ANN_INDEX_KINDS``): plan
    #: refuses another before anything is written. HNSW everywhere; pgvector builds IVFFlat too.
    ann_indexes: ClassVar[tuple[str, ...]] = ("hnsw",)

    # -- what plan checks before anything is written ---------------------------------
    def validate_collection_name(self, name: str, what: str = "collection") -> None:
        """Raise ``UsageError`` for a collection or alias name this backend cannot hold.

        The default is ``SAFE_NAME_RULE``, safe on every store that keeps a folder per
        collection; a backend with stricter rules overrides it.
        """
        problem = safe_name_problem(name)
        if problem is not None:
            raise UsageError(
                f"{name!r} is not a valid {self.name} {what} name: {problem}",
                hint=f"{self.name} {what} names: {self.name_rule}",
            )

    def validate_doc_ids(self, doc_ids: Iterable[str]) -> None:
        """Raise ``UsageError`` naming the document ids the adapter could not key a point on."""
        empty, too_long = 0, 0
        examples: list[str] = []  # counts and the first few: no list as long as the source
        for doc_id in doc_ids:
            if not isinstance(doc_id, str) or not doc_id:
                empty += 1
            elif self.max_doc_id_bytes is not None and len(doc_id.encode("utf-8")) > self.max_doc_id_bytes:
                too_long += 1
                if len(examples) < 3:
                    examples.append(doc_id)
        problems = []
        if empty:
            problems.append(f"{empty} document id(s) are empty")
        if too_long:
            quoted = ", ".join(repr(d[:40] + "...") for d in examples)
            problems.append(
                f"{too_long} document id(s) are longer than {self.max_doc_id_bytes} bytes, "
                f"the {self.name} primary key limit (e.g. {quoted})"
            )
        if problems:
            raise UsageError(
                "; ".join(problems),
                hint="give every document a non-empty id within the limit (--id-field names the field)",
            )

    def validate_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise UsageError(f"unknown metric {metric!r} for {self.name}", hint=f"use one of {', '.join(self.metrics)}")

    def validate_dim(self, dim: int) -> None:  # noqa: B027 - optional hook: most backends have no limit
        """Raise ``UsageError`` for a vector dimension this backend's collections cannot hold or index.

        Plan checks it before anything is written (pgvector indexes at most 2,000 dimensions); the
        default accepts any.
        """

    def validate_index_params(self, index_params: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Raise ``UsageError`` for index settings beyond this backend's own limits (pgvector: its most IVFFlat
        lists); plan checks it after the shared checks (``validate_spec``), before anything is written."""

    @abc.abstractmethod
    def parse(self, scheme: str, rest: str, base_dir: Path | None) -> StoreLocation:
        """The location named by ``scheme:rest`` (``scheme`` is lowercase and one of ``schemes``).

        Raise ``UsageError`` for a malformed location. Credentials must not be
        accepted in the URL (``parse_server_address`` refuses them).
        """

    @abc.abstractmethod
    def open(self, location: StoreLocation) -> VectorStore:
        """An open store for a location this backend parsed; credentials from ``secret_env``."""

    def exists(self, location: StoreLocation) -> bool:
        """False when the location certainly holds no store yet (an embedded folder or file not made).

        Read-only commands ask before opening, because opening an embedded store creates it. The
        default, for a server, is True: whether it is there is learnt by connecting.
        """
        return True

    def wraps(self, client: Any) -> bool:
        """True when ``client`` is this backend's own client object (see ``wrap``)."""
        return False

    def wrap(self, client: Any) -> VectorStore:
        """A store over a client an application opened; the store never closes it."""
        raise UsageError(f"the {self.name} backend cannot wrap a {type(client).__name__}")


class EmbeddedOrServerBackend(Backend):
    """A backend with an embedded mode and a server reached over HTTP(S).

    Schemes: ``embedded_scheme:PATH`` (embedded), ``NAME://HOST[:PORT]`` and
    ``NAME+https://HOST[:PORT]`` (TLS). Subclasses set the class attributes and
    implement ``open_embedded`` and ``open_server``; ``check_embedded_path`` may
    refuse a path.
    """

    embedded_scheme: ClassVar[str]
    default_port: ClassVar[int]

    def parse(self, scheme: str, rest: str, base_dir: Path | None) -> StoreLocation:
        if scheme == self.embedded_scheme:
            p = parse_embedded_path(scheme, rest, base_dir)
            self.check_embedded_path(p)
            return StoreLocation(scheme, self.name, True, str(p), f"{scheme}:{p}")
        host_port = parse_server_address(f"{scheme}:{rest}", rest, self.default_port, self.secret_env)
        http = "https" if scheme.endswith("https") else "http"
        return StoreLocation(scheme, self.name, False, f"{http}://{host_port}", f"{scheme}://{host_port}")

    def check_embedded_path(self, path: Path) -> None:
        """Raise ``UsageError`` for a path the embedded mode cannot use."""

    def exists(self, location: StoreLocation) -> bool:
        return not location.embedded or Path(location.target).exists()

    def open(self, location: StoreLocation) -> VectorStore:
        if location.embedded:
            return self.open_embedded(location.target)
        return self.open_server(location.target, secret_from_env(self.secret_env) if self.secret_env else None)

    @abc.abstractmethod
    def open_embedded(self, path: str) -> VectorStore:
        """The embedded store at ``path`` (absolute)."""

    @abc.abstractmethod
    def open_server(self, url: str, secret: str | None) -> VectorStore:
        """The server at ``url`` (``http(s)://HOST:PORT``), with the credentials from ``secret_env``."""
