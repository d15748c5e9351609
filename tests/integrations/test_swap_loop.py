"""Both framework retrievers answer while the alias swaps back and forth.

v1 is the real all-MiniLM-L6-v2 (384 dimensions), v2 the same weights under a
Matryoshka truncation to 128 (a new fingerprint, a new schema). While a
LangChain and a LlamaIndex retriever each query in a thread of their own, the
main thread cuts over to v2 and rolls back to v1, several times. Every answer
must come back (no exception), whole (k documents), from one version (one
physical collection, one model label, and every point's ``reindex_model`` tag
that model's), and both versions must be seen by both retrievers, with no
restart in between.

On embedded stores (Qdrant local, Milvus Lite) one process owns the folder, so
the retrievers share the admin commands' Workspace; on a server they open their
own connection, as a separate application would.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
pytest.importorskip("llama_index.core", reason="pip install 'reindexer[llamaindex]' (in the test extra)")

from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.model_identity import ModelSettings  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402

K = 5
SWAPS = 5  # cut-over, rollback, cut-over, rollback, cut-over
REFRESH = 0.2  # the retrievers' Searchers re-resolve the alias at most this often
SEEN_TIMEOUT = 20.0  # seconds for every retriever to answer from a new live version


@dataclass
class Loop:
    """One retriever's thread: it queries until stopped and keeps what it saw."""

    name: str
    ask: object  # query -> list of (doc text, reindex info)
    queries: list[str]
    answers: int = 0
    errors: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # answering version, in order, consecutive repeats folded
    expected: dict[str, str] = field(default_factory=dict)  # physical -> model label

    def run(self, stop: threading.Event) -> None:
        i = 0
        while not stop.is_set():
            q = self.queries[i % len(self.queries)]
            i += 1
            try:
                got = self.ask(q)
            except Exception as exc:  # noqa: BLE001 - every failure counts, whatever its type
                self.errors.append(f"{q!r}: {type(exc).__name__}: {exc}")
                continue
            self.answers += 1
            self.check(q, got)

    def check(self, q: str, got: list) -> None:
        versions = {info["version"] for _, info in got}
        models = {info["model"] for _, info in got}
        tags = {info["model_tag"] for _, info in got}
        if len(got) != K or len(versions) != 1 or len(models) != 1 or len(tags) != 1:
            self.bad.append(f"{q!r}: {len(got)} docs, versions {versions}, models {models}, tags {tags}")
            return
        (version,), (model,), (tag,) = versions, models, tags
        if self.expected.get(version) != model or not model.endswith("@" + tag):
            self.bad.append(f"{q!r}: {version} answered as {model} with points tagged {tag}")
        if not all(text for text, _ in got):
            self.bad.append(f"{q!r}: a document without text")
        if not self.seen or self.seen[-1] != version:
            self.seen.append(version)


def _langchain(retriever):
    def ask(q):
        return [(d.page_content, d.metadata["reindex"]) for d in retriever.invoke(q)]

    return ask


def _llamaindex(retriever):
    def ask(q):
        return [(n.node.get_content(), n.node.metadata["reindex"]) for n in retriever.retrieve(q)]

    return ask


def _wait_seen(loops: list[Loop], physical: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < SEEN_TIMEOUT:
        if all(lp.seen and lp.seen[-1] == physical for lp in loops):
            return time.monotonic() - started
        if any(lp.errors for lp in loops):
            break
        time.sleep(0.02)
    pytest.fail(f"not every retriever answered from {physical} within {SEEN_TIMEOUT}s: "
                f"{[(lp.name, lp.seen[-3:], lp.errors[:2]) for lp in loops]}")


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_framework_retrievers_follow_cutovers_and_rollbacks(store_url, tmp_path, minilm_path, small_corpus_file,
                                                            demo_corpus):
    from reindexer.integrations.langchain import ReindexerRetriever as LangChainRetriever
    from reindexer.integrations.llamaindex import ReindexerRetriever as LlamaIndexRetriever

    config = Config(base_dir=tmp_path, store_url=store_url, state_url=f"sqlite:///{tmp_path}/state.db",
                    batch_size=32)
    with Workspace(config) as ws:
        p1 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                           source=SourceSpec(kind="jsonl", location=str(small_corpus_file)))
        assert commands.apply(ws, p1).live == "docs__v1"
        p2 = commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                           settings=ModelSettings(truncate_dim=128))
        assert p2.dimension_change
        r2 = commands.apply(ws, p2, cutover=False)
        assert (r2.physical, r2.cut_over) == ("docs__v2", False)
        expected = {
            "docs__v1": ws.state.get_model(p1.to_version["model_fingerprint"]).label,
            "docs__v2": ws.state.get_model(p2.to_version["model_fingerprint"]).label,
        }
        assert ws.store.describe("docs__v1").dim == 384 and ws.store.describe("docs__v2").dim == 128

        embedded = store_url.startswith(("qdrant+local:", "milvus+lite:"))
        where = {"workspace": ws} if embedded else {"store": store_url}
        options = {"refresh": REFRESH}
        lc = LangChainRetriever(collection="docs", k=K, searcher_options=options, **where)
        li = LlamaIndexRetriever("docs", similarity_top_k=K, searcher_options=options, **where)
        queries = list(demo_corpus.queries.values())[:12]
        loops = [Loop("langchain", _langchain(lc), queries, expected=expected),
                 Loop("llamaindex", _llamaindex(li), queries, expected=expected)]
        stop = threading.Event()
        threads = [threading.Thread(target=lp.run, args=(stop,), name=lp.name, daemon=True) for lp in loops]
        for t in threads:
            t.start()
        swaps = []
        try:
            _wait_seen(loops, "docs__v1")
            for i in range(SWAPS):
                started = time.monotonic()
                if i % 2 == 0:
                    result = commands.cutover(ws, "docs", to="docs__v2")
                    live = "docs__v2"
                else:
                    result = commands.rollback(ws, "docs")
                    live = "docs__v1"
                assert result["live"] == live and result["changed"]
                swap_s = time.monotonic() - started
                swaps.append((live, round(swap_s, 3), round(_wait_seen(loops, live), 3)))
                time.sleep(0.3)  # answer from this version a while longer
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            lc.close()
            li.close()
        print(f"\n{store_url.split(':')[0]}: swaps (live, swap s, until both retrievers followed s): {swaps}; "
              f"answers {[(lp.name, lp.answers) for lp in loops]}")
        for lp in loops:
            assert not lp.errors, f"{lp.name}: {len(lp.errors)} failed answers, e.g. {lp.errors[:3]}"
            assert not lp.bad, f"{lp.name}: {len(lp.bad)} bad answers, e.g. {lp.bad[:3]}"
            assert lp.answers >= SWAPS + 1
            assert lp.seen[0] == "docs__v1" and lp.seen[-1] == "docs__v2"
            assert set(lp.seen) == {"docs__v1", "docs__v2"} and len(lp.seen) >= SWAPS + 1
