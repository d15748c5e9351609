"""Post-training hooks: reindexer.deploy, the trainer callback, and the webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

import reindexer
import reindexer.hooks
from reindexer import commands
from reindexer.config import Config
from reindexer.demo_corpus import DEMO_FINETUNE
from reindexer.evaluation.report import SCHEMA
from reindexer.model_identity import ModelSettings
from reindexer.report_files import ReportFiles
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace

GATE = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
CONTINUED_STEPS = 3  # trainer steps on top of the session's fine-tune


@pytest.fixture
def webhook():
    """A receiver on loopback that fails its first request, to prove the retries."""
    received: list[dict] = []
    calls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            calls["n"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if calls["n"] == 1:
                self.send_response(503)
                self.end_headers()
                return
            received.append({**body, "auth": self.headers.get("Authorization")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _demo_subset(demo_corpus, folder, n_docs: int):
    """The demo corpus's first ``n_docs`` documents, with the judged queries whose answers are all among them."""
    docs = demo_corpus.documents[:n_docs]
    kept = {d["id"] for d in docs}
    qrels = {q: r for q, r in demo_corpus.qrels.items() if set(r) <= kept}
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": demo_corpus.queries[q]}) + "\n"
                                                  for q in qrels))
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, r in qrels.items() for d, g in r.items()))
    return folder


@pytest.mark.slow
def test_trainer_callback_ends_in_a_gated_cutover_on_milvus_lite(tmp_path, minilm_path, tuned_model_path, demo_corpus,
                                                                 webhook, monkeypatch):
    """A real trainer run fires the callback, which deploys what it trained behind the gate.

    The run continues the session's fine-tune (``tuned_model_path``) for a few steps rather
    than training from scratch: the callback's work (save, register, build, gate, cut over,
    notify) is the same, and the model it deploys wins against the base v1 with margin.
    The collection is the demo corpus's first 300 documents with their 22 judged queries.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    url, received = webhook
    folder = _demo_subset(demo_corpus, tmp_path / "data", 300)
    files = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl", "qrels": folder / "qrels.tsv"}
    store, state = f"milvus+lite:{tmp_path}/vectors.db", f"sqlite:///{tmp_path}/state.db"
    config = Config(base_dir=tmp_path, store_url=store, state_url=state)
    with Workspace(config) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path),
                                         source=SourceSpec(kind="jsonl", location=str(files["corpus"]))))
    monkeypatch.setenv("REINDEX_WEBHOOK_URL", url)
    monkeypatch.setenv("REINDEX_WEBHOOK_TOKEN", "hook-secret")

    model = SentenceTransformer(str(tuned_model_path), device="cpu")
    pairs = Dataset.from_dict({"anchor": [q for q, _ in demo_corpus.train_pairs],
                               "positive": [p for _, p in demo_corpus.train_pairs]})
    callback = reindexer.hooks.ReindexCallback(
        "docs", save_to=tmp_path / "tuned", store=store, state=state, gate=GATE,
        queries=files["queries"], qrels=files["qrels"], train_data="demo train_pairs",
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=CONTINUED_STEPS,
        per_device_train_batch_size=DEMO_FINETUNE["batch_size"], learning_rate=DEMO_FINETUNE["learning_rate"],
        batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none", save_strategy="no", seed=0,
        disable_tqdm=True, run_name="callback-test",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs,
                                         loss=MultipleNegativesRankingLoss(model), callbacks=[callback])
    trainer.train()

    result = callback.result
    assert result is not None and result.decision == "promoted", result.message
    assert result.gate["passed"]
    v1, v2 = result.evaluation["versions"]["v1"], result.evaluation["versions"]["v2"]
    print(f"callback A/B on Milvus Lite: nDCG@10 {v1['ndcg@10']:.4f} -> {v2['ndcg@10']:.4f}")
    assert v2["ndcg@10"] > v1["ndcg@10"]
    with Workspace(config) as ws:
        assert ws.store.resolve("docs") == "docs__v2"
        model_row = ws.state.find_model(result.model)
        assert model_row.run_id == "callback-test" and model_row.train_data == "demo train_pairs"
        assert [e["action"] for e in commands.history(ws, "docs")["events"]][:2] == ["cutover", "gate"]
    assert [e["event"] for e in received] == ["cutover"]
    assert received[0]["to"] == "docs__v2" and received[0]["auth"] == "Bearer hook-secret"
    assert received[0]["gate"]["passed"] is True


@pytest.mark.slow  # builds versions with the real model: left out of make test-fast
def test_deploy_reports_a_refusal_instead_of_raising(tmp_path, minilm_path, demo_corpus):
    folder = _demo_subset(demo_corpus, tmp_path / "data", 120)
    store, state = f"qdrant+local:{tmp_path}/q", f"sqlite:///{tmp_path}/state.db"
    first = reindexer.deploy(minilm_path, "docs", store=store, state=state, source=f"jsonl:{folder / 'corpus.jsonl'}")
    assert first.decision == "promoted" and first.gate is None  # nothing to compare a first version with
    reports = ReportFiles(json=tmp_path / "gate.json", md=tmp_path / "gate.md")
    worse = reindexer.hooks.deploy(minilm_path, "docs", store=store, state=state,
                                   settings=ModelSettings(truncate_dim=16),
                                   gate="ndcg@10 >= 0", queries=folder / "queries.jsonl", qrels=folder / "qrels.tsv",
                                   reports=reports)
    assert worse.decision == "refused" and not worse.promoted
    assert worse.gate["passed"] is False and "FAIL" in " ".join(worse.gate["reasons"])
    # the refused gate's evaluation, written as `reindex apply --report-json/--report-md` writes it
    written = json.loads(reports.json.read_text())
    assert written["schema"] == SCHEMA and written["gate"]["passed"] is False
    assert written == json.loads(json.dumps(worse.apply.to_dict()["report"])) and "## Gate" in reports.md.read_text()
    config = Config(base_dir=tmp_path, store_url=store, state_url=state)
    with Workspace(config) as ws:
        assert ws.store.resolve("docs") == "docs__v1"
        assert ws.state.versions(1)[-1].status == "verified"


def test_webhook_failures_never_fail_the_operation(tmp_path):
    from reindexer.notify import notify

    assert notify("http://127.0.0.1:9/nothing-listens", "cutover", "docs", attempts=2) is False
    assert notify(None, "cutover", "docs") is False
