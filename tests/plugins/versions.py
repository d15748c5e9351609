"""A collection with two real model versions (MiniLM at 384 dimensions, its 128-dimension
Matryoshka truncation), and a loop that swaps between them under load.

On each embedded backend the world is built once per session and restored from a pristine
copy for each module that asks for ``two_versions`` (or test that asks ``two_version_worlds``).

``two_versions`` runs on each embedded backend (parametrised by ``pytest_generate_tests`` in
the module or conftest that asks for it); ``server_two_versions`` on the real Milvus server.
The server fixture is module-scoped because the ``store_url`` fixture empties the server
before each test that uses it.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY
from reindexer.config import Config
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

TRUNCATED_128 = ModelSettings(truncate_dim=128)


def build_two_versions(ws: Workspace, minilm_path, corpus_file, collection: str = "docs") -> dict[str, str]:
    """v1 live (384 dims), v2 built beside it (128 dims); returns physical name -> model short tag."""
    p1 = commands.plan(ws, collection, model_path=str(minilm_path), estimate=False,
                       source=SourceSpec(kind="jsonl", location=str(corpus_file)))
    commands.apply(ws, p1)
    p2 = commands.plan(ws, collection, model_path=str(minilm_path), estimate=False, settings=TRUNCATED_128)
    commands.apply(ws, p2, cutover=False)
    return {v: ws.store.describe(v).metadata["reindex.fingerprint"][:12]
            for v in (f"{collection}__v1", f"{collection}__v2")}


def live_is(ws: Workspace, collection: str, physical: str) -> None:
    if ws.store.resolve(collection) != physical:
        commands.cutover(ws, collection, to=physical)


@dataclass
class LoopReport:
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    versions_seen: set[str] = field(default_factory=set)


def swap_under_load(ws: Workspace, collection: str, ask, tags_of, tags: dict[str, str], queries: list[str],
                    rounds: int = 2) -> LoopReport:
    """Loop ``ask(query) -> (version, [model tags])`` in a thread while the alias is swapped
    v1 -> v2 (384 -> 128 dimensions) -> v1 ... ``rounds`` times, by cut-over and rollback."""
    report = LoopReport()
    stop = threading.Event()

    def loop() -> None:
        i = 0
        while not stop.is_set():
            q = queries[i % len(queries)]
            i += 1
            try:
                version, hit_tags = ask(q)
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                report.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            report.answers += 1
            report.versions_seen.add(version)
            if not hit_tags or set(hit_tags) != {tags[version]}:
                report.mixed.append(f"{version}: {sorted(set(hit_tags))}")

    def settle(seconds: float, at_least: int = 4, patience: float = 120.0) -> None:
        # Each phase lasts its time and until the loop has asked ``at_least`` queries in it: on a
        # loaded machine (two cores, ten processes) the time alone left some phases with no query.
        start, before = time.monotonic(), report.answers + len(report.failures)
        while time.monotonic() - start < seconds or report.answers + len(report.failures) - before < at_least:
            if time.monotonic() - start > patience or not thread.is_alive():
                return
            time.sleep(0.02)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for _ in range(rounds):
            settle(0.6)
            commands.cutover(ws, collection, to=f"{collection}__v2")
            settle(0.6)
            commands.rollback(ws, collection)
        settle(0.6)
        commands.cutover(ws, collection, to=f"{collection}__v2")
        settle(0.8)
    finally:
        stop.set()
        thread.join(timeout=30)
    return report


def hit_tags(hits) -> list[str]:
    return [h.payload.get(MODEL_KEY) for h in hits]


class TwoVersionWorlds:
    """The embedded two-version worlds, each built once per session and copied back for each user.

    A world is one folder (store, state database, corpus): ``restore(kind)`` builds it on first
    use, else puts its pristine copy back at the same path (the state records the store URL, so
    the path must not change), and returns the Config to open it with and the model tags. Only
    one user at a time: the previous Workspace on a world must be closed before the next restore.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, minilm_path, demo_corpus):
        self._factory, self._minilm_path, self._documents = tmp_path_factory, minilm_path, demo_corpus.documents[:60]
        self._built: dict[str, tuple[Path, dict[str, str]]] = {}

    def restore(self, kind: str) -> tuple[Config, dict[str, str]]:
        if kind in self._built:
            base, tags = self._built[kind]
            shutil.rmtree(base / "ws")
            shutil.copytree(base / "pristine", base / "ws")
            return self._config(kind, base / "ws"), tags
        base = self._factory.mktemp(f"two-versions-{kind}")
        (base / "ws").mkdir()
        config = self._config(kind, base / "ws")
        corpus = write_jsonl(base / "ws" / "corpus.jsonl", self._documents)
        with Workspace(config) as ws:
            tags = build_two_versions(ws, self._minilm_path, corpus)
        shutil.copytree(base / "ws", base / "pristine")
        self._built[kind] = (base, tags)
        return config, tags

    @staticmethod
    def _config(kind: str, folder: Path) -> Config:
        url = f"qdrant+local:{folder / 'qdrant'}" if kind == "qdrant-local" else f"milvus+lite:{folder / 'milvus.db'}"
        return Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder}/state.db", batch_size=32)


@pytest.fixture(scope="session")
def two_version_worlds(tmp_path_factory, minilm_path, demo_corpus) -> TwoVersionWorlds:
    return TwoVersionWorlds(tmp_path_factory, minilm_path, demo_corpus)


@pytest.fixture(scope="module")
def two_versions(request, two_version_worlds):
    """(workspace, {physical: model tag}) on one embedded backend, v1 live and v2 built; a fresh copy per module."""
    config, tags = two_version_worlds.restore(request.param)
    with Workspace(config) as ws:
        yield ws, tags


@pytest.fixture(scope="module")
def server_two_versions(milvus_server, tmp_path_factory, minilm_path, demo_corpus):
    """(workspace, {physical: model tag}) on the real Milvus server, v1 live and v2 built."""
    from tests.plugins.stores import _drop_new

    folder = tmp_path_factory.mktemp("two-versions-server")
    corpus = write_jsonl(folder / "corpus.jsonl", demo_corpus.documents[:60])
    if milvus_server.server is not None:
        _drop_new(milvus_server.url, None)
    config = Config(base_dir=folder, store_url=milvus_server.url, state_url=f"sqlite:///{folder}/state.db",
                    batch_size=32)
    with Workspace(config) as ws:
        tags = build_two_versions(ws, minilm_path, corpus, collection="qs_docs")
        yield ws, tags
        for alias in ("qs_docs",):
            ws.store.drop_alias(alias)
        for name in tags:
            ws.store.drop_collection(name)


def embedded_two_versions(metafunc) -> None:
    """Call from ``pytest_generate_tests``: run ``two_versions`` tests on each embedded backend."""
    if "two_versions" in metafunc.fixturenames:
        metafunc.parametrize("two_versions", ["qdrant-local", "milvus-lite"], indirect=True, scope="module")
