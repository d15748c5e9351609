"""`reindex serve`: the Searcher over HTTP, for applications that cannot embed Python.

    POST /collections/{name}/search   {"query": str, "k": int, "filter": {...}, "mode": str, "rerank": bool}
                                      -> {"version", "model", "hits": [{"id", "score", "payload"}]}
    GET  /collections/{name}          the live version and its model
    GET  /healthz                     the process answers (no token)
    GET  /readyz                      the store answers, preloaded models are loaded (no token)
    GET  /metrics                     Prometheus text format
    GET  /openapi.json                the schema of all of the above

One Searcher per collection, made on first use and shared by every request; all
of them share the process's one workspace, and so its one store: embedded
stores (Qdrant local, Milvus Lite) allow one process per data folder, so a
second client in this process would be refused. Each answer comes from one
index version, encoded by that version's own model (the Searcher's promise);
cut-overs and rollbacks are followed without a restart.

Every error is a JSON object ``{"error", "message", "field"?, "hint"?}``, never a
traceback: the tool's error tree maps onto statuses by exit code, request
validation onto 400 (malformed JSON), 415 (not sent as JSON) and 422 (a field),
auth onto 401, a body over the limit onto 413. The OpenAPI document says exactly
what the service accepts (tests/test_serve_fuzz.py fuzzes the app from it): a
request it allows is answered (or names the collection it cannot find), one it
refuses gets a 4xx.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time,
# and the search body's model is a local class (it carries this app's max_k).
import hmac
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reindexer import __version__
from reindexer.errors import (
    EXIT_BACKEND_UNAVAILABLE,
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    BackendUnavailableError,
    ReindexError,
)
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)

TOKEN_ENV = "REINDEX_SERVE_TOKEN"  # or REINDEX_SERVE_TOKEN_FILE naming a file
READY_TIMEOUT = 5.0  # seconds /readyz waits for the store before saying it is not ready
WARM_RETRY = 5.0  # seconds between tries to load a preloaded collection that failed
# Metrics label for names that resolve to nothing: clients choose the path, and a
# label per unknown name would let any client grow the metrics without bound.
UNKNOWN = "(unknown)"
_SEARCH_PATH = re.compile(r"^/collections/([^/]+)/search$")

# exit code -> (HTTP status, error code): one mapping for the whole error tree.
_STATUS_BY_EXIT = {
    EXIT_USAGE: (422, "invalid_request"),
    EXIT_NOT_FOUND: (404, "not_found"),
    EXIT_CONFLICT: (409, "conflict"),
    EXIT_BACKEND_UNAVAILABLE: (503, "backend_unavailable"),
}


# -- the schema ------------------------------------------------------------------
class Hit(BaseModel):
    id: str = Field(description="The document id (not the backend's point id).")
    score: float = Field(description="As the backend reports it: cosine and dot higher is better, euclid a distance.")
    payload: dict[str, Any] = Field(description="The point's payload as stored, model tag `reindex_model` included.")


class SearchResponse(BaseModel):
    version: str = Field(description="The physical collection (index version) that answered, e.g. docs__v2.")
    model: str = Field(description="That version's model, name@<12 hex of its fingerprint>.")
    hits: list[Hit]


class CollectionInfo(BaseModel):
    collection: str = Field(description="The logical name applications query.")
    version: str = Field(description="The physical collection the name resolves to now.")
    number: int | None = Field(default=None, description="Its version number (3 for docs__v3).")
    model: str
    fingerprint: str
    dim: int
    metric: str
    text_field: str


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code: invalid_json, invalid_request, unauthorized, not_found, ...")
    message: str = Field(description="What is wrong, for a person.")
    field: str | None = Field(default=None, description="The request field at fault, when there is one.")
    hint: str | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    store: str
    message: str | None = None


# What str.strip() takes for whitespace (str.isspace), spelt out: the Searcher refuses a query that is
# nothing else, and the \s of Python, of pydantic's regex engine and of a client's (ECMAScript) differ
# on U+001C-U+001F, U+0085 and U+FEFF. Written with \u escapes, which all three read alike.
_WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
QUERY_PATTERN = f"[^{_WHITESPACE}]"  # searched, not anchored (JSON Schema's and pydantic's reading alike)

# A filter: payload field (a dotted path) -> the value it must equal. A path's parts are what both
# backends read as plain names (Qdrant's JSON-path keys, Milvus's dynamic fields): ASCII letters,
# digits, _ and -; other keys are refused here rather than failing in the store's path parser.
FILTER_KEY_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
# A value as the adapters match it: a string, a number or a boolean, never null, a list or an object.
# Strict: "1" stays a string, true a boolean; an integer within int64 an exact match (payloads keep
# 64-bit integers), any other finite number a number (JSON's 1e400 is not one).
FilterValue = (
    StrictStr
    | Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[StrictFloat, Field(ge=-sys.float_info.max, le=sys.float_info.max, allow_inf_nan=False)]
    | StrictBool
)
FILTER_VALUE_KINDS = "a string, number or boolean"
# pydantic writes a key's pattern as patternProperties, which leaves other keys unchecked; the
# document says what the server checks: every key matches, every value is one of the above.
Filter = Annotated[
    dict[Annotated[str, Field(pattern=FILTER_KEY_PATTERN)], FilterValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": FILTER_KEY_PATTERN},
            "additionalProperties": TypeAdapter(FilterValue).json_schema(),
        }
    ),
]


class SearchBody(BaseModel):
    """The request body's fields; the app's own subclass adds its bound on k and whether it reranks
    (``_search_request_model``).

    Strict, as JSON Schema reads the document: "5" is not an integer nor "true" a boolean, and
    a misspelt field ("top_k") is an error that names it, not a silent default.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(
        min_length=1,
        pattern=QUERY_PATTERN,
        description="The query text, more than whitespace; encoded by the answering version's model.",
    )
    # JSON Schema's integer includes 5.0: k takes any number without a fraction, but no string or boolean.
    k: int = Field(default=10, ge=1, strict=False)
    filter: Filter | None = Field(
        default=None,
        description=f"Payload equality: field (dotted path) -> {FILTER_VALUE_KINDS}; all must match.",
    )
    rerank: bool | None = Field(
        default=None,
        description="Whether the service's cross-encoder (reindex serve --rerank) rescores the top hits; "
        "default: whenever the service has one.",
    )
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        default=None,
        description="dense (the version's model), lexical (its stored BM25 vectors) or hybrid (both, fused by "
        "RRF); default: hybrid where the answering version keeps a lexical index, else dense.",
    )

    @field_validator("k", mode="before")
    @classmethod
    def _k_is_a_json_number(cls, value: Any) -> Any:
        if isinstance(value, (bool, str)):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value


