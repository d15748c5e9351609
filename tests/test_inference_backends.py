"""ONNX and OpenVINO backends: another model version, exported offline into a folder the tool owns.

The export tests need the backend's extra (reindexer[onnx], reindexer[openvino]) and skip
without it; the refusal when it is missing runs everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest
from click.testing import CliRunner

from reindexer.cli import cli
from reindexer.embedding import Embedder
from reindexer.model_identity import ModelSettings, export_source, files_signature, fingerprint
from reindexer.runtimes import CHOICES, default_quantization, export_folder, parse_runtime
from reindexer.vectors import cosine_rows


def _installed(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


ONNX = _installed("onnxruntime", "optimum.onnxruntime")
OPENVINO = _installed("openvino", "optimum.intel")


def test_backend_choices_parse_to_backend_and_quantisation():
    assert parse_runtime(None) == ("torch", None)
    assert parse_runtime("onnx") == ("onnx", None)
    assert parse_runtime("onnx-int8") == ("onnx", default_quantization())
    assert parse_runtime("OpenVINO") == ("openvino", None)
    assert set(CHOICES) == {"torch", "onnx", "onnx-int8", "openvino"}


def test_exports_live_outside_the_model_folder_keyed_by_its_files(minilm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("REINDEX_EXPORTS", str(tmp_path / "exports"))
    source = export_source(minilm_path, ModelSettings())
    onnx = export_folder(minilm_path, ModelSettings(backend="onnx"), *source)
    int8 = export_folder(minilm_path, ModelSettings(backend="onnx", quantization="avx2"), *source)
    assert onnx.parent == int8.parent == tmp_path / "exports" and onnx != int8
    assert export_folder(minilm_path, ModelSettings(backend="onnx"), *source) == onnx


@pytest.mark.skipif(ONNX and OPENVINO, reason="both backends are installed: nothing to refuse")
def test_a_missing_backend_is_refused_before_any_write(minilm_path, tmp_path, monkeypatch, demo_corpus):
    from tests.plugins.corpus import write_jsonl

    backend = "openvino" if not OPENVINO else "onnx"
    monkeypatch.chdir(tmp_path)
    corpus = write_jsonl(tmp_path / "c.jsonl", demo_corpus.documents[:8])
    runner = CliRunner()
    state = tmp_path / ".reindex" / "state.db"
    first = runner.invoke(cli, ["model", "register", str(minilm_path)])
    assert first.exit_code == 0, first.output
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    result = runner.invoke(cli, ["plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{corpus}",
                                 "--backend", backend])
    assert result.exit_code == 2, result.output
    assert f"reindexer[{backend}]" in result.output and "Traceback" not in result.output
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before


@pytest.mark.skipif(not ONNX, reason="pip install 'reindexer[onnx]' (optimum-onnx, onnxruntime)")
@pytest.mark.parametrize("quantization", [None, default_quantization()], ids=["onnx", "onnx-int8"])
def test_onnx_is_exported_offline_and_agrees_with_torch(minilm_path, tmp_path, monkeypatch, quantization,
                                                        demo_corpus):
    monkeypatch.setenv("REINDEX_EXPORTS", str(tmp_path / "exports"))
    signature = files_signature(minilm_path)
    settings = ModelSettings(backend="onnx", quantization=quantization)
    texts = [d["text"] for d in demo_corpus.documents[:16]]
    vectors = Embedder(minilm_path, settings, device="cpu").embed_documents(texts)
    reference = Embedder(minilm_path, device="cpu").embed_documents(texts)
    floor = 0.98 if quantization else 0.9999
    assert float(cosine_rows(reference, vectors).min()) > floor
    assert files_signature(minilm_path) == signature  # the user's folder is never written to
    done = json.loads((export_folder(minilm_path, settings, *export_source(minilm_path, settings))
                       / "reindex-export.json").read_text())
    assert done["backend"] == "onnx" and done["quantization"] == quantization
    assert fingerprint(minilm_path, settings) != fingerprint(minilm_path)


@pytest.mark.skipif(not OPENVINO, reason="pip install 'reindexer[openvino]' (optimum-intel, openvino)")
def test_openvino_is_exported_offline_and_agrees_with_torch(minilm_path, tmp_path, monkeypatch, demo_corpus):
    monkeypatch.setenv("REINDEX_EXPORTS", str(tmp_path / "exports"))
    texts = [d["text"] for d in demo_corpus.documents[:16]]
    vectors = Embedder(minilm_path, ModelSettings(backend="openvino"), device="cpu").embed_documents(texts)
    reference = Embedder(minilm_path, device="cpu").embed_documents(texts)
    assert float(cosine_rows(reference, vectors).min()) > 0.9999


def test_dynamic_int8_verifies_against_its_own_floor_and_others_against_099():
    from reindexer.build.verify import VerifyReport
    from reindexer.runtimes import reembed_min_cosine

    assert reembed_min_cosine(ModelSettings()) == reembed_min_cosine(ModelSettings(backend="openvino")) == 0.99
    assert reembed_min_cosine(ModelSettings(backend="onnx", quantization="avx2")) == 0.97
    report = VerifyReport(store_count=4, ledger_count=4, source_count=None, sample_size=4, sample_min_cosine=0.983)
    assert not report.ok and "needs 0.99" in report.problems()[0]
    report.sample_floor = 0.97
    assert report.ok and report.to_dict()["sample_floor"] == 0.97


@pytest.mark.skipif(not ONNX, reason="pip install 'reindexer[onnx]' (optimum-onnx, onnxruntime)")
@pytest.mark.parametrize("quantization", [None, default_quantization()], ids=["onnx", "onnx-int8"])
def test_an_onnx_build_verifies_cuts_over_and_is_searched_with_its_own_backend(
    minilm_path, tmp_path, monkeypatch, quantization, demo_corpus
):
    # int8's vectors depend on their batch: the build's batches and verification's re-embedded sample
    # differ (0.98 here), which a 0.99 floor refused.
    from reindexer import commands
    from reindexer.config import Config
    from reindexer.searcher import Searcher
    from reindexer.sources.spec import SourceSpec
    from reindexer.workspace import Workspace
    from tests.plugins.corpus import write_jsonl

    monkeypatch.setenv("REINDEX_EXPORTS", str(tmp_path / "exports"))
    settings = ModelSettings(backend="onnx", quantization=quantization)
    corpus = write_jsonl(tmp_path / "c.jsonl", demo_corpus.documents[:48])
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path}/q", state_url=f"sqlite:///{tmp_path}/s.db",
                    batch_size=16, embed_batch_size=16)
    with Workspace(config) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), settings=settings,
                             source=SourceSpec(kind="jsonl", location=str(corpus)))
        result = commands.apply(ws, plan)
        assert result.cut_over and result.verification["ok"], result.verification
        assert result.verification["sample_floor"] == (0.97 if quantization else 0.99)
        searcher = Searcher("docs", workspace=ws)
        try:
            top = searcher.search(demo_corpus.documents[5]["text"], k=3)
        finally:
            searcher.close()
        assert top[0].doc_id == demo_corpus.documents[5]["id"]
