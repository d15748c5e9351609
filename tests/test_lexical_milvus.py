"""Issue 23, point 1 on Milvus: a version's lexical index kept by Milvus's own BM25 function.

Milvus Lite (3.2) and servers from 2.5 compute BM25 themselves: the version gets a text field with
the recorded analyzer, a sparse vector the store fills from it, and the function between them; the
tool writes each document's text there and sends query texts. Kept true through build, sync
(changed and deleted texts), verify --fix, a model change, cut-over and rollback; the Searcher's
dense, lexical and hybrid modes answer from one version. A Milvus 2.3 server, which has no BM25
function, refuses --lexical at plan time with exit 2 naming its version.
"""

from __future__ import annotations

import json

import pytest

from tests.test_lexical_index import NAME, documents, invoke, write

PARAMS = {"kind": "bm25", "engine": "store", "analyzer": {"tokenizer": "standard"}, "k1": 1.2, "b": 0.75,
          "vector": "reindex_bm25"}  # fmt: skip


def texts_of(docs: list[dict]) -> dict[str, str]:
    return {d["_id"]: f"{d['title']}. {d['text']}" for d in docs}


def stored(physical: str) -> dict[str, tuple[dict, dict | None]]:
    """Each point's payload and its BM25 input as the store holds them."""
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:
        return {
            p.doc_id: (p.payload, p.other_vectors.get("reindex_bm25"))
            for page in ws.store.scroll(physical, with_vectors=True)
            for p in page
        }


def assert_true_to_texts(physical: str, docs: list[dict]) -> None:
    points = stored(physical)
    assert {d: bm25 for d, (_, bm25) in points.items()} == {d: {"text": t} for d, t in texts_of(docs).items()}
    for payload, _ in points.values():
        assert "reindex_bm25_text" not in payload and "reindex_bm25" not in payload  # never an application's


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp("lexical-milvus")
    write(folder, documents())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k, v in {
            "REINDEX_STORE": f"milvus+lite:{folder}/m.db",
            "REINDEX_STATE": f"sqlite:///{folder}/state.db",
            "REINDEX_BATCH_SIZE": "16",
            "HF_HUB_OFFLINE": "1",
        }.items():
            mp.setenv(k, v)
        r = invoke(
            "plan",
            NAME,
            "--model",
            str(minilm_path),
            "--name",
            "minilm",
            "--source",
            "jsonl:corpus.jsonl",
            "--id-field",
            "_id",
            "--text",
            "{title}. {text}",
            "--lexical",
            "bm25",
            "-o",
            "p1.json",
        )
        assert r.exit_code == 0, r.output
        assert "BM25 computed by the store" in r.stdout
        r = invoke("--yes", "apply", "p1.json")
        assert r.exit_code == 0, r.output
        yield folder


def test_the_plan_records_the_stores_bm25_and_the_build_writes_every_text(world):
    plan = json.loads((world / "p1.json").read_text())
    assert plan["to_version"]["index_params"]["lexical"] == PARAMS  # no average length: the store keeps it
    assert_true_to_texts(f"{NAME}__v1", documents())
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:
        desc = ws.store._client.describe_collection(f"{NAME}__v1")
        [function] = desc["functions"]
        assert (function["input_field_names"], function["output_field_names"]) == (
            ["reindex_bm25_text"],
            ["reindex_bm25"],
        )
        assert ws.store.describe(f"{NAME}__v1").index_params["lexical"] == PARAMS
    assert "consistent" in invoke("verify", NAME).stdout


def test_modes_answer_from_the_stores_bm25(world):
    from reindexer import Searcher

    with Searcher(NAME) as s:
        lexical = s.search("E5011", k=3, mode="lexical")
        assert [h.doc_id for h in lexical] == ["d11"]  # a code only its own document holds
        assert lexical[0].score > 0 and lexical[0].version == f"{NAME}__v1"
        ranked = s.search("scanner error", k=48, mode="lexical")
        assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
        assert {h.doc_id for h in ranked[:8]} == {f"d{i}" for i in range(2, 48, 6)}  # the scanner's 8 documents
        assert s.search("walrus", k=3, mode="lexical") == []  # no shared term, no answer
        hybrid = s.search("E5011 display", k=5, mode="hybrid")
        assert hybrid[0].doc_id == "d11" and {h.version for h in hybrid} == {f"{NAME}__v1"}
        assert s.search("E5011 display", k=5) == hybrid  # hybrid is the default where a version keeps BM25
        assert len(s.search("E5011", k=3, mode="dense")) == 3
        filtered = s.search("error", k=10, mode="lexical", filter={"title": "Scanner fault E5002"})
        assert [h.doc_id for h in filtered] == ["d2"]