def _search_request_model(max_k: int, reranks: bool) -> type[SearchBody]:
    """The request body, with this server's bound on k and whether it has a cross-encoder in its schema."""
    fields: dict[str, Any] = {
        "k": (
            int,
            Field(default=min(10, max_k), ge=1, le=max_k, strict=False, description=f"Hits to return, 1 to {max_k}."),
        ),
    }
    if not reranks:
        fields["rerank"] = (
            Literal[False] | None,
            Field(
                default=None, description="This service has no cross-encoder (reindex serve --rerank): false or absent."
            ),
        )
    return create_model("SearchRequest", __base__=SearchBody, **fields)


_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (400, 401, 404, 409, 413, 415, 422, 503)}


# -- metrics -----------------------------------------------------------------------
class Metrics:
    """The service's metrics, in a registry of their own so that several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "reindex_search_requests",
            "Search requests answered, by collection, answering version and HTTP status.",
            ["collection", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "reindex_search_latency_seconds",
            "Time to answer a search (encode and search), by collection and version.",
            ["collection", "version"],
            registry=self.registry,
        )
        self.errors = Counter(
            "reindex_search_errors",
            "Search requests that failed, by collection and kind of error.",
            ["collection", "kind"],
            registry=self.registry,
        )

    def answered(self, collection: str, version: str, seconds: float) -> None:
        self.requests.labels(collection, version, "200").inc()
        self.latency.labels(collection, version).observe(seconds)

    def failed(self, collection: str, status: int, kind: str) -> None:
        self.requests.labels(collection, "", str(status)).inc()
        self.errors.labels(collection, kind).inc()


# -- errors ------------------------------------------------------------------------
class ServeError(Exception):
    """An error answer decided inside the service (auth, body size)."""

    def __init__(
        self, status: int, error: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.field, self.headers = status, error, message, field, headers


def _error_response(
    status: int,
    error: str,
    message: str,
    field: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, field=field, hint=hint)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _status_of(exc: ReindexError) -> tuple[int, str]:
    return _STATUS_BY_EXIT.get(exc.exit_code, (500, "internal"))


_JSON_KINDS = {list: "a list", dict: "an object", type(None): "null"}


def _validation_answer(
    exc: RequestValidationError, max_k: int, content_type: str, reranks: bool = True
) -> tuple[int, str, str, str | None]:
    """(status, code, message, field) for the first problem pydantic found in a request."""
    problem = exc.errors()[0]
    kind = problem.get("type")
    path = list(problem.get("loc", ()))
    if path and path[0] == "body":
        path = path[1:]
    loc = [str(p) for p in path]
    if kind == "json_invalid":
        reason = (problem.get("ctx") or {}).get("error") or problem.get("msg")
        where = f" at position {loc[0]}" if loc else ""
        return 400, "invalid_json", f"the body is not valid JSON{where}: {reason}", None
    if not loc and kind in ("model_type", "model_attributes_type", "dict_type") and "json" not in content_type:
        # FastAPI parses JSON only when the request says it is JSON (curl -d says it is a form).
        return (
            415,
            "unsupported_media_type",
            (f"send the body as JSON with Content-Type: application/json (got {content_type or 'none'})"),
            None,
        )
    if len(loc) >= 2 and loc[0] == "filter":
        if loc[2:] == ["[key]"]:
            message = f"filter: {loc[1]!r} is not a payload field (ASCII letters, digits, _ and -; dots between parts)"
            return 422, "invalid_request", message, "filter"
        # A value the schema's anyOf refuses: one problem per member; the key, not the member, is at fault.
        at = f"filter.{loc[1]}"
        value = problem.get("input")
        given = _JSON_KINDS.get(type(value)) or (repr(value) if isinstance(value, float) else type(value).__name__)
        return 422, "invalid_request", f"{at}: must equal {FILTER_VALUE_KINDS}, not {given}", at
    field = ".".join(loc) or None
    message = f"{field}: {problem.get('msg', 'invalid value')}" if field else problem.get("msg", "invalid body")
    if kind == "missing":
        message = f"{field}: a required field is missing" if field else 'no body: send {"query": ...} as JSON'
    elif kind == "extra_forbidden":
        message = f"{field}: not a field of this request (fields: {', '.join(SearchBody.model_fields)})"
    elif field == "k" and kind in ("less_than_equal", "greater_than_equal"):
        message = f"k must be between 1 and {max_k} (this server's max_k); got {problem.get('input')!r}"
    elif field == "query" and kind == "string_pattern_mismatch":
        message = "query: must hold more than whitespace"
    elif field == "rerank" and kind == "literal_error" and not reranks:
        message = "rerank: this service has no cross-encoder (reindex serve --rerank FOLDER), so only false"
    return 422, "invalid_request", message, field


# -- the body-size bound -----------------------------------------------------------
class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, declared or streamed, before any parsing."""

    def __init__(self, app: Any, max_bytes: int, on_refused: Callable[[str], None]):
        self.app, self.max_bytes, self.on_refused = app, max_bytes, on_refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Chunked or under-declared bodies: read them here (at most max_bytes + one chunk),
        # then hand the app a receive that replays what was read.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see that
                first = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        match = _SEARCH_PATH.match(scope.get("path", ""))
        if match:
            self.on_refused(match.group(1))
        response = _error_response(
            413,
            "body_too_large",
            f"the request body is over this server's limit of {self.max_bytes} bytes",
            # The unread rest of the body would be taken for the next request on this connection.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


# -- the app -----------------------------------------------------------------------
class _Searchers:
    """One Searcher per logical collection, made on first use, shared by every request."""

    def __init__(self, make: Callable[[str], Any]):
        self._make = make
        self._by_name: dict[str, Any] = {}
        self._making: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, name: str) -> Any:
        """The Searcher for ``name``; NotFoundError (and nothing kept) for a name that resolves to nothing."""
        with self._lock:
            searcher = self._by_name.get(name)
            if searcher is not None:
                return searcher
            # One maker per name: loading a model takes seconds, and other names must not wait for it.
            making = self._making.setdefault(name, threading.Lock())
        with making:
            with self._lock:
                searcher = self._by_name.get(name)
            if searcher is not None:
                return searcher
            searcher = self._make(name)
            try:
                searcher.current()  # resolves and loads the live model; an unknown name keeps nothing
            except BaseException:
                searcher.close()
                with self._lock:
                    self._making.pop(name, None)
                raise
            with self._lock:
                if self._closed:  # shutting down meanwhile: do not leak it
                    searcher.close()
                    raise BackendUnavailableError("the service is stopping", hint="retry on another replica")
                self._by_name[name] = searcher
                self._making.pop(name, None)
            return searcher

    def known(self, name: str) -> bool:
        return name in self._by_name

    def close(self) -> None:
        with self._lock:
            self._closed = True
            searchers, self._by_name = list(self._by_name.values()), {}
        for searcher in searchers:
            try:
                searcher.close()
            except Exception:  # noqa: BLE001 - shutting down: close the rest
                log.exception("closing a Searcher failed")


