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
traceback (the bodies and error answers are in reindexer.serve_http). The OpenAPI
document says exactly what the service accepts (tests/test_serve_fuzz.py fuzzes the
app from it): a request it allows is answered (or names the collection it cannot
find), one it refuses gets a 4xx. Here: the app, its routes (small functions over
the Searchers, which they find on ``app.state.service``) and who may call them.
Running it as a process (socket, store, uvicorn): reindexer.serve_process.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time,
# and the search body's model is made per app (it carries the app's max_k; _reading_body_as).
import functools
import hmac
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from reindexer import __version__
from reindexer.errors import BackendUnavailableError, ReindexError
from reindexer.serve_http import (
    ERROR_RESPONSES,
    BodyLimit,
    CollectionInfo,
    Health,
    Hit,
    Readiness,
    SearchBody,
    SearchResponse,
    ServeError,
    error_response,
    search_request_model,
    status_of,
    validation_answer,
)
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)

TOKEN_ENV = "REINDEX_SERVE_TOKEN"  # or REINDEX_SERVE_TOKEN_FILE naming a file
READY_TIMEOUT = 5.0  # seconds /readyz waits for the store before saying it is not ready
WARM_RETRY = 5.0  # seconds between tries to load a preloaded collection that failed
# Metrics label for names that resolve to nothing: clients choose the path, and a
# label per unknown name would let any client grow the metrics without bound.
UNKNOWN = "(unknown)"


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


class _Service:
    """What one app's routes share: its workspace, Searchers, warmer, metrics, bound on k and token.

    Kept on ``app.state.service``: the routes and error handlers below are module-level
    functions that find it there, so several apps can live in one process.
    """

    def __init__(
        self,
        workspace_or_factory: Workspace | Callable[[], Workspace],
        *,
        token: str | None,
        max_k: int,
        shadow_sample: float,
        refresh: float,
        preload: Sequence[str],
        searcher_factory: Callable[[str], Any] | None,
        searcher_options: dict[str, Any],
    ):
        self.owns_workspace = not isinstance(workspace_or_factory, Workspace)
        self._workspace_or_factory = workspace_or_factory
        self.holder: dict[str, Workspace] = {} if self.owns_workspace else {"ws": workspace_or_factory}  # type: ignore[dict-item]
        self.max_k = max_k
        self.expected = token.encode() if token else None
        self._searcher_factory = searcher_factory
        self._searcher_settings = {"refresh": refresh, "shadow_sample": shadow_sample, **searcher_options}
        # Whether "rerank": true can be honoured: a cross-encoder for every Searcher (reindex serve --rerank),
        # or a factory of the caller's, whose Searchers may have one (a request then finds out).
        self.reranks = bool(searcher_options.get("rerank")) or searcher_factory is not None
        self.searchers = _Searchers(self._make_searcher)
        self.warmer = _Warmer(list(preload), self.searchers)
        self.metrics = Metrics()

    def workspace(self) -> Workspace:
        """The workspace, made now by the caller's factory if the app owns it and it is not open yet."""
        if "ws" not in self.holder:
            self.holder["ws"] = self._workspace_or_factory()  # type: ignore[operator]
        return self.holder["ws"]

    def _make_searcher(self, name: str) -> Any:
        if self._searcher_factory is not None:
            return self._searcher_factory(name)
        from reindexer.searcher import Searcher

        return Searcher(name, workspace=self.workspace(), **self._searcher_settings)

    def label(self, name: str) -> str:
        return name if self.searchers.known(name) else UNKNOWN

    def body_refused(self, name: str) -> None:
        self.metrics.failed(self.label(name), 413, "body_too_large")

    def tool_error(self, name: str, exc: ReindexError, *, count: bool) -> JSONResponse:
        status, code = status_of(exc)
        if status >= 500:
            log.warning("%s: %s", name, exc)
        if count:
            self.metrics.failed(self.label(name), status, code)
        return error_response(status, code, exc.message, hint=exc.hint)

    def close_workspace(self) -> None:
        if self.owns_workspace and "ws" in self.holder:
            self.holder.pop("ws").close()


def _service(request: Request) -> _Service:
    return request.app.state.service


@asynccontextmanager
async def _lifespan(app: FastAPI):
    service: _Service = app.state.service
    if service.owns_workspace:
        await anyio.to_thread.run_sync(service.workspace)  # open it now, so a locked store fails the start
    service.warmer.start()
    try:
        yield
    finally:
        # uvicorn runs this after the in-flight requests finished (graceful shutdown).
        await anyio.to_thread.run_sync(service.warmer.stop)
        service.searchers.close()
        service.close_workspace()


# -- who may ask -------------------------------------------------------------------
_BEARER = HTTPBearer(auto_error=False, description=f"The token in {TOKEN_ENV} (or the file {TOKEN_ENV}_FILE).")


def _no_token() -> None:
    """Without a token the schema declares no security: a client reading it sends none."""


def _bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER)) -> None:
    expected = _service(request).expected
    if expected is None:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ServeError(401, "unauthorized", "this server needs `Authorization: Bearer <token>`", headers=challenge)
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise ServeError(401, "unauthorized", "wrong bearer token", headers=challenge)


