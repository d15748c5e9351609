"""Issue 23, point 3 as an operator meets it: one `reindex eval --pipelines dense,lexical,hybrid`
answers "does the new model beat BM25, and hybrid with the old model?", and a gate names the
pipeline it judges.

A BEIR-layout corpus is built here (title + text; error codes that only a lexical match finds
reliably), v1 is the packaged MiniLM and v2 a real 64-dimension truncation of it, on Qdrant
local and Milvus Lite. The lexical arm is checked against bm25s run directly with the same
settings and scored by pytrec_eval; the hybrid arm against an RRF fusion computed here.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from reindexer.cli import cli

NAME = "support"
TEMPLATE = "{title}. {text}"
AREAS = ["printer", "router", "scanner", "laptop", "battery", "display", "keyboard", "speaker"]


def write_beir(folder):
    """80 documents: each names an error code and an area; a query asks for one code."""
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(80):
            area = AREAS[i % len(AREAS)]
            f.write(json.dumps({"_id": f"d{i}", "title": f"{area.title()} fault E{4400 + i}",
                                "text": f"When the {area} shows error E{4400 + i}, restart it and check the cable. "
                                        f"Step {i % 5} of the {area} guide covers resetting the settings."}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for j in range(0, 80, 3):
            f.write(json.dumps({"_id": f"q{j}", "text": f"what does error E{4400 + j} mean"}) + "\n")
        for j, area in enumerate(AREAS):
            f.write(json.dumps({"_id": f"a{j}", "text": f"my {area} stopped working"}) + "\n")
    with open(folder / "qrels.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for j in range(0, 80, 3):
            f.write(f"q{j}\td{j}\t2\n")
        for j in range(len(AREAS)):
            for i in range(j, 80, len(AREAS)):
                f.write(f"a{j}\td{i}\t1\n")


def judgements(folder) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries = {}
    for line in (folder / "queries.jsonl").read_text().splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    return queries, qrels


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def state_and_store(folder) -> tuple[str, list[str], list[str], dict[str, str]]:
    """The state database's bytes (hashed), the store's files, collections and aliases: what bad input
    must leave alone."""
    from reindexer.workspace import Workspace

    digest = hashlib.sha256((folder / "state.db").read_bytes()).hexdigest()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "store" in p.parts and p.is_file())
    with Workspace.open() as ws:
        return digest, files, ws.store.list_collections(), ws.store.list_aliases()


@pytest.fixture(
    scope="module",
    params=["qdrant-local", "milvus-lite", pytest.param("milvus-server", marks=pytest.mark.server)],
)
def world(request, tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp(f"hybrid-{request.param}")
    write_beir(folder)
    (folder / "store").mkdir()
    if request.param == "milvus-server":  # the session's 2.3.5 server, which has no BM25 of its own
        from tests.plugins.stores import _drop_new, _names

        store = request.getfixturevalue("milvus_server").url
        request.addfinalizer(lambda keep=_names(store): _drop_new(store, keep))
    elif request.param == "qdrant-local":
        store = f"qdrant+local:{folder}/store/q"
    else:
        store = f"milvus+lite:{folder}/store/m.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k, v in {"REINDEX_STORE": store, "REINDEX_STATE": f"sqlite:///{folder}/state.db",
                     "REINDEX_BATCH_SIZE": "32", "HF_HUB_OFFLINE": "1"}.items():
            mp.setenv(k, v)
        r = invoke("plan", NAME, "--model", str(minilm_path), "--name", "minilm", "--source", "jsonl:corpus.jsonl",
                   "--id-field", "_id", "--text", TEMPLATE, "-o", "p1.json")
        assert r.exit_code == 0, r.output
        assert invoke("--yes", "apply", "p1.json").exit_code == 0
        r = invoke("plan", NAME, "--model", str(minilm_path), "--name", "minilm64", "--truncate-dim", "64",
                   "-o", "p2.json")
        assert r.exit_code == 0, r.output
        # the gate in apply judges the hybrid pipeline: an impossible bar is refused, and says which pipeline
        r = invoke("--yes", "apply", "p2.json", "--gate", "hybrid ndcg@10 >= 0.9", "--queries", "queries.jsonl",
                   "--qrels", "qrels.tsv")
        assert r.exit_code == 6, r.output
        yield folder, r


def test_apply_gates_on_the_hybrid_pipeline(world):
    _, refused = world
    assert "FAIL hybrid ndcg@10 >= 0.9: delta" in refused.stdout
    assert "v2:hybrid" in refused.stdout  # the evaluation behind the gate ran the hybrid arms


def test_one_eval_runs_every_pipeline_and_asks_the_operators_questions(world):
    folder, _ = world
    r = invoke("eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2",
               "--pipelines", "lexical,hybrid", "--per-query", "--report-json", "r.json", "--report-md", "r.md",
               "--report-html", "r.html")
    assert r.exit_code == 0, r.output
    data = json.loads((folder / "r.json").read_text())
    assert data["versions"] == ["v1", "v2", "lexical", "v1:hybrid", "v2:hybrid"]
    assert data["pipelines"]["pipelines"] == ["dense", "lexical", "hybrid"]
    lexical = data["pipelines"]["lexical"]
    assert (lexical["method"], lexical["k1"], lexical["b"], lexical["stemmer"], lexical["stopwords"]) == (
        "lucene", 1.5, 0.75, "english", "en")
    assert data["pipelines"]["fusion"] == {"method": "rrf", "k": 60, "prefetch": 100}
    # the questions: new dense against old dense (the A/B) and old hybrid, new hybrid against old hybrid,
    # and each model's pipeline against BM25 alone
    assert set(data["comparisons"]) == {"v2", "lexical", "v1:hybrid", "v2:hybrid"}
    assert set(data["pairs"]) == {"v2 vs v1:hybrid", "v2:hybrid vs v1:hybrid", "v2 vs lexical",
                                  "v2:hybrid vs lexical", "v1 vs lexical", "v1:hybrid vs lexical"}
    pair = data["pairs"]["v2:hybrid vs v1:hybrid"]["metrics"]["ndcg@10"]
    means = data["metrics"]
    assert pair["delta"] == pytest.approx(means["v2:hybrid"]["ndcg@10"] - means["v1:hybrid"]["ndcg@10"])
    # the codes are found by their exact token: BM25 is near perfect on them
    codes = [i for i, q in enumerate(data["per_query"]["query_ids"]) if q.startswith("q")]
    lexical_ndcg = data["per_query"]["values"]["lexical"]["ndcg@10"]
    assert min(lexical_ndcg[i] for i in codes) == 1.0
    assert "## Pipelines" in (folder / "r.md").read_text()
    html = (folder / "r.html").read_text()
    assert "<h2>Pipelines</h2>" in html and "<svg" in html and "v2:hybrid - v1:hybrid" in html
    assert "the pipelines' questions" in r.stdout and "RRF with k 60" in r.stdout


def test_the_lexical_arm_equals_bm25s_run_directly(world):
    """Scored by pytrec_eval over bm25s's own run: the same numbers as the report's lexical arm."""
    import bm25s
    import pytrec_eval
    import Stemmer

    folder, _ = world
    docs = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    queries, qrels = judgements(folder)
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english"))
    docs.sort(key=lambda d: d["_id"])
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    texts = [f"{d['title']}. {d['text']}" for d in docs]
    retriever.index(tokenizer.tokenize(texts, return_as="tuple", show_progress=False), show_progress=False)
    run = {}
    for qid, text in queries.items():
        ids = tokenizer.tokenize([text], update_vocab=False, return_as="ids", show_progress=False)
        rows, scores = retriever.retrieve(ids, k=len(docs), show_progress=False)
        run[qid] = {docs[int(i)]["_id"]: float(s) for i, s in zip(rows[0], scores[0], strict=True) if s > 0}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)

    r = invoke("--json", "eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1",
               "--pipelines", "lexical", "--per-query", "--at", "10,100")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    values = data["per_query"]["values"]["lexical"]
    for i, qid in enumerate(data["per_query"]["query_ids"]):
        assert values["ndcg@10"][i] == pytest.approx(expected[qid]["ndcg_cut_10"], abs=1e-12), qid
        assert values["recall@100"][i] == pytest.approx(expected[qid]["recall_100"], abs=1e-12), qid


def test_the_hybrid_arm_is_the_rrf_of_dense_and_lexical(world, minilm_path):
    """Fused here from the version's dense run and the lexical run, by the formula, then scored."""
    import pytrec_eval

    from reindexer import ab
    from reindexer.lexical import LexicalIndex
    from reindexer.lookup import managed_collection
    from reindexer.workspace import Workspace

    folder, _ = world
    queries, qrels = judgements(folder)
    expected = {}
    with Workspace.open() as ws:
        lc = managed_collection(ws, NAME)
        for version in ws.state.versions(lc.id):
            dense = ab.searcher_for(ws, version)(list(queries.values()), 100)
            lexical = LexicalIndex(ab.version_texts(ws, lc, version)).search(list(queries.values()), 100)
            run = {}
            for qid, d, lx in zip(queries, dense, lexical, strict=True):
                fused: dict[str, float] = {}
                for hits in (d, lx):
                    ordered = sorted(hits, key=lambda h: (h[1], h[0]), reverse=True)  # trec_eval's order
                    for rank, (doc, _) in enumerate(ordered, start=1):
                        fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
                run[qid] = fused
            scorer = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
            expected[f"v{version.version}:hybrid"] = scorer.evaluate(run)

    r = invoke("--json", "eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2",
               "--pipelines", "hybrid", "--per-query")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(expected) == {"v1:hybrid", "v2:hybrid"}
    for arm, scores in expected.items():
        values = data["per_query"]["values"][arm]["ndcg@10"]
        for i, qid in enumerate(data["per_query"]["query_ids"]):
            assert values[i] == pytest.approx(scores[qid]["ndcg_cut_10"], abs=1e-12), (arm, qid)


