"""`reindex serve` over real HTTP on loopback: bad requests, the token, metrics, the schema,
SIGTERM, a held embedded store, and answers that stay whole while the alias swaps back and forth.

The app runs in uvicorn on a background thread (port 0) where the test needs to share its store
(embedded stores allow one process per folder), and as a `reindex serve` subprocess where the
process itself is under test (SIGTERM, exit codes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason='pip install "reindexer[serve]" (in the test extra)')
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from reindexer import commands  # noqa: E402
from reindexer.adapters import open_store  # noqa: E402
from reindexer.adapters.base import MODEL_KEY  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.errors import StoreLockedError  # noqa: E402
from reindexer.serve import create_app  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402
from tests.plugins.corpus import write_jsonl  # noqa: E402
from tests.plugins.stores import _url_for  # noqa: E402
from tests.plugins.versions import build_two_versions  # noqa: E402

REINDEX = [sys.executable, "-m", "reindexer.cli"]
TOKEN = "serve-test-token-6e1f"


# -- helpers ---------------------------------------------------------------------
@contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def workspace(tmp: Path, store_url: str | None = None) -> Workspace:
    config = Config(base_dir=tmp, store_url=store_url or f"qdrant+local:{tmp / 'qdrant'}",
                    state_url=f"sqlite:///{tmp}/state.db", batch_size=32)
    return Workspace(config)


def build_v1(ws: Workspace, model: Path, corpus: Path) -> None:
    commands.apply(ws, commands.plan(ws, "docs", model_path=str(model), estimate=False,
                                     source=SourceSpec(kind="jsonl", location=str(corpus))))


def short_fingerprint(label: str) -> str:
    return label.rsplit("@", 1)[1]


def assert_json_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text and 'File "' not in response.text
    body = response.json()
    assert body["error"] == error and body["message"], body
    return body


# -- one served collection for the request tests -----------------------------------
@pytest.fixture(scope="module")
def docs_ws(tmp_path_factory, minilm_path, demo_corpus) -> Iterator[Workspace]:
    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_jsonl(tmp / "corpus.jsonl", demo_corpus.documents[:60])
    with workspace(tmp) as ws:
        build_v1(ws, minilm_path, corpus)
        yield ws


@pytest.fixture(scope="module")
def base_url(docs_ws) -> Iterator[str]:
    with live_server(create_app(docs_ws, max_k=100)) as url:
        yield url


@pytest.fixture
def client(base_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def test_search_answers_from_the_live_version(client, docs_ws) -> None:
    r = client.post("/collections/docs/search", json={"query": "how do I reset my password", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    model = docs_ws.state.get_model(docs_ws.store.describe("docs__v1").metadata["reindex.fingerprint"])
    assert body["version"] == "docs__v1" and body["model"] == model.label
    assert len(body["hits"]) == 5
    for hit in body["hits"]:
        assert set(hit) == {"id", "score", "payload"}
        assert hit["payload"][MODEL_KEY] == short_fingerprint(body["model"])  # payload as stored, tag included
        assert hit["payload"]["text"]
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    info = client.get("/collections/docs")
    assert info.status_code == 200
    assert info.json()["version"] == "docs__v1" and info.json()["model"] == model.label
    assert info.json()["dim"] == 384


def test_search_with_a_filter(client) -> None:
    first = client.post("/collections/docs/search", json={"query": "billing", "k": 1}).json()["hits"][0]
    body = {"query": "billing", "k": 5, "filter": {"reindex_doc_id": first["id"]}}
    r = client.post("/collections/docs/search", json=body)
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["hits"]] == [first["id"]]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "names"),
    [
        pytest.param(b'{"query": "x", "k": ', {"content-type": "application/json"}, 400, "invalid_json", "JSON",
                     id="malformed-json"),
        pytest.param(json.dumps({"k": 3}).encode(), {"content-type": "application/json"}, 422, "invalid_request",
                     "query", id="missing-query"),
        pytest.param(json.dumps({"query": "x", "k": 0}).encode(), {"content-type": "application/json"}, 422,
                     "invalid_request", "between 1 and 100", id="k-0"),
        pytest.param(json.dumps({"query": "x", "k": 10_000}).encode(), {"content-type": "application/json"}, 422,
                     "invalid_request", "max_k", id="k-10000"),
        pytest.param(json.dumps({"query": "x", "k": "ten"}).encode(), {"content-type": "application/json"}, 422,
                     "invalid_request", "k", id="k-not-a-number"),
        pytest.param(json.dumps({"query": "x", "top_k": 3}).encode(), {"content-type": "application/json"}, 422,
                     "invalid_request", "top_k", id="unknown-field"),
        pytest.param(json.dumps(["x"]).encode(), {"content-type": "application/json"}, 422, "invalid_request",
                     "dictionary", id="not-an-object"),
        pytest.param(b"query=x", {"content-type": "application/x-www-form-urlencoded"}, 415,
                     "unsupported_media_type", "application/json", id="a-form"),
        pytest.param(json.dumps({"query": "x" * 70_000}).encode(), {"content-type": "application/json"}, 413,
                     "body_too_large", "65536", id="body-too-large"),
    ],
)
def test_bad_requests_name_the_problem(client, body, headers, status, error, names) -> None:
    r = client.post("/collections/docs/search", content=body, headers=headers)
    answer = assert_json_error(r, status, error)
    assert names in answer["message"], answer
    if status == 422 and "field" in answer:
        assert answer["field"] in answer["message"]


def test_a_chunked_body_over_the_limit_is_refused(client) -> None:
    def chunks():
        for _ in range(20):
            yield b" " * 4096

    r = client.post("/collections/docs/search", content=chunks(), headers={"content-type": "application/json"})
    assert_json_error(r, 413, "body_too_large")


def test_unknown_collection_is_404(client) -> None:
    r = client.post("/collections/nope/search", json={"query": "x"})
    assert "nope" in assert_json_error(r, 404, "not_found")["message"]
    assert_json_error(client.get("/collections/nope"), 404, "not_found")
    assert_json_error(client.get("/no/such/endpoint"), 404, "not_found")
    assert_json_error(client.get("/collections/docs/search"), 405, "method_not_allowed")


def test_metrics_count_by_collection_and_version(client) -> None:
    def sample(text: str, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        m = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/collections/docs/search", json={"query": "refund", "k": 2}).status_code == 200
    assert client.post("/collections/docs/search", json={"query": "refund", "k": 0}).status_code == 422
    assert client.post("/collections/ghost-a/search", json={"query": "x"}).status_code == 404
    assert client.post("/collections/ghost-b/search", json={"query": "x"}).status_code == 404
    after = client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = {"collection": "docs", "version": "docs__v1", "status": "200"}
    requests = "reindex_search_requests_total"
    assert sample(text, requests, **ok) == sample(before, requests, **ok) + 3
    count = {"collection": "docs", "version": "docs__v1"}
    assert sample(text, "reindex_search_latency_seconds_count", **count) >= 3
    assert sample(text, "reindex_search_errors_total", collection="docs", kind="invalid_request") >= 1
    # names that resolve to nothing share one label: clients cannot grow the metrics without bound
    assert sample(text, "reindex_search_errors_total", collection="(unknown)", kind="not_found") >= 2
    assert "ghost" not in text


def test_openapi_documents_the_search(client) -> None:
    schema = client.get("/openapi.json").json()
    search = schema["paths"]["/collections/{name}/search"]["post"]
    ref = search["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(request["properties"]) == {"query", "k", "filter", "mode", "rerank"} and request["required"] == ["query"]
    modes = request["properties"]["mode"]["anyOf"][0]["enum"]
    assert modes == ["dense", "lexical", "hybrid"]  # what the Searcher accepts, and nothing else
    assert request["properties"]["k"]["maximum"] == 100 and request["properties"]["k"]["minimum"] == 1
    ok = search["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schema["components"]["schemas"][ok.rsplit("/", 1)[1]]["properties"]) == {"version", "model", "hits"}
    assert {"422", "404", "413"} <= set(search["responses"])
    assert {"/collections/{name}", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_readiness_says_when_the_store_does_not_answer(tmp_path) -> None:
    # A Milvus server URL where nothing listens: the store cannot be opened.
    port = _free_port()
    ws = workspace(tmp_path, f"milvus://127.0.0.1:{port}")
    with live_server(create_app(ws)) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False and r.json()["message"]
        assert c.get("/healthz").status_code == 200
        assert_json_error(c.post("/collections/docs/search", json={"query": "x"}), 503, "backend_unavailable")
    ws.close()


def test_preloaded_collections_hold_readiness_until_their_models_load(docs_ws) -> None:
    app = create_app(docs_ws, preload=["docs", "ghost"])
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        deadline = time.monotonic() + 120
        while True:
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            if "ghost" in ready.json()["message"] and "cannot load" in ready.json()["message"]:
                break  # docs is loaded; the missing one is named, and retried
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.2)
        assert c.post("/collections/docs/search", json={"query": "refund"}).status_code == 200
    # the warmer stopped with the app (it was waiting to retry the missing collection)


def test_an_app_from_a_factory_opens_and_closes_its_workspace(tmp_path) -> None:
    made = []

    def factory() -> Workspace:
        made.append(workspace(tmp_path))
        return made[-1]

    with live_server(create_app(factory)) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert len(made) == 1 and c.get("/readyz").status_code == 200
        assert_json_error(c.post("/collections/docs/search", json={"query": "x"}), 404, "not_found")
    # closed on shutdown: the embedded folder can be opened again in this process
    with open_store(f"qdrant+local:{tmp_path / 'qdrant'}") as store:
        assert store.list_collections() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_token(docs_ws) -> None:
    with live_server(create_app(docs_ws, token=TOKEN)) as url, httpx.Client(base_url=url, timeout=60) as c:
        query = {"query": "invoice"}
        missing = assert_json_error(c.post("/collections/docs/search", json=query), 401, "unauthorized")
        assert "Bearer" in missing["message"]
        assert c.post("/collections/docs/search", json=query).headers["www-authenticate"] == "Bearer"
        wrong = c.post("/collections/docs/search", json=query, headers={"authorization": "Bearer not-it"})
        assert_json_error(wrong, 401, "unauthorized")
        assert TOKEN not in wrong.text
        basic = c.post("/collections/docs/search", json=query, headers={"authorization": f"Basic {TOKEN}"})
        assert_json_error(basic, 401, "unauthorized")
        assert_json_error(c.get("/collections/docs"), 401, "unauthorized")
        assert_json_error(c.get("/metrics"), 401, "unauthorized")
        good = {"authorization": f"Bearer {TOKEN}"}
        assert c.post("/collections/docs/search", json=query, headers=good).status_code == 200
        assert c.get("/metrics", headers=good).status_code == 200
        # probes need no token
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_token_from_env_or_file(tmp_path, monkeypatch) -> None:
    from reindexer.serve import token_from_env

    monkeypatch.delenv("REINDEX_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("REINDEX_SERVE_TOKEN_FILE", raising=False)
    assert token_from_env() is None
    (tmp_path / "token").write_text(TOKEN + "\n")
    monkeypatch.setenv("REINDEX_SERVE_TOKEN_FILE", str(tmp_path / "token"))
    assert token_from_env() == TOKEN
    monkeypatch.setenv("REINDEX_SERVE_TOKEN", "from-env")
    assert token_from_env() == "from-env"


# -- the process: SIGTERM, a held store, the missing extra --------------------------
def _serve_process(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen([*REINDEX, *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_url(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, list[str]]:
    """The URL from `reindex serve`'s first line on stderr, and the lines read so far."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            pytest.fail(f"reindex serve exited ({proc.wait()}):\n" + "".join(lines))
        lines.append(line)
        m = re.search(r"reindex serve: (http://127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1), lines
    pytest.fail("reindex serve printed no URL:\n" + "".join(lines))


def test_sigterm_stops_reindex_serve_gracefully(tmp_path) -> None:
    proc = _serve_process(tmp_path, "serve", "--port", "0", env={"REINDEX_SERVE_TOKEN": TOKEN})
    try:
        url, lines = _wait_for_url(proc)
        assert "bearer token required" in lines[0] and TOKEN not in lines[0]
        with httpx.Client(base_url=url, timeout=30) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            r = c.post("/collections/docs/search", json={"query": "x"}, headers={"authorization": f"Bearer {TOKEN}"})
            assert_json_error(r, 404, "not_found")  # a fresh folder: no collections yet
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = proc.stderr.read()
    assert "Traceback" not in rest and TOKEN not in rest
    assert "Application shutdown complete" in rest and "reindex serve: stopped" in rest


def test_serve_refuses_an_embedded_store_held_elsewhere(tmp_path) -> None:
    folder = tmp_path / "qdrant"
    with open_store(f"qdrant+local:{folder}"):  # this test process holds it, as an admin command would
        proc = _serve_process(tmp_path, "--store", f"qdrant+local:{folder}", "serve", "--port", "0")
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    assert "reindex serve needs the embedded store" in stderr and str(folder) in stderr
    assert "one process per data folder" in stderr
    assert "qdrant://" in stderr and "milvus://" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("kind", ["qdrant-local", "milvus-lite"])
def test_admin_side_names_a_running_serve(tmp_path, kind) -> None:
    url = f"qdrant+local:{tmp_path / 'q'}" if kind == "qdrant-local" else f"milvus+lite:{tmp_path / 'm.db'}"
    if kind == "qdrant-local":
        with open_store(url), pytest.raises(StoreLockedError) as err:
            open_store(url)
    else:
        # Milvus Lite shares one handle within a process; another process holds its flock.
        import fcntl

        db = tmp_path / "m.db"
        db.mkdir()
        fd = os.open(db / "LOCK", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(StoreLockedError) as err:
                open_store(url)
        finally:
            os.close(fd)
    assert "`reindex serve`" in str(err.value) and "one process per data folder" in str(err.value)


def test_serve_without_the_extra_says_how_to_install_it(tmp_path) -> None:
    # The extra's modules made unimportable: reindexer and its CLI still import; serve says what to install.
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'prometheus_client', 'starlette'):\n"
        "    sys.modules[name] = None\n"
        "import reindexer, reindexer.cli, reindexer.commands\n"
        "sys.argv = ['reindex', 'serve']\n"
        "reindexer.cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=os.environ)
    assert result.returncode == 2, result.stderr
    assert 'pip install "reindexer[serve]"' in result.stderr and "Traceback" not in result.stderr


# -- answers stay whole while the alias swaps -------------------------------------------
class SearchLoop:
    """Client threads POSTing searches until stopped; every answer and failure is kept."""

    def __init__(self, url: str, queries: list[str], threads: int = 2):
        self.url, self.queries = url, queries
        self.answers: list[dict] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            i = offset
            while not self._stop.is_set():
                query = self.queries[i % len(self.queries)]
                i += len(self._threads)
                try:
                    r = c.post("/collections/docs/search", json={"query": query, "k": 5})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{query!r}: {type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    if r.status_code == 200 and r.json()["hits"]:
                        self.answers.append(r.json())
                    else:
                        self.failures.append(f"{query!r}: {r.status_code} {r.text[:300]}")

    def latest_version(self) -> str | None:
        with self._lock:
            return self.answers[-1]["version"] if self.answers else None

    def wait_for(self, version: str, timeout: float = 60) -> None:
        """Until an answer *started after now* comes from ``version``."""
        with self._lock:
            seen = len(self.answers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                # each thread's next answer may have been in flight before the swap: skip one per thread
                fresh = self.answers[seen + len(self._threads):]
            if any(a["version"] == version for a in fresh):
                return
            time.sleep(0.05)
        raise AssertionError(f"no answer from {version} within {timeout} s; failures: {self.failures[:3]}")

    def __enter__(self) -> SearchLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def swap_back_and_forth(admin: Workspace, url: str, queries: list[str], swaps: int = 3) -> SearchLoop:
    """v1 live, v2 (128 dims) built: cut over and roll back ``swaps`` times while clients search."""
    with SearchLoop(url, queries) as loop:
        loop.wait_for("docs__v1")
        for _i in range(swaps):
            target = commands.cutover(admin, "docs", to="v2")
            assert target["live"] == "docs__v2" and target["changed"]
            loop.wait_for("docs__v2")
            back = commands.rollback(admin, "docs")
            assert back["live"] == "docs__v1" and back["changed"]
            loop.wait_for("docs__v1")
    return loop


def assert_every_answer_whole(loop: SearchLoop, ws: Workspace) -> None:
    assert not loop.failures, loop.failures[:5]
    labels = {}
    for physical in ("docs__v1", "docs__v2"):
        fingerprint = ws.store.describe(physical).metadata["reindex.fingerprint"]
        labels[physical] = ws.state.get_model(fingerprint).label
    assert short_fingerprint(labels["docs__v1"]) != short_fingerprint(labels["docs__v2"])
    for answer in loop.answers:
        assert answer["model"] == labels[answer["version"]], answer["version"]
        tags = {hit["payload"][MODEL_KEY] for hit in answer["hits"]}
        assert tags == {short_fingerprint(answer["model"])}, (answer["version"], tags)
    seen = {a["version"] for a in loop.answers}
    assert seen == {"docs__v1", "docs__v2"}, seen
    counts = {v: sum(a["version"] == v for a in loop.answers) for v in sorted(seen)}
    print(f"\n{len(loop.answers)} answers, none failed: {counts}")


def _queries(demo_corpus) -> list[str]:
    return list(demo_corpus.queries.values())[:20]


@pytest.mark.slow
def test_answers_stay_whole_while_the_alias_swaps_on_an_embedded_store(two_version_worlds, demo_corpus) -> None:
    # Embedded: one process per folder, so the app and the admin commands share one workspace.
    config, _ = two_version_worlds.restore("qdrant-local")  # v1 live (384 dims), v2 built (128)
    with Workspace(config) as ws:
        # shadow traffic on as well: while v2 is a built shadow, every live query is mirrored to it
        with live_server(create_app(ws, refresh=0.1, shadow_sample=1.0)) as url:
            loop = swap_back_and_forth(ws, url, _queries(demo_corpus))
        assert_every_answer_whole(loop, ws)
        # the app's shutdown closed its Searchers, which recorded what they mirrored
        mirrored = ws.state.traffic(ws.store_url, "docs")
        assert mirrored and {(r.live, r.shadow) for r in mirrored} == {("docs__v1", "docs__v2")}


@pytest.fixture
def milvus_server_url(request, tmp_path) -> Iterator[str]:
    """The session's Milvus standalone, emptied before and after (see tests/plugins/stores.py)."""
    yield from _url_for(request, "milvus-server", tmp_path)


@pytest.mark.slow
@pytest.mark.server
def test_answers_stay_whole_while_the_alias_swaps_on_the_milvus_server(milvus_server_url, tmp_path, minilm_path,
                                                                        small_corpus_file, demo_corpus) -> None:
    # A server: the service and the admin commands are separate clients, as in production.
    with workspace(tmp_path, milvus_server_url) as admin, workspace(tmp_path, milvus_server_url) as served:
        build_two_versions(admin, minilm_path, small_corpus_file)
        with live_server(create_app(served, refresh=0.1)) as url:
            loop = swap_back_and_forth(admin, url, _queries(demo_corpus))
        assert_every_answer_whole(loop, admin)