class _Warmer:
    """Loads the named collections' live models in the background, so first requests are not slow.

    /readyz says not ready until every one is loaded; a failure (the collection does not exist
    yet, the store is down) is retried every WARM_RETRY seconds and shown by /readyz meanwhile.
    """

    def __init__(self, names: list[str], searchers: _Searchers):
        self.pending = list(dict.fromkeys(names))
        self.problem: str | None = None
        self._searchers = searchers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reindex-serve-warm", daemon=True)

    def start(self) -> None:
        if self.pending:
            self._thread.start()

    def _run(self) -> None:
        while self.pending and not self._stop.is_set():
            name = self.pending[0]
            try:
                self._searchers.get(name)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, retried
                self.problem = f"cannot load {name!r} yet: {getattr(exc, 'message', exc)}"
                log.warning("%s; retrying in %g s", self.problem, WARM_RETRY)
                self._stop.wait(WARM_RETRY)
                continue
            self.pending.pop(0)
            self.problem = None

    def status(self) -> str | None:
        """None when warm; else what is still loading, or why it cannot."""
        if not self.pending:
            return None
        return self.problem or f"loading the model of {', '.join(map(repr, self.pending))}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)  # a model load in progress cannot be interrupted; it is a daemon thread


def create_app(
    workspace_or_factory: Workspace | Callable[[], Workspace],
    *,
    token: str | None = None,
    max_k: int = 100,
    max_body_bytes: int = 65536,
    shadow_sample: float = 0.0,
    refresh: float = 1.0,
    preload: Sequence[str] = (),
    searcher_factory: Callable[[str], Any] | None = None,
    **searcher_options: Any,
) -> FastAPI:
    """The HTTP service over the Searcher, as a FastAPI app.

    ``workspace_or_factory``: a Workspace (the caller keeps and closes it; admin
    commands in the same process may share it) or a callable that makes one when
    the app starts (the app then closes it when it stops). ``token``: when set,
    every request but /healthz, /readyz and /openapi.json needs
    ``Authorization: Bearer <token>`` (without one, the schema declares no security).
    ``preload``: collections whose live models are loaded at start (/readyz waits
    for them). ``searcher_options`` (``models_root``, ``device``, ``cache_size``,
    ``rerank``, ...) go to each Searcher; ``searcher_factory`` replaces how one is
    made (name -> Searcher). The schema says what this app accepts: k up to
    ``max_k``, and ``"rerank": true`` only where it has a cross-encoder.
    """
    if max_k < 1:
        raise ValueError("max_k must be at least 1")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be at least 1")
    owns_workspace = not isinstance(workspace_or_factory, Workspace)
    holder: dict[str, Workspace] = {"ws": workspace_or_factory} if isinstance(workspace_or_factory, Workspace) else {}

    def workspace() -> Workspace:
        if "ws" not in holder:
            holder["ws"] = workspace_or_factory()  # type: ignore[operator]
        return holder["ws"]

    def make_searcher(name: str) -> Any:
        if searcher_factory is not None:
            return searcher_factory(name)
        from reindexer.searcher import Searcher

        return Searcher(name, workspace=workspace(), refresh=refresh, shadow_sample=shadow_sample, **searcher_options)

    # Whether "rerank": true can be honoured: a cross-encoder for every Searcher (reindex serve --rerank),
    # or a factory of the caller's, whose Searchers may have one (a request then finds out).
    reranks = bool(searcher_options.get("rerank")) or searcher_factory is not None
    searchers = _Searchers(make_searcher)
    warmer = _Warmer(list(preload), searchers)
    metrics = Metrics()

    def label(name: str) -> str:
        return name if searchers.known(name) else UNKNOWN

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if owns_workspace:
            await anyio.to_thread.run_sync(workspace)  # open it now, so a locked store fails the start
        warmer.start()
        try:
            yield
        finally:
            # uvicorn runs this after the in-flight requests finished (graceful shutdown).
            await anyio.to_thread.run_sync(warmer.stop)
            searchers.close()
            if owns_workspace and "ws" in holder:
                holder.pop("ws").close()

    app = FastAPI(
        title="reindexer",
        version=__version__,
        summary="Search logical collections; each answer comes from one index version, encoded by its own model.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.metrics = metrics
    app.add_middleware(
        BodyLimit, max_bytes=max_body_bytes, on_refused=lambda name: metrics.failed(label(name), 413, "body_too_large")
    )

    bearer = HTTPBearer(auto_error=False, description=f"The token in {TOKEN_ENV} (or the file {TOKEN_ENV}_FILE).")
    expected = token.encode() if token else None

    def no_token() -> None:
        """Without a token the schema declares no security: a client reading it sends none."""

    def bearer_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if expected is None:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ServeError(
                401, "unauthorized", "this server needs `Authorization: Bearer <token>`", headers=challenge
            )
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise ServeError(401, "unauthorized", "wrong bearer token", headers=challenge)

    authorised = no_token if expected is None else bearer_token

    # -- error answers: JSON that names the problem, never a traceback ------------
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        name = request.path_params.get("name")
        if name is not None and request.url.path.endswith("/search"):
            metrics.failed(label(name), exc.status, exc.error)
        return _error_response(exc.status, exc.error, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        status, code, message, field = _validation_answer(exc, max_k, content_type, reranks)
        name = request.path_params.get("name")
        if name is not None:
            metrics.failed(label(name), status, code)
        return _error_response(status, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (
            f"no such endpoint: {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return _error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _error_response(500, "internal", f"unexpected error ({type(exc).__name__}); see the server's log")

    def _tool_error(name: str, exc: ReindexError, *, count: bool) -> JSONResponse:
        status, code = _status_of(exc)
        if status >= 500:
            log.warning("%s: %s", name, exc)
        if count:
            metrics.failed(label(name), status, code)
        return _error_response(status, code, exc.message, hint=exc.hint)

    # -- the endpoints ---------------------------------------------------------------
    SearchRequest = _search_request_model(max_k, reranks)
    collection_name = Path(description="The logical collection (an alias), e.g. docs.")

    def search(
        name: str = collection_name,
        body: SearchRequest = ...,  # type: ignore[valid-type]
        _: None = Depends(authorised),
    ):
        started = time.perf_counter()
        request: SearchBody = body
        try:
            searcher = searchers.get(name)
            info, hits = searcher.search_with_version(
                request.query, k=request.k, filter=request.filter, mode=request.mode, rerank=request.rerank
            )
            version, model = info.physical, info.model  # named even when nothing matched
        except ReindexError as exc:
            return _tool_error(name, exc, count=True)
        except Exception as exc:  # noqa: BLE001 - counted and logged here, answered without a traceback
            log.exception("unexpected error searching %s", name)
            metrics.failed(label(name), 500, "internal")
            return _error_response(500, "internal", f"unexpected error ({type(exc).__name__}); see the server's log")
        metrics.answered(name, version, time.perf_counter() - started)
        return SearchResponse(
            version=version,
            model=model,
            hits=[Hit(id=h.doc_id, score=h.score, payload=h.payload) for h in hits],
        )

    # Registered by hand: the body's model is made per app (it carries max_k).
    app.add_api_route(
        "/collections/{name}/search",
        search,
        methods=["POST"],
        response_model=SearchResponse,
        summary="Top-k hits for one query from the collection's live version",
        name="search",
        tags=["search"],
    )

    @app.get(
        "/collections/{name}",
        response_model=CollectionInfo,
        tags=["search"],
        summary="The version the collection resolves to now, and its model",
    )
    def collection_info(name: str = collection_name, _: None = Depends(authorised)):
        try:
            info = searchers.get(name).current()
        except ReindexError as exc:
            return _tool_error(name, exc, count=False)
        return CollectionInfo(
            collection=info.collection,
            version=info.physical,
            number=info.version,
            model=info.model,
            fingerprint=info.fingerprint,
            dim=info.dim,
            metric=info.metric,
            text_field=info.text_field,
        )

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        response_model_exclude_none=True,
        tags=["operations"],
        responses={503: {"model": Readiness}},
        summary="Readiness: the store answers",
    )
    async def readyz():
        ws = holder.get("ws")

        def not_ready(message: str) -> JSONResponse:
            body = Readiness(ready=False, store=ws.store_url if ws else "", message=message)
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503)

        if ws is None:
            return not_ready("starting: the workspace is not open yet")
        try:
            with anyio.fail_after(READY_TIMEOUT):
                # Abandoned, not killed, on time-out: a store call cannot be interrupted.
                await anyio.to_thread.run_sync(lambda: ws.store.list_aliases(), abandon_on_cancel=True)
        except TimeoutError:
            return not_ready(f"the store did not answer within {READY_TIMEOUT:g} s")
        except ReindexError as exc:
            return not_ready(str(exc))
        warming = warmer.status()
        if warming is not None:
            return not_ready(warming)
        return Readiness(ready=True, store=ws.store_url)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def prometheus(_: None = Depends(authorised)) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def token_from_env() -> str | None:
    """The bearer token from REINDEX_SERVE_TOKEN, or the file named by REINDEX_SERVE_TOKEN_FILE."""
    from reindexer.adapters.registry import secret_from_env

    return secret_from_env(TOKEN_ENV)


# -- running it --------------------------------------------------------------------
GRACE_SECONDS = 20  # in-flight requests get this long after SIGTERM (Kubernetes waits 30 s by default)


def hold_store(ws: Workspace) -> None:
    """Open the workspace's store now, saying plainly when an embedded one is held elsewhere."""
    from reindexer.errors import StoreLockedError

    try:
        ws.store  # noqa: B018 - the property opens the store
    except StoreLockedError:
        raise StoreLockedError(
            f"reindex serve needs the embedded store {ws.location.target} to itself, and another process holds it",
            hint="embedded stores (qdrant+local:, milvus+lite:) allow one process per data folder: stop the other "
            "process (another `reindex serve`, an application, a reindex command), or keep the collections on a "
            "server (qdrant://HOST:PORT or milvus://HOST:PORT), which serve and the admin commands can share",
        ) from None


def listen(host: str, port: int):
    """A socket bound to host:port (0: any free port), or ConflictError naming why not."""
    import socket

    from reindexer.errors import ConflictError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConflictError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or stop what holds this one",
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(app: FastAPI, sock, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT, then stop gracefully.

    uvicorn stops accepting, lets in-flight requests finish (up to GRACE_SECONDS),
    runs the app's shutdown (which closes the Searchers) and returns.
    """
    import signal

    import uvicorn

    logging_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        # stderr for everything: the tool keeps stdout for machine output.
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": log_level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": log_level.upper(), "propagate": False},
        },
    }
    config = uvicorn.Config(
        app,
        log_config=logging_config,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=GRACE_SECONDS,
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught, with the handler it found, once it has stopped.
    # Found handlers that do nothing make a graceful stop end the process with 0, not 143.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise ReindexError("reindex serve did not start; see the log above")