def test_sync_and_verify_fix_keep_the_text_true(world):
    from reindexer import Searcher
    from reindexer.adapters.base import Point
    from reindexer.workspace import Workspace

    docs = documents()
    docs[7]["title"], docs[7]["text"] = "Zebra fault Q7777", "The zebra printer shows Q7777 twice: Q7777."
    docs = [d for d in docs if d["_id"] != "d9"]
    write(world, docs)
    r = invoke("--json", "sync", NAME, "--source", "jsonl:corpus.jsonl", "--id-field", "_id")
    assert r.exit_code == 0, r.output
    assert_true_to_texts(f"{NAME}__v1", docs)
    with Searcher(NAME) as s:
        assert [h.doc_id for h in s.search("Q7777", k=5, mode="lexical")] == ["d7"]
        assert s.search("E5009", k=5, mode="lexical") == []  # the deleted document's code is gone
    # BM25 texts that are not the points' texts (written behind the tool's back; every point, since verify
    # samples): verify finds them, --fix writes each point's own text again.
    with Workspace.open() as ws:
        points = [p for page in ws.store.scroll(f"{NAME}__v1", with_vectors=True) for p in page]
        ws.store.upsert(f"{NAME}__v1", [Point(p.doc_id, p.vector, p.payload, {"reindex_bm25": {"text": "okapi"}})
                                        for p in points])  # fmt: skip
    r = invoke("verify", NAME)
    assert r.exit_code == 7 and "lexical vector is not the one their text makes" in r.stdout + r.stderr, r.output
    assert invoke("verify", NAME, "--fix").exit_code == 0
    assert_true_to_texts(f"{NAME}__v1", docs)
    with Searcher(NAME) as s:
        assert s.search("okapi", k=3, mode="lexical") == []
    assert "consistent" in invoke("verify", NAME).stdout


def test_a_model_change_cut_over_and_rollback_keep_every_version_true(world, minilm_path):
    from reindexer import Searcher

    r = invoke("plan", NAME, "--model", str(minilm_path), "--name", "minilm64", "--truncate-dim", "64", "-o", "p2.json")
    assert r.exit_code == 0, r.output
    assert json.loads((world / "p2.json").read_text())["to_version"]["index_params"]["lexical"] == PARAMS
    assert invoke("--yes", "apply", "p2.json").exit_code == 0
    docs = [json.loads(x) for x in (world / "corpus.jsonl").read_text().splitlines()]
    assert_true_to_texts(f"{NAME}__v2", docs)
    with Searcher(NAME) as s:
        for mode in ("dense", "lexical", "hybrid"):
            assert {h.version for h in s.search("printer error", k=10, mode=mode)} == {f"{NAME}__v2"}
    docs[0]["text"] = "Completely new words: walrus harmonica."
    write(world, docs)
    assert invoke("sync", NAME, "--source", "jsonl:corpus.jsonl", "--id-field", "_id").exit_code == 0
    with Searcher(NAME) as s:
        assert [h.doc_id for h in s.search("walrus harmonica", k=3, mode="lexical")] == ["d0"]
    r = invoke("--yes", "rollback", NAME)  # catches v1 up from the live payload, its BM25 text included
    assert r.exit_code == 0, r.output
    with Searcher(NAME) as s:
        hybrid = s.search("walrus harmonica", k=3, mode="hybrid")
        assert {h.version for h in hybrid} == {f"{NAME}__v1"} and hybrid[0].doc_id == "d0"
    assert_true_to_texts(f"{NAME}__v1", docs)
    assert "consistent" in invoke("verify", NAME).stdout


@pytest.mark.server
def test_a_milvus_server_without_bm25_refuses_lexical_before_anything_is_written(
    tmp_path, minilm_path, monkeypatch, milvus_server
):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, documents(4))
    monkeypatch.setenv("REINDEX_STORE", milvus_server.url)
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    name = f"lex_{tmp_path.name[-8:].replace('-', '_')}"
    r = invoke(
        "plan",
        name,
        "--model",
        str(minilm_path),
        "--source",
        "jsonl:corpus.jsonl",
        "--id-field",
        "_id",
        "--lexical",
        "bm25",
    )
    assert r.exit_code == 2, r.output
    assert "runs Milvus 2.3" in r.stderr and "no BM25 function" in r.stderr and "2.5" in r.stderr
    assert "--pipelines lexical,hybrid" in r.stderr
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:  # nothing was created, recorded or registered
        assert name not in ws.store.list_collections() and ws.state.get_collection(ws.store_url, name) is None


def test_the_stores_hybrid_fusion_is_rrf_of_its_dense_and_bm25_runs(world):
    """Milvus's hybrid_search with RRFRanker(60) over a dense and a BM25 request of 100 each equals RRF
    computed here from the two runs the store returns alone (ties aside: equal fused scores may be
    ordered differently)."""
    from reindexer.embedding import Embedder
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:
        physical = ws.store.resolve(NAME)
        lc = ws.state.get_collection(ws.store_url, NAME)
        model = ws.state.model_of(ws.state.version_by_physical(lc.id, physical))
        embedder = Embedder(model.path, device="cpu")
        for query in ["printer error E5007", "restart the scanner", "cable check for the battery"]:
            vector = embedder.embed_queries([query])[0].tolist()
            dense = ws.store.search(physical, vector, 100)
            lexical = ws.store.search_lexical(physical, "reindex_bm25", {"text": query}, 100)
            fused: dict[str, float] = {}
            for run in (dense, lexical):
                for rank, hit in enumerate(run, start=1):
                    fused[hit.doc_id] = fused.get(hit.doc_id, 0.0) + 1 / (60 + rank)
            got = ws.store.search_hybrid(physical, vector, "reindex_bm25", {"text": query}, 10, rrf_k=60, prefetch=100)
            assert [h.score for h in got] == pytest.approx(sorted(fused.values(), reverse=True)[:10], rel=1e-5)
            assert all(fused[h.doc_id] == pytest.approx(h.score, rel=1e-5) for h in got)