# -- error answers: JSON that names the problem, never a traceback ----------------
async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
    name = request.path_params.get("name")
    if name is not None and request.url.path.endswith("/search"):
        service = _service(request)
        service.metrics.failed(service.label(name), exc.status, exc.error)
    return error_response(exc.status, exc.error, exc.message, exc.field, headers=exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    service = _service(request)
    content_type = request.headers.get("content-type", "")
    status, code, message, field = validation_answer(exc, service.max_k, content_type, service.reranks)
    name = request.path_params.get("name")
    if name is not None:
        service.metrics.failed(service.label(name), status, code)
    return error_response(status, code, message, field)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = (
        f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    )
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return error_response(500, "internal", f"unexpected error ({type(exc).__name__}); see the server's log")


# -- the endpoints -----------------------------------------------------------------
# No docstrings on the endpoints: FastAPI would publish them as each operation's description.
CollectionName = Annotated[str, Path(description="The logical collection (an alias), e.g. docs.")]


def search(request: Request, name: CollectionName, body: SearchBody):
    started = time.perf_counter()
    service = _service(request)
    try:
        searcher = service.searchers.get(name)
        info, hits = searcher.search_with_version(
            body.query, k=body.k, filter=body.filter, mode=body.mode, rerank=body.rerank
        )
        version, model = info.physical, info.model  # named even when nothing matched
    except ReindexError as exc:
        return service.tool_error(name, exc, count=True)
    except Exception as exc:  # noqa: BLE001 - counted and logged here, answered without a traceback
        log.exception("unexpected error searching %s", name)
        service.metrics.failed(service.label(name), 500, "internal")
        return error_response(500, "internal", f"unexpected error ({type(exc).__name__}); see the server's log")
    service.metrics.answered(name, version, time.perf_counter() - started)
    return SearchResponse(
        version=version,
        model=model,
        hits=[Hit(id=h.doc_id, score=h.score, payload=h.payload) for h in hits],
    )


def _reading_body_as(endpoint: Callable, model: type[SearchBody]) -> Callable:
    """``endpoint`` with its ``body`` parameter declared as ``model``, the search body of one app.

    FastAPI validates a body, and documents it, by the annotation it reads from the
    signature; an app's own model carries its max_k and whether it reranks.
    """
    signature = inspect.signature(endpoint)
    parameters = [p.replace(annotation=model) if p.name == "body" else p for p in signature.parameters.values()]

    @functools.wraps(endpoint)
    def with_app_body(*args: Any, **kwargs: Any) -> Any:
        return endpoint(*args, **kwargs)

    with_app_body.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return with_app_body


def collection_info(request: Request, name: CollectionName):
    service = _service(request)
    try:
        info = service.searchers.get(name).current()
    except ReindexError as exc:
        return service.tool_error(name, exc, count=False)
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


async def healthz() -> Health:
    return Health(status="ok")


async def readyz(request: Request):
    service = _service(request)
    ws = service.holder.get("ws")
    if ws is None:
        return _not_ready(ws, "starting: the workspace is not open yet")
    try:
        with anyio.fail_after(READY_TIMEOUT):
            # Abandoned, not killed, on time-out: a store call cannot be interrupted.
            await anyio.to_thread.run_sync(lambda: ws.store.list_aliases(), abandon_on_cancel=True)
    except TimeoutError:
        return _not_ready(ws, f"the store did not answer within {READY_TIMEOUT:g} s")
    except ReindexError as exc:
        return _not_ready(ws, str(exc))
    warming = service.warmer.status()
    if warming is not None:
        return _not_ready(ws, warming)
    return Readiness(ready=True, store=ws.store_url)


def _not_ready(ws: Workspace | None, message: str) -> JSONResponse:
    body = Readiness(ready=False, store=ws.store_url if ws else "", message=message)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


def prometheus(request: Request) -> Response:
    return Response(generate_latest(_service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


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
    service = _Service(
        workspace_or_factory,
        token=token,
        max_k=max_k,
        shadow_sample=shadow_sample,
        refresh=refresh,
        preload=preload,
        searcher_factory=searcher_factory,
        searcher_options=searcher_options,
    )
    app = FastAPI(
        title="reindexer",
        version=__version__,
        summary="Search logical collections; each answer comes from one index version, encoded by its own model.",
        lifespan=_lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.service = service
    app.state.metrics = service.metrics
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, on_refused=service.body_refused)
    for exc_class, handler in (
        (ServeError, _serve_error),
        (RequestValidationError, _invalid),
        (StarletteHTTPException, _http),
        (Exception, _unexpected),
    ):
        app.add_exception_handler(exc_class, handler)  # type: ignore[arg-type]
    _add_routes(app, max_k, service.reranks, authorised=_no_token if service.expected is None else _bearer_token)
    return app


def _add_routes(app: FastAPI, max_k: int, reranks: bool, authorised: Callable[..., None]) -> None:
    auth = [Depends(authorised)]
    app.add_api_route(
        "/collections/{name}/search",
        _reading_body_as(search, search_request_model(max_k, reranks)),
        methods=["POST"],
        response_model=SearchResponse,
        summary="Top-k hits for one query from the collection's live version",
        name="search",
        tags=["search"],
        dependencies=auth,
    )
    app.add_api_route(
        "/collections/{name}",
        collection_info,
        methods=["GET"],
        response_model=CollectionInfo,
        tags=["search"],
        summary="The version the collection resolves to now, and its model",
        dependencies=auth,
    )
    app.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        response_model=Health,
        tags=["operations"],
        summary="Liveness: the process answers",
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Readiness,
        response_model_exclude_none=True,
        tags=["operations"],
        responses={503: {"model": Readiness}},
        summary="Readiness: the store answers",
    )
    app.add_api_route(
        "/metrics",
        prometheus,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        dependencies=auth,
    )


def token_from_env() -> str | None:
    """The bearer token from REINDEX_SERVE_TOKEN, or the file named by REINDEX_SERVE_TOKEN_FILE."""
    from reindexer.adapters.addressing import secret_from_env

    return secret_from_env(TOKEN_ENV)