def test_a_gate_names_the_pipeline_it_judges(world):
    base = ("eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2")
    r = invoke("--json", *base, "--gate", "hybrid ndcg@10 >= -1 and dense vs lexical ndcg@10 >= 2")
    assert r.exit_code == 6, r.output
    reasons = json.loads(r.stdout)["gate"]["decisions"]["v2"]["reasons"]
    assert reasons[0].startswith("PASS hybrid ndcg@10 >= -1: delta")
    assert reasons[1].startswith("FAIL dense vs lexical ndcg@10 >= 2: delta")
    gate = "dense vs hybrid ndcg@10 >= -1 and hybrid ndcg@10 not significantly worse at p < 0.01"
    r = invoke("--json", *base, "--gate", gate)
    assert r.exit_code in (0, 6), r.output  # whichever the data says; both clauses were judged
    reasons = json.loads(r.stdout)["gate"]["decisions"]["v2"]["reasons"]
    assert "dense vs hybrid ndcg@10" in reasons[0] and "hybrid ndcg@10 not significantly worse" in reasons[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--pipelines", "dense,splade"), "unknown pipeline 'splade'"),
        (("--pipelines", "hybrid+rerank"), "the hybrid+rerank pipeline needs a cross-encoder"),
        (("--gate", "lexical ndcg@10 >= 0"), "does not use the model"),
        (("--gate", "hybrid vs sparse ndcg@10 >= 0"), "expected 'dense' or 'lexical' or 'hybrid'"),
        (("--gate", "hybrid not significantly worse at p < 0.05"), "names none"),
    ],
)
def test_bad_pipelines_and_gates_are_refused_before_anything_changes(world, extra, message):
    folder, _ = world
    before = state_and_store(folder)
    r = invoke("eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2", *extra)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert state_and_store(folder) == before


