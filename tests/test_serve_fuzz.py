"""`reindex serve` fuzzed from its own OpenAPI document with Schemathesis.

The app runs in uvicorn on 127.0.0.1 (tests/test_serve.py's ``live_server``) over a real Qdrant
local collection of 40 documents that keeps a lexical index, so every search mode is answerable.
Schemathesis reads the OpenAPI document and sends what it describes (the coverage phase's boundary
and invalid values, undocumented methods, then Hypothesis's fuzzing, valid and invalid), without a
token and with one (REINDEX_SERVE_TOKEN, read as `reindex serve` reads it). Every answer must be:
no 5xx; a status the document lists, with a body its schema allows; a request the document allows
answered (2xx, or 404 for a collection that does not exist), one it refuses answered with a 4xx;
a request without the token or with a wrong one refused; and every 4xx the service's JSON error
body ``{"error", "message", "field"?, "hint"?}``.

Bounded and deterministic: derandomized Hypothesis, a fixed Schemathesis seed, no example
database, at most MAX_EXAMPLES fuzzed cases per operation: the module takes 20 to 40 s on two shared
cores, half of it building the collection.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='pip install "reindexer[serve]" (in the test extra)')
schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (in the test extra)")
httpx = pytest.importorskip("httpx")

from reindexer import commands  # noqa: E402
from reindexer.serve import TOKEN_ENV, create_app, token_from_env  # noqa: E402
from reindexer.serve_http import QUERY_PATTERN, ErrorBody  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.plugins.corpus import write_jsonl  # noqa: E402
from tests.test_serve import TOKEN, live_server, workspace  # noqa: E402

MAX_EXAMPLES = 50
SEED = 22
MAX_K = 20
SEARCH = "/collections/{name}/search"


def config(*, token: str | None) -> Any:
    """Schemathesis's settings, as a schemathesis.toml would give them (none is read from disk)."""
    settings: dict[str, Any] = {
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        # The served collection most of the time, so that bodies reach the Searcher; else a drawn name.
        "dictionaries": {"collections": {"values": ["docs"]}},
        "parameters": {"name": {"dictionary": "collections", "probability": 0.8}},
        "checks": {
            "not_a_server_error": {"expected-statuses": ["2xx", "4xx"]},
            # What the document allows is answered, or names the collection it cannot find: no 422.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "404"]},
            "max_response_time": 30,
        },
        "request-timeout": 60,
    }
    if token is not None:
        settings["auth"] = {"openapi": {"HTTPBearer": {"bearer": token}}}
    return schemathesis.Config.from_dict(settings)


def document(*, token: str | None) -> dict:
    """The OpenAPI document of an app made as the served one is (reading it needs no workspace)."""

    def no_workspace() -> Workspace:
        raise AssertionError("the document is read without a workspace")

    return create_app(no_workspace, token=token, max_k=MAX_K).openapi()


# Loaded at import: Schemathesis makes one test per operation when the module is collected.
open_api = schemathesis.openapi.from_dict(document(token=None), config=config(token=None))
guarded_api = schemathesis.openapi.from_dict(document(token=TOKEN), config=config(token=TOKEN))


# -- the served collection, and the service without and with a token ------------------
@pytest.fixture(scope="module")
def fuzz_ws(tmp_path_factory, minilm_path, demo_corpus) -> Iterator[Workspace]:
    tmp = tmp_path_factory.mktemp("serve-fuzz")
    corpus = write_jsonl(tmp / "corpus.jsonl", demo_corpus.documents[:40])
    with workspace(tmp) as ws:
        source = SourceSpec(kind="jsonl", location=str(corpus))
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, lexical="bm25", source=source)
        commands.apply(ws, plan)
        yield ws


@pytest.fixture(scope="module")
def open_url(fuzz_ws) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv(TOKEN_ENV, raising=False)
        env.delenv(f"{TOKEN_ENV}_FILE", raising=False)
        with live_server(create_app(fuzz_ws, token=token_from_env(), max_k=MAX_K)) as url:
            yield url


@pytest.fixture(scope="module")
def guarded_url(fuzz_ws) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(TOKEN_ENV, TOKEN)
        with live_server(create_app(fuzz_ws, token=token_from_env(), max_k=MAX_K)) as url:
            yield url


def assert_error_body(response) -> None:
    """A 4xx is the service's JSON error body, and nothing else."""
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type") or [""]
    assert content_type[0].startswith("application/json"), (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict) and set(body) <= {"error", "message", "field", "hint"}, body
    parsed = ErrorBody.model_validate(body)
    assert parsed.error and parsed.message, body
    assert "Traceback" not in response.text and 'File "' not in response.text


# -- the fuzzing ------------------------------------------------------------------------
@open_api.parametrize()
def test_the_api_without_a_token_answers_as_its_document_says(case, open_url) -> None:
    assert_error_body(case.call_and_validate(base_url=open_url))


@guarded_api.parametrize()
def test_the_api_with_a_token_answers_as_its_document_says(case, guarded_url) -> None:
    assert_error_body(case.call_and_validate(base_url=guarded_url))


# -- what the fuzzing does not reach by itself ------------------------------------------
def test_the_fuzzed_documents_are_the_served_ones(open_url, guarded_url) -> None:
    for url, token in ((open_url, None), (guarded_url, TOKEN)):
        assert httpx.get(f"{url}/openapi.json", timeout=60).json() == document(token=token)
    # Security is declared only where it is enforced.
    assert "securitySchemes" not in document(token=None).get("components", {})
    assert document(token=TOKEN)["paths"][SEARCH]["post"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param({"query": "x" * 70_000}, None, 413, id="a-body-over-the-limit"),
        pytest.param({"query": "x"}, {"Content-Type": "text/plain"}, 415, id="not-sent-as-json"),
        pytest.param({"query": "x", "filter": {"lang": ["en"]}}, None, 422, id="a-list-filter-value"),
        pytest.param({"query": " \t\u3000"}, None, 422, id="a-whitespace-query"),
        pytest.param({"query": "x", "rerank": True}, None, 422, id="rerank-without-a-cross-encoder"),
    ],
)
def test_refusals_are_documented_error_bodies(open_url, body, headers, status) -> None:
    case = open_api[SEARCH]["POST"].Case(path_parameters={"name": "docs"}, body=body, headers=headers or {})
    response = case.call(base_url=open_url)
    assert response.status_code == status, response.text
    case.validate_response(response)  # a status the document lists, a body its schema allows
    assert_error_body(response)


def test_unknown_collections_are_404_with_the_error_body(open_url) -> None:
    for method, path, body in (("POST", SEARCH, {"query": "x"}), ("GET", "/collections/{name}", None)):
        given = {"body": body} if body is not None else {}
        case = open_api[path][method].Case(path_parameters={"name": "no-such-collection"}, **given)
        response = case.call(base_url=open_url)
        assert response.status_code == 404, response.text
        case.validate_response(response)
        assert_error_body(response)
        assert response.json()["error"] == "not_found" and "no-such-collection" in response.json()["message"]


def test_the_query_pattern_is_what_the_searcher_calls_whitespace() -> None:
    """The document's pattern refuses exactly the queries that str.strip() empties: no code point differs."""
    pattern = re.compile(QUERY_PATTERN)
    differ = [c for c in range(sys.maxunicode + 1) if (pattern.search(chr(c)) is None) != chr(c).isspace()]
    assert differ == [], [hex(c) for c in differ[:10]]
