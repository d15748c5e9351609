"""Issue 23, points 1 and 2 on Qdrant local: a version's stored BM25 vectors kept true through build,
sync (changed and deleted texts), a model change, cut-over and rollback; the Searcher's dense, lexical
and hybrid modes answering from one version (Milvus: tests/test_lexical_milvus.py).

The term weights are checked point by point against the formula computed here from bm25s's tokens,
and the store's lexical scores (Qdrant's IDF) against bm25s's own BM25 over the same texts.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from click.testing import CliRunner

from reindexer.cli import cli

NAME = "kb"
AREAS = ["printer", "router", "scanner", "laptop", "battery", "display"]


def documents(n: int = 48) -> list[dict]:
    return [
        {"_id": f"d{i}", "title": f"{AREAS[i % 6].title()} fault E{5000 + i}",
         "text": f"When the {AREAS[i % 6]} shows error E{5000 + i}, restart it." + " Check the cable." * (i % 4)}
        for i in range(n)
    ]  # fmt: skip


def write(folder, docs) -> None:
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def reference_terms(texts: list[str]) -> list[list[str]]:
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                          show_progress=False)  # fmt: skip


def reference_sparse(text: str, avgdl: float, k1: float = 1.5, b: float = 0.75) -> dict[str, list]:
    """BM25's Lucene term-frequency part per term, indexed by 32 bits of the term's BLAKE2b hash."""
    [terms] = reference_terms([text])
    counts = Counter(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "little") for t in terms)
    norm = k1 * (1 - b + b * len(terms) / avgdl)
    indices = sorted(counts)
    return {"indices": indices, "values": [counts[i] / (counts[i] + norm) for i in indices]}


def stored_points(physical: str) -> dict[str, tuple[str, dict]]:
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:
        return {
            p.doc_id: (f"{p.payload['title']}. {p.payload['text']}", p.other_vectors.get("reindex_bm25"))
            for page in ws.store.scroll(physical, with_vectors=True)
            for p in page
        }


def assert_true_to_texts(physical: str, avgdl: float) -> dict[str, tuple[str, dict]]:
    points = stored_points(physical)
    for doc_id, (text, sparse) in points.items():
        want = reference_sparse(text, avgdl)
        assert sparse["indices"] == want["indices"], doc_id
        assert sparse["values"] == pytest.approx(want["values"], rel=1e-6), doc_id
    return points


def lexical_params(physical: str) -> dict:
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:
        return ws.store.describe(physical).index_params["lexical"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp("lexical")
    write(folder, documents())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k, v in {"REINDEX_STORE": f"qdrant+local:{folder}/q", "REINDEX_STATE": f"sqlite:///{folder}/state.db",
                     "REINDEX_BATCH_SIZE": "16", "HF_HUB_OFFLINE": "1"}.items():
            mp.setenv(k, v)
        r = invoke("plan", NAME, "--model", str(minilm_path), "--name", "minilm", "--source", "jsonl:corpus.jsonl",
                   "--id-field", "_id", "--text", "{title}. {text}", "--lexical", "bm25", "-o", "p1.json")
        assert r.exit_code == 0, r.output
        r = invoke("--yes", "apply", "p1.json")
        assert r.exit_code == 0, r.output
        yield folder


def test_the_build_stores_bm25_vectors_true_to_each_text(world):
    texts = [f"{d['title']}. {d['text']}" for d in documents()]
    avgdl = sum(len(t) for t in reference_terms(texts)) / len(texts)
    plan = json.loads((world / "p1.json").read_text())
    lexical = plan["to_version"]["index_params"]["lexical"]
    assert lexical["avgdl"] == pytest.approx(avgdl, rel=1e-6)
    assert (lexical["kind"], lexical["method"], lexical["k1"], lexical["b"], lexical["stemmer"],
            lexical["stopwords"], lexical["vector"]) == ("bm25", "lucene", 1.5, 0.75, "english", "en", "reindex_bm25")
    assert "avgdl" not in json.dumps(plan["inputs"])  # measured, not drift: edits after planning change it
    assert len(assert_true_to_texts(f"{NAME}__v1", lexical["avgdl"])) == 48
    from reindexer.workspace import Workspace

    with Workspace.open() as ws:  # the store weights by IDF itself
        info = ws.store._client.get_collection(f"{NAME}__v1")
        assert info.config.params.sparse_vectors["reindex_bm25"].modifier.value == "idf"
    assert "consistent" in invoke("verify", NAME).stdout


def test_stored_lexical_scores_are_bm25s_scores(world):
    """The store's IDF times the stored term weights is bm25s's BM25 with the same average length."""
    from reindexer import Searcher
    from reindexer.lexical import LexicalIndex

    texts = [(d["_id"], f"{d['title']}. {d['text']}") for d in documents()]
    index = LexicalIndex(texts)
    queries = ["error E5007 on the printer", "scanner cable", "restart the battery"]
    with Searcher(NAME) as s:
        for query, want in zip(queries, index.search(queries, 10), strict=True):
            got = s.search(query, k=10, mode="lexical")
            assert {h.version for h in got} == {f"{NAME}__v1"}
            assert [h.score for h in got] == pytest.approx([score for _, score in want], rel=1e-5)
            # the same documents above the last score (ties there may be cut differently), by the same scores;
            # among equal scores each side keeps its own order (Qdrant's by point, bm25s's by index row)
            cut = got[-1].score * (1 + 1e-5)
            assert {h.doc_id: h.score for h in got if h.score > cut} == pytest.approx(
                {d: score for d, score in want if score > cut}, rel=1e-5
            )


def test_modes_and_their_refusals(world):
    from reindexer import Searcher
    from reindexer.errors import UsageError

    with Searcher(NAME) as s:
        lexical = s.search("E5011", k=3, mode="lexical")
        assert [h.doc_id for h in lexical] == ["d11"]  # a code only its own document holds
        hybrid = s.search("E5011", k=3)  # the default where the version keeps a lexical index
        assert hybrid[0].doc_id == "d11" and hybrid == s.search("E5011", k=3, mode="hybrid")
        assert len(s.search("E5011", k=3, mode="dense")) == 3
        with pytest.raises(UsageError, match="unknown search mode 'sparse'"):
            s.search("x", mode="sparse")


def test_sync_recomputes_changed_texts_and_drops_deleted_ones(world):
    docs = documents()
    docs[7]["title"], docs[7]["text"] = "Zebra fault Q7777", "The zebra printer shows Q7777 twice: Q7777."
    docs = [d for d in docs if d["_id"] != "d9"]
    write(world, docs)
    r = invoke("--json", "sync", NAME, "--source", "jsonl:corpus.jsonl", "--id-field", "_id")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["versions"]["v1"] == {**json.loads(r.stdout)["versions"]["v1"], "embedded": 1,
                                                        "deleted": 1}
    points = assert_true_to_texts(f"{NAME}__v1", lexical_params(f"{NAME}__v1")["avgdl"])  # the build's avgdl
    assert "d9" not in points and "Q7777" in points["d7"][0]
    from reindexer import Searcher

    with Searcher(NAME) as s:
        assert [h.doc_id for h in s.search("Q7777", k=5, mode="lexical")] == ["d7"]
        assert s.search("E5009", k=5, mode="lexical") == []  # the deleted document's code is gone
        assert "d7" not in [h.doc_id for h in s.search("E5007", k=5, mode="lexical")]
    assert "consistent" in invoke("verify", NAME).stdout


def test_a_model_change_cut_over_and_rollback_keep_every_version_true(world, minilm_path):
    from reindexer import Searcher

    r = invoke("plan", NAME, "--model", str(minilm_path), "--name", "minilm64", "--truncate-dim", "64",
               "-o", "p2.json")
    assert r.exit_code == 0, r.output
    v2_lexical = json.loads((world / "p2.json").read_text())["to_version"]["index_params"]["lexical"]
    assert v2_lexical["avgdl"] != lexical_params(f"{NAME}__v1")["avgdl"]  # measured again: one doc fewer, one changed
    assert invoke("--yes", "apply", "p2.json").exit_code == 0
    # made from v2's own average length, never carried from v1
    assert_true_to_texts(f"{NAME}__v2", v2_lexical["avgdl"])
    # (Qdrant local allows one opener per folder: each Searcher is closed before the next command)
    with Searcher(NAME) as s:
        for mode in ("dense", "lexical", "hybrid"):
            assert {h.version for h in s.search("printer error", k=10, mode=mode)} == {f"{NAME}__v2"}
    # the application writes while v2 is live; rollback catches v1 up, its BM25 vector included
    docs = [json.loads(x) for x in (world / "corpus.jsonl").read_text().splitlines()]
    docs[0]["text"] = "Completely new words: walrus harmonica."
    write(world, docs)
    assert invoke("sync", NAME, "--source", "jsonl:corpus.jsonl", "--id-field", "_id").exit_code == 0
    with Searcher(NAME) as s:
        assert [h.doc_id for h in s.search("walrus harmonica", k=3, mode="lexical")] == ["d0"]
    r = invoke("--yes", "rollback", NAME)  # catches up from the live payload, as applications write
    assert r.exit_code == 0, r.output
    with Searcher(NAME) as s:
        hybrid = s.search("walrus harmonica", k=3, mode="hybrid")
        assert {h.version for h in hybrid} == {f"{NAME}__v1"} and hybrid[0].doc_id == "d0"
    points = assert_true_to_texts(f"{NAME}__v1", lexical_params(f"{NAME}__v1")["avgdl"])
    assert "walrus" in points["d0"][0]
    assert "consistent" in invoke("verify", NAME).stdout


def test_a_version_without_lexical_index_refuses_lexical_modes(tmp_path, minilm_path, monkeypatch):
    from reindexer import Searcher
    from reindexer.errors import UsageError

    monkeypatch.chdir(tmp_path)
    write(tmp_path, documents(4))
    monkeypatch.setenv("REINDEX_STORE", f"qdrant+local:{tmp_path}/q")
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    r = invoke("plan", NAME, "--model", str(minilm_path), "--source", "jsonl:corpus.jsonl", "--id-field", "_id",
               "-o", "p.json")
    assert r.exit_code == 0 and invoke("--yes", "apply", "p.json").exit_code == 0
    with Searcher(NAME) as s:
        assert len(s.search("printer", k=2)) == 2  # dense by default
        with pytest.raises(UsageError, match="keeps no lexical index, so it cannot answer in hybrid mode"):
            s.search("printer", k=2, mode="hybrid")
    # --lexical bm25 on the same model rebuilds (the terms are read again), says why
    r = invoke("--json", "plan", NAME, "--model", str(minilm_path), "--lexical", "bm25")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["mode"] == "full" and "lexical index added" in json.loads(r.stdout)["reason"]


def test_a_searcher_with_a_cross_encoder_reranks_its_top_n(world, cross_encoder_path):
    """Searcher(rerank=...): the cross-encoder's order over the first stage's top 10, its scores on the hits."""
    from sentence_transformers import CrossEncoder

    from reindexer import Searcher

    model = CrossEncoder(str(cross_encoder_path), local_files_only=True)
    query = "the printer shows an error"
    with Searcher(NAME, rerank=cross_encoder_path, rerank_top=10) as s:
        first = s.search(query, k=10, mode="hybrid", rerank=False)
        texts = [f"{h.payload['title']}. {h.payload['text']}" for h in first]
        scores = model.predict([(query, t) for t in texts], show_progress_bar=False)
        want = sorted(zip((h.doc_id for h in first), scores, strict=True), key=lambda x: (-x[1], x[0]))
        got = s.search(query, k=5, mode="hybrid")
        assert [h.doc_id for h in got] == [d for d, _ in want[:5]]
        assert [h.score for h in got] == pytest.approx([float(x) for _, x in want[:5]], rel=1e-5)
        assert {h.version for h in got} == {h.version for h in first}  # one version, both stages
    with Searcher(NAME) as s:
        from reindexer.errors import UsageError

        with pytest.raises(UsageError, match="this Searcher has no reranker"):
            s.search(query, rerank=True)


def test_an_applications_sparse_vectors_are_never_left_stale(tmp_path, minilm_path, monkeypatch):
    """Texts from a file would change without their sparse vectors: sync and plan refuse (exit 2), and
    leave store and state as they were; from the payload (the application's own writes) they run."""
    import numpy as np
    from qdrant_client import QdrantClient, models

    from reindexer.embedding import Embedder

    monkeypatch.chdir(tmp_path)
    docs = documents(6)
    write(tmp_path, docs)
    folder = tmp_path / "q"
    client = QdrantClient(path=str(folder))
    client.create_collection(
        "app", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE),
        sparse_vectors_config={"app-sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )  # fmt: skip
    vectors = Embedder(minilm_path).embed_documents([d["text"] for d in docs])
    client.upsert("app", [
        models.PointStruct(id=i, vector={"": np.asarray(v).tolist(),
                                         "app-sparse": models.SparseVector(indices=[i], values=[1.0])},
                           payload={"text": d["text"]})
        for i, (d, v) in enumerate(zip(docs, vectors, strict=True))])  # fmt: skip
    client.close()
    monkeypatch.setenv("REINDEX_STORE", f"qdrant+local:{folder}")
    monkeypatch.setenv("REINDEX_STATE", f"sqlite:///{tmp_path}/state.db")
    assert invoke("adopt", "app", "--model", str(minilm_path)).exit_code == 0
    before = hashlib.sha256((tmp_path / "state.db").read_bytes()).hexdigest()
    for args in (("sync", "app", "--source", "jsonl:corpus.jsonl", "--id-field", "_id"),
                 ("plan", "app", "--model", str(minilm_path), "--truncate-dim", "64", "--source", "jsonl:corpus.jsonl",
                  "--id-field", "_id")):  # fmt: skip
        r = invoke(*args)
        assert r.exit_code == 2, r.output
        assert "holds the application's sparse vectors (app-sparse)" in r.stderr and "own payload" in r.stderr
    assert hashlib.sha256((tmp_path / "state.db").read_bytes()).hexdigest() == before
    r = invoke("--json", "sync", "app")  # from the payload: the application's texts and vectors, kept
    assert r.exit_code == 0, r.output
