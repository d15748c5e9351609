"""How the framework integrations turn Searcher hits into LangChain documents and LlamaIndex nodes.

A stand-in Searcher (the contract's ``search`` / ``current`` / ``close``) returns
fixed hits, so these run without a model or a store; the real Searcher is
exercised in test_langchain_app.py and test_swap_loop.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

pytest.importorskip("langchain_core", reason="pip install 'reindexer[langchain]' (in the test extra)")
pytest.importorskip("llama_index.core", reason="pip install 'reindexer[llamaindex]' (in the test extra)")

from reindexer.errors import UsageError  # noqa: E402


@dataclass(frozen=True)
class Hit:
    doc_id: str
    score: float
    payload: dict
    version: str
    model: str


@dataclass(frozen=True)
class Info:
    collection: str = "docs"
    physical: str = "docs__v2"
    model: str = "minilm@aaaaaaaaaaaa"
    fingerprint: str = "a" * 64
    dim: int = 384
    metric: str = "cosine"
    text_field: str = "text"


@dataclass
class FakeSearcher:
    hits: list
    info: Info = field(default_factory=Info)
    calls: list = field(default_factory=list)
    closed: bool = False

    def search(self, query, k=10, filter=None):
        self.calls.append((query, k, filter))
        return self.hits[:k]

    def current(self):
        return self.info

    def version_info(self, physical):
        return self.info

    def close(self):
        self.closed = True


def _hit(doc_id, payload, score=0.9, version="docs__v2", tag="aaaaaaaaaaaa"):
    return Hit(doc_id, score, {**payload, "reindex_model": tag}, version, f"minilm@{tag}")


LC_PAYLOAD = {"page_content": "Reset your password from the login page.", "metadata": {"source": "faq", "n": 3}}


def test_langchain_layout_gives_page_content_metadata_id_and_reindex_info():
    from reindexer.integrations.langchain import ReindexerRetriever

    s = FakeSearcher([_hit("d1", LC_PAYLOAD, 0.8), _hit("d2", {**LC_PAYLOAD, "page_content": "Other."}, 0.5)],
                     Info(text_field="page_content"))
    r = ReindexerRetriever(searcher=s, k=2)
    docs = r.invoke("password")
    assert [d.id for d in docs] == ["d1", "d2"]
    assert docs[0].page_content == LC_PAYLOAD["page_content"]
    assert docs[0].metadata == {"source": "faq", "n": 3, "reindex": {
        "version": "docs__v2", "model": "minilm@aaaaaaaaaaaa", "score": 0.8, "doc_id": "d1",
        "model_tag": "aaaaaaaaaaaa"}}
    assert s.calls == [("password", 2, None)]
    # invoke-time overrides, and the stored payload is never mutated
    r.invoke("password", k=1, filter={"metadata.source": "faq"})
    assert s.calls[-1] == ("password", 1, {"metadata.source": "faq"})
    assert "reindex" not in s.hits[0].payload["metadata"]
    r.close()
    assert not s.closed  # it was not the retriever's to close


def test_flat_layout_and_nested_text_field():
    from reindexer.integrations.langchain import ReindexerVectorStore

    flat = _hit("d1", {"text": "Body.", "title": "T", "meta": {"lang": "en"}})
    vs = ReindexerVectorStore(searcher=FakeSearcher([flat]))
    (doc,) = vs.similarity_search("q", k=1)
    assert doc.page_content == "Body." and doc.metadata["title"] == "T" and doc.metadata["meta"] == {"lang": "en"}
    assert "text" not in doc.metadata and "reindex_model" not in doc.metadata

    nested = _hit("d2", {"title": "T", "meta": {"body": "Nested body.", "lang": "en"}})
    vs = ReindexerVectorStore(searcher=FakeSearcher([nested], Info(text_field="meta.body")))
    ((doc, score),) = vs.similarity_search_with_score("q", k=1)
    assert doc.page_content == "Nested body." and score == 0.9
    assert doc.metadata["meta"] == {"lang": "en"} and doc.metadata["title"] == "T"

    # text nested inside LangChain's metadata object: the object, without the text
    lc_nested = _hit("d3", {"metadata": {"body": "In metadata.", "source": "x"}})
    vs = ReindexerVectorStore(searcher=FakeSearcher([lc_nested], Info(text_field="metadata.body")))
    (doc,) = vs.similarity_search("q", k=1)
    assert doc.page_content == "In metadata." and doc.metadata["source"] == "x" and "body" not in doc.metadata

    # an explicit text_field wins over the version's
    vs = ReindexerVectorStore(searcher=FakeSearcher([flat]), text_field="title")
    assert vs.similarity_search("q", k=1)[0].page_content == "T"


def test_vector_store_relevance_scores_and_retriever():
    from reindexer.integrations.langchain import ReindexerVectorStore

    s = FakeSearcher([_hit("d1", LC_PAYLOAD, 0.7), _hit("d2", LC_PAYLOAD, -0.2)], Info(text_field="page_content"))
    vs = ReindexerVectorStore(searcher=s)
    scored = vs.similarity_search_with_relevance_scores("q", k=2)
    assert [round(x, 3) for _, x in scored] == [0.7, 0.0]
    kept = vs.similarity_search_with_relevance_scores("q", k=2, score_threshold=0.5)
    assert [d.id for d, _ in kept] == ["d1"]
    docs = vs.as_retriever(search_kwargs={"k": 1, "filter": {"metadata.source": "faq"}}).invoke("q")
    assert [d.id for d in docs] == ["d1"] and s.calls[-1] == ("q", 1, {"metadata.source": "faq"})
    s.info = Info(metric="euclid", text_field="page_content")
    vs2 = ReindexerVectorStore(searcher=FakeSearcher([_hit("d1", LC_PAYLOAD, 0.0)], s.info))
    assert vs2.similarity_search_with_relevance_scores("q", k=1)[0][1] == 1.0


def test_vector_store_is_read_only_and_says_what_to_do():
    from langchain_core.documents import Document

    from reindexer.integrations.langchain import ReindexerVectorStore

    vs = ReindexerVectorStore(searcher=FakeSearcher([]))
    for call in (lambda: vs.add_texts(["x"]), lambda: vs.add_documents([Document(page_content="x")]),
                 lambda: vs.delete(["x"]), lambda: ReindexerVectorStore.from_texts(["x"], None)):
        with pytest.raises(NotImplementedError, match="read-only.*reindex sync"):
            call()


def test_bad_arguments_are_usage_errors():
    from reindexer.integrations.langchain import ReindexerRetriever, ReindexerVectorStore

    with pytest.raises(UsageError, match="name the collection"):
        ReindexerVectorStore()
    with pytest.raises(UsageError, match="not both"):
        ReindexerVectorStore("docs", searcher=FakeSearcher([]))
    vs = ReindexerVectorStore(searcher=FakeSearcher([]))
    with pytest.raises(UsageError, match="filter must be a dict"):
        vs.similarity_search("q", filter="source == 'faq'")
    with pytest.raises(TypeError, match="score_threshol"):
        vs.similarity_search("q", score_threshol=0.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ReindexerRetriever(searcher=FakeSearcher([])).invoke("q", kk=3)


def test_llamaindex_plain_payload_becomes_text_node():
    from llama_index.core.schema import MetadataMode, TextNode

    from reindexer.integrations.llamaindex import ReindexerRetriever

    s = FakeSearcher([_hit("d1", {"text": "Body.", "title": "T"}, 0.6)])
    r = ReindexerRetriever(searcher=s, similarity_top_k=3)
    (nws,) = r.retrieve("q")
    assert isinstance(nws.node, TextNode) and nws.node.id_ == "d1" and nws.node.text == "Body."
    assert nws.score == 0.6 and nws.node.metadata["title"] == "T"
    assert nws.node.metadata["reindex"]["version"] == "docs__v2"
    assert "reindex" not in nws.node.get_content(MetadataMode.LLM)
    assert "title" in nws.node.get_content(MetadataMode.LLM)
    assert s.calls == [("q", 3, None)]


def test_llamaindex_node_content_is_rebuilt():
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    from reindexer.integrations.llamaindex import ReindexerRetriever

    node = TextNode(id_="n-1", text="LlamaIndex body.", metadata={"section": "billing"})
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-7")
    payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=False)
    s = FakeSearcher([_hit("n-1", payload)], Info(text_field="_node_content"))
    (nws,) = ReindexerRetriever(searcher=s).retrieve("q")
    assert nws.node.id_ == "n-1" and nws.node.text == "LlamaIndex body."
    assert nws.node.ref_doc_id == "doc-7"
    assert nws.node.metadata["section"] == "billing" and nws.node.metadata["reindex"]["model_tag"] == "aaaaaaaaaaaa"
    # LangChain reads the same collection: the node's text, the flat fields as metadata
    from reindexer.integrations.langchain import ReindexerRetriever as LCRetriever

    (doc,) = LCRetriever(searcher=FakeSearcher([_hit("n-1", payload)], Info(text_field="_node_content")),
                         k=1).invoke("q")
    assert doc.page_content == "LlamaIndex body." and doc.metadata["section"] == "billing"
    assert "_node_content" not in doc.metadata

    # a _node_content that is not LlamaIndex's: a plain TextNode, not an error
    odd = _hit("x", {"_node_content": json.dumps({"text": "plain"}), "_node_type": "Nope"})
    (nws,) = ReindexerRetriever(searcher=FakeSearcher([odd], Info(text_field="_node_content"))).retrieve("q")
    assert nws.node.text == "plain"


def test_llamaindex_filters():
    from llama_index.core.vector_stores.types import (
        ExactMatchFilter,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from reindexer.integrations.llamaindex import ReindexerRetriever

    s = FakeSearcher([])
    eq = MetadataFilters(filters=[ExactMatchFilter(key="section", value="billing"),
                                  MetadataFilter(key="lang", value="en", operator=FilterOperator.EQ)])
    ReindexerRetriever(searcher=s, filters=eq).retrieve("q")
    assert s.calls[-1][2] == {"section": "billing", "lang": "en"}
    with pytest.raises(UsageError, match="only equality"):
        ReindexerRetriever(searcher=s, filters=MetadataFilters(
            filters=[MetadataFilter(key="n", value=3, operator=FilterOperator.GT)]))
    with pytest.raises(UsageError, match="AND"):
        ReindexerRetriever(searcher=s, filters=MetadataFilters(
            filters=[ExactMatchFilter(key="a", value=1), ExactMatchFilter(key="b", value=2)],
            condition=FilterCondition.OR))


async def _aretrieve(r, q):
    return await r.aretrieve(q)


def test_llamaindex_async():
    import asyncio

    from reindexer.integrations.llamaindex import ReindexerRetriever

    s = FakeSearcher([_hit("d1", {"text": "Body."})])
    (nws,) = asyncio.run(_aretrieve(ReindexerRetriever(searcher=s), "q"))
    assert nws.node.text == "Body."


def test_importing_reindexer_imports_no_framework():
    code = (
        "import sys, reindexer, reindexer.integrations, reindexer.commands\n"
        "try:\n    import reindexer.searcher\nexcept ImportError:\n    pass\n"
        "getattr(reindexer, 'Searcher', None)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'llama_index', 'langchain')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_examples_run_as_written(monkeypatch):
    """The README's framework snippets, run against a stand-in Searcher (no store behind the URLs)."""
    import re
    from pathlib import Path

    import reindexer.searcher

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text.split("### LangChain and LlamaIndex", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    made = []

    def fake(collection, store=None, state=None, **options):
        made.append((collection, store))
        return FakeSearcher([_hit(f"d{i}", LC_PAYLOAD, 0.9 - i / 10) for i in range(5)],
                            Info(text_field="page_content"))

    monkeypatch.setattr(reindexer.searcher, "Searcher", fake)
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)
    assert [c for c, _ in made] == ["docs"] * 3
    assert len(scope["nodes"]) == 5 and scope["nodes"][0].node.metadata["reindex"]["version"] == "docs__v2"


def test_text_template_makes_page_content_the_rendered_text_and_keeps_every_field():
    from reindexer.integrations.langchain import ReindexerVectorStore
    from reindexer.integrations.llamaindex import ReindexerRetriever

    hit = _hit("d1", {"title": "Aspirin", "text": "reduces fever.", "year": 2020})
    vs = ReindexerVectorStore(searcher=FakeSearcher([hit], Info(text_field="{title}. {text}")))
    (doc,) = vs.similarity_search("q", k=1)
    assert doc.page_content == "Aspirin. reduces fever."
    assert doc.metadata["title"] == "Aspirin" and doc.metadata["text"] == "reduces fever."
    assert doc.metadata["year"] == 2020
    (node,) = ReindexerRetriever(searcher=FakeSearcher([hit], Info(text_field="{title}. {text}"))).retrieve("q")
    assert node.node.get_content() == "Aspirin. reduces fever."
