"""What `reindex serve` accepts and answers over HTTP: the bodies, the error answers, the body-size bound.

The request and response bodies as pydantic models (they are the OpenAPI document's
schemas), and how every refusal is answered: a JSON object ``{"error", "message",
"field"?, "hint"?}``, never a traceback. The tool's error tree maps onto statuses by
exit code, request validation onto 400 (malformed JSON), 415 (not sent as JSON) and
422 (a field), auth onto 401, a body over the limit onto 413. Not here: the app, its
routes and who may call them (reindexer.serve), running it (reindexer.serve_process).
"""

# No `from __future__ import annotations`: pydantic and FastAPI read these annotations at run time.
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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

from reindexer.errors import EXIT_BACKEND_UNAVAILABLE, EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_USAGE, ReindexError

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
    (``search_request_model``).

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


def search_request_model(max_k: int, reranks: bool) -> type[SearchBody]:
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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 404, 409, 413, 415, 422, 503)
}


# -- errors ------------------------------------------------------------------------
class ServeError(Exception):
    """An error answer decided inside the service (auth, body size)."""

    def __init__(
        self, status: int, error: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.field, self.headers = status, error, message, field, headers


def error_response(
    status: int,
    error: str,
    message: str,
    field: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, field=field, hint=hint)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def status_of(exc: ReindexError) -> tuple[int, str]:
    return _STATUS_BY_EXIT.get(exc.exit_code, (500, "internal"))


_JSON_KINDS = {list: "a list", dict: "an object", type(None): "null"}


def validation_answer(
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
        response = error_response(
            413,
            "body_too_large",
            f"the request body is over this server's limit of {self.max_bytes} bytes",
            # The unread rest of the body would be taken for the next request on this connection.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
