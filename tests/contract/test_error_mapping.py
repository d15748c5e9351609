"""Client exceptions map into reindexer's error tree, without secrets, and
transient ones are retried a bounded number of times."""

from __future__ import annotations

import time

import grpc
import pytest

from reindexer.errors import (
    BackendError,
    BackendUnavailableError,
    ConflictError,
    NotFoundError,
    TransientBackendError,
)

SECRET = "sekrit-api-key-77"


@pytest.fixture
def qdrant_store():
    from reindexer.adapters.qdrant import QdrantStore

    store = object.__new__(QdrantStore)  # no connection: only the mapping is used
    store.location = "http://q.example:6333"
    store._secrets = [SECRET]
    store._client = None
    return store


@pytest.fixture
def milvus_store():
    from reindexer.adapters.milvus import MilvusStore

    store = object.__new__(MilvusStore)
    store.location = "http://m.example:19530"
    store._secrets = [SECRET]
    store._client = None
    return store


def _response(status: int, error: str):
    from qdrant_client.http.exceptions import UnexpectedResponse

    body = (f'{{"status": {{"error": "{error}"}}, "time": 0.0}}').encode()
    return UnexpectedResponse(status, "", body, {})


@pytest.mark.parametrize(
    "status, error, expected",
    [
        (404, "Not found: Collection `docs` doesn't exist!", NotFoundError),
        (409, "Collection `docs` already exists!", ConflictError),
        (400, "Wrong input: Collection `docs` already exists!", ConflictError),
        (400, "Wrong input: Vector dimension error", BackendError),
        (500, "Service internal error", TransientBackendError),
        (502, "bad gateway", TransientBackendError),
        (503, "Service unavailable", TransientBackendError),
        (429, "Too many requests", TransientBackendError),
        (401, f"Invalid api-key {SECRET}", BackendError),
    ],
)
def test_qdrant_http_errors(qdrant_store, status: int, error: str, expected: type) -> None:
    err = qdrant_store._map(_response(status, error), "count 'docs'")
    assert type(err) is expected
    assert SECRET not in str(err)
    assert "http://q.example:6333" in str(err)


def test_qdrant_transport_and_local_errors(qdrant_store) -> None:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    refused = ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))
    assert type(qdrant_store._map(refused, "connect")) is TransientBackendError
    assert type(qdrant_store._map(httpx.ReadTimeout("timed out"), "x")) is TransientBackendError
    assert type(qdrant_store._map(ValueError("Collection nope not found"), "x")) is NotFoundError
    assert type(qdrant_store._map(ValueError("Alias docs already exists"), "x")) is ConflictError
    assert type(qdrant_store._map(ValueError("Wrong input"), "x")) is BackendError
    assert type(qdrant_store._map(RuntimeError("boom"), "x")) is BackendError


def _milvus(code, message: str):
    from pymilvus.exceptions import MilvusException

    return MilvusException(code=code, message=message)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (lambda: _milvus(2, "Fail connecting to server on 127.0.0.1:9, illegal connection params or "
                            "server unavailable"),
         TransientBackendError),
        (lambda: _milvus(101, "failed to query: collection not loaded[collection=1]"), TransientBackendError),
        (lambda: _milvus(101, "Collection 'c' is in state 'released'; call load() before search/get/query"),
         TransientBackendError),
        (lambda: _milvus(100, "collection not found[database=default][collection=nope]"), NotFoundError),
        (lambda: _milvus(100, "can't find collection collection not found[collection=nope]"), NotFoundError),
        (lambda: _milvus(1600, "alias not found[database=default][alias=nope]"), NotFoundError),
        (lambda: _milvus(1601, "alias and collection name conflict[database=default][alias=c1]"), ConflictError),
        (lambda: _milvus(1, "collection 'c1' already exists"), ConflictError),
        (lambda: _milvus(8, "rate limit exceeded"), TransientBackendError),
        (lambda: _milvus(grpc.StatusCode.UNAVAILABLE, "[query] Retry timeout: 60s"), TransientBackendError),
        (lambda: _milvus(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"), TransientBackendError),
        (lambda: _milvus(grpc.StatusCode.PERMISSION_DENIED, f"bad token {SECRET}"), BackendError),
        (lambda: _milvus(65535, "cannot parse expression: id > x"), BackendError),
        (lambda: ConnectionRefusedError("refused"), TransientBackendError),
        (lambda: KeyError("x"), BackendError),
    ],
)
def test_milvus_errors(milvus_store, exc, expected: type) -> None:
    err = milvus_store._map(exc(), "count 'docs'")
    assert type(err) is expected
    assert SECRET not in str(err)
    assert "http://m.example:19530" in str(err)


def test_transient_errors_are_retried_then_reported(milvus_store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REINDEX_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("REINDEX_RETRY_INITIAL", "0.01")
    milvus_store._client = object()
    calls = []

    def flaky():
        calls.append(time.monotonic())
        raise _milvus(2, f"Fail connecting to server (token {SECRET})")

    with pytest.raises(BackendUnavailableError) as err:
        milvus_store._call(flaky, "count 'docs'")
    assert len(calls) == 3
    assert SECRET not in str(err.value)
    assert err.value.exit_code == 5


def test_permanent_errors_are_not_retried(milvus_store) -> None:
    milvus_store._client = object()
    calls = []

    def missing():
        calls.append(1)
        raise _milvus(100, "collection not found[collection=nope]")

    with pytest.raises(NotFoundError):
        milvus_store._call(missing, "count 'nope'")
    assert len(calls) == 1


def _fails_once(code, message: str):
    """A call that fails once with a MilvusException, then answers "ok"; the list counts its calls."""
    calls: list[int] = []

    def call():
        calls.append(1)
        if len(calls) == 1:
            raise _milvus(code, message)
        return "ok"

    return call, calls


def test_missing_right_after_create_is_retried(milvus_store) -> None:
    milvus_store._client = object()
    eventually, calls = _fails_once(100, "can't find collection[collection=new]")
    assert milvus_store._call(eventually, "describe 'new'", missing_is_transient=True) == "ok"
    assert len(calls) == 2


def test_a_load_after_a_restart_that_the_server_calls_unexpected_is_retried_only_there(milvus_store) -> None:
    # A restarted 2.3.5 server fails a new collection's load with code 65535, "unrecoverable error"
    # (its detail, dropped by pymilvus, says "node not found"), until the old query node's session expires.
    milvus_store._client = object()
    settles, calls = _fails_once(65535, "unrecoverable error")
    assert milvus_store._call(settles, "load 'new'", missing_is_transient=True, unexpected_is_transient=True) == "ok"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(BackendError) as err:
        milvus_store._call(settles, "count 'new'")
    assert len(calls) == 1 and not isinstance(err.value, BackendUnavailableError)