def test_pipelines_go_with_judged_queries_only(world):
    (world[0] / "log.txt").write_text("printer error\n")
    r = invoke("eval", NAME, "--log", "log.txt", "--pipelines", "hybrid")
    assert r.exit_code == 2 and "--pipelines and --rerank go with judged queries" in r.stderr


def reference_hybrid(ws, lc, version, queries: dict[str, str], depth: int = 100) -> dict[str, list[str]]:
    """The version's hybrid ranking computed here: its dense run and bm25s's, fused by the RRF formula."""
    from reindexer import ab
    from reindexer.lexical import LexicalIndex

    dense = ab.searcher_for(ws, version)(list(queries.values()), depth)
    lexical = LexicalIndex(ab.version_texts(ws, lc, version)).search(list(queries.values()), depth)
    out = {}
    for qid, d, lx in zip(queries, dense, lexical, strict=True):
        fused: dict[str, float] = {}
        for hits in (d, lx):
            ordered = sorted(hits, key=lambda h: (h[1], h[0]), reverse=True)
            for rank, (doc, _) in enumerate(ordered, start=1):
                fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
        out[qid] = [doc for doc, _ in sorted(fused.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    return out


def test_a_cross_encoder_reranks_the_hybrid_top_n(world, cross_encoder_path):
    """The reranked arm is the cross-encoder's order over the hybrid top 20, computed here with
    CrossEncoder.predict, then the rest of the hybrid ranking; scored by pytrec_eval."""
    import pytrec_eval
    from sentence_transformers import CrossEncoder

    from reindexer.lookup import managed_collection
    from reindexer.workspace import Workspace

    folder, _ = world
    queries, qrels = judgements(folder)
    texts = {}
    for line in (folder / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        texts[d["_id"]] = f"{d['title']}. {d['text']}"
    with Workspace.open() as ws:
        lc = managed_collection(ws, NAME)
        v2 = next(v for v in ws.state.versions(lc.id) if v.version == 2)
        hybrid = reference_hybrid(ws, lc, v2, queries)
    model = CrossEncoder(str(cross_encoder_path), local_files_only=True)
    run = {}
    for qid, ranked in hybrid.items():
        head, tail = ranked[:20], ranked[20:]
        scores = model.predict([(queries[qid], texts[d]) for d in head], show_progress_bar=False)
        order = [d for d, _ in sorted(zip(head, scores, strict=True), key=lambda x: (-x[1], x[0]))] + tail
        run[qid] = {d: float(len(order) - i) for i, d in enumerate(order)}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)

    r = invoke("--json", "eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2",
               "--pipelines", "hybrid,hybrid+rerank", "--rerank", str(cross_encoder_path), "--rerank-top", "20",
               "--per-query", "--gate", "hybrid+rerank ndcg@10 >= -1")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["pipelines"]["rerank"] == {"model": str(cross_encoder_path), "top": 20}
    assert {"v2:hybrid+rerank vs v1:hybrid+rerank", "v2:hybrid vs v1:hybrid+rerank",
            "v1:hybrid+rerank vs v1:hybrid"} <= set(data["pairs"])
    assert data["gate"]["decisions"]["v2"]["reasons"][0].startswith("PASS hybrid+rerank ndcg@10 >= -1")
    values = data["per_query"]["values"]["v2:hybrid+rerank"]["ndcg@10"]
    for i, qid in enumerate(data["per_query"]["query_ids"]):
        assert values[i] == pytest.approx(expected[qid]["ndcg_cut_10"], abs=1e-9), qid


def test_a_rerank_folder_that_is_not_a_cross_encoder_is_refused(world, minilm_path, cross_encoder_path):
    base = ("eval", NAME, "--queries", "queries.jsonl", "--qrels", "qrels.tsv", "--versions", "v1,v2")
    r = invoke(*base, "--pipelines", "dense+rerank", "--rerank", str(minilm_path))
    assert r.exit_code == 2 and "is not a cross-encoder" in r.stderr and "BertModel" in r.stderr, r.output
    r = invoke(*base, "--rerank", str(cross_encoder_path))
    assert r.exit_code == 2 and "no pipeline uses it" in r.stderr, r.output
    r = invoke(*base, "--pipelines", "dense+rerank", "--rerank", str(world[0] / "nowhere"))
    assert r.exit_code == 2 and "no config.json" in r.stderr, r.output
