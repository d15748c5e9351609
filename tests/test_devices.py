"""Devices, precision, encode batch size and CPU threads (reindexer.devices, reindexer.embedding).

The device decisions take the number of CUDA devices as a parameter, so the multi-GPU
choices are tested here without a GPU; what runs on a GPU is only exercised on one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from reindexer import devices as dev
from reindexer.config import Config, load_config
from reindexer.devices import (
    PRECISION_TOLERANCE,
    PRECISIONS,
    RUNTIME_PRECISIONS,
    available_cores,
    default_batch_size,
    default_precision,
    parse_devices,
    resolve_devices,
    run_precision,
)
from reindexer.embedding import Embedder
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings, fingerprint
from reindexer.vectors import cosine_rows
from reindexer.workspace import Workspace


@pytest.fixture(autouse=True)
def _fresh_runtime():
    before = dev.runtime()
    dev.set_runtime(dev.Runtime())
    yield
    dev.set_runtime(before)


@pytest.mark.parametrize(
    ("device", "devices", "cuda", "mps", "expected"),
    [
        (None, None, 0, False, ("cpu",)),
        (None, None, 0, True, ("mps",)),
        (None, None, 1, False, ("cuda",)),
        (None, None, 4, False, ("cuda:0", "cuda:1", "cuda:2", "cuda:3")),  # every visible GPU
        ("cuda", None, 2, False, ("cuda:0", "cuda:1")),
        ("cuda:1", None, 2, False, ("cuda:1",)),  # a named GPU is the only one used
        ("cpu", None, 2, False, ("cpu",)),  # the CPU path stays one process
        (None, ("cuda:0", "cuda:2"), 3, False, ("cuda:0", "cuda:2")),
        (None, ("cuda",), 2, False, ("cuda:0", "cuda:1")),
        (None, ("cuda",), 1, False, ("cuda",)),
    ],
)
def test_devices_are_chosen_from_what_is_asked_and_what_is_visible(device, devices, cuda, mps, expected):
    assert resolve_devices(device, devices, cuda, mps) == expected


@pytest.mark.parametrize(
    ("devices", "cuda", "needle"),
    [
        (("cuda:2",), 2, "not on this machine"),
        (("cuda:0",), 0, "not on this machine"),
        (("cuda:0", "cpu"), 1, "mix kinds"),
        (("cpu", "mps"), 0, "mix kinds"),
    ],
)
def test_devices_the_machine_lacks_are_refused(devices, cuda, needle):
    with pytest.raises(UsageError, match=needle):
        resolve_devices(None, devices, cuda)


def test_device_lists_are_parsed_and_misspellings_name_the_fix():
    assert parse_devices("cuda:0, cuda:1") == ("cuda:0", "cuda:1")
    assert parse_devices("") is None and parse_devices(None) is None
    for bad, needle in (("gpu0", "unknown device"), ("cuda:x", "unknown device"), ("cuda:0,cuda:0", "twice")):
        with pytest.raises(UsageError, match=needle) as e:
            parse_devices(bad)
        assert e.value.exit_code == 2


def test_defaults_per_device():
    assert default_precision("cuda") == default_precision("cuda:3") == "fp16"
    assert default_precision("cpu") == default_precision("mps") == "fp32"
    assert default_batch_size("cuda:1") == 256 and default_batch_size("cpu") == 64


def test_cores_follow_affinity_and_a_container_quota(tmp_path):
    import os

    affinity = len(os.sched_getaffinity(0))
    assert available_cores(cgroup=tmp_path / "none") == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: two threads, not the host's count
    assert available_cores(cgroup=tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cores(cgroup=tmp_path) == affinity


def test_precision_and_backend_are_part_of_the_version_only_where_vectors_change(minilm_path):
    base = fingerprint(minilm_path)
    # Settings added later stay out of the hash at their defaults: every existing fingerprint holds.
    legacy = {"normalize": False, "truncate_dim": None, "max_seq_length": None, "query_prompt": None,
              "document_prompt": None, "trust_remote_code": False}
    assert ModelSettings().to_dict() == legacy
    assert fingerprint(minilm_path, ModelSettings(precision="fp16")) == base
    assert fingerprint(minilm_path, ModelSettings(precision="fp32")) == base
    prints = {fingerprint(minilm_path, s) for s in (ModelSettings(precision="bf16"), ModelSettings(backend="onnx"),
                                                     ModelSettings(backend="onnx", quantization="avx2"),
                                                     ModelSettings(backend="openvino"))}
    assert len(prints) == 4 and base not in prints
    with pytest.raises(UsageError, match="torch backend"):
        ModelSettings(backend="onnx", precision="bf16")
    with pytest.raises(UsageError, match="not offered"):
        ModelSettings(backend="openvino", quantization="avx2")


def test_runtime_precision_follows_device_and_refuses_a_precision_that_is_a_version():
    assert run_precision(ModelSettings(), "cuda:0") == "fp16"
    assert run_precision(ModelSettings(), "cpu") == "fp32"
    assert run_precision(ModelSettings(), "cuda", "fp32") == "fp32"
    assert run_precision(ModelSettings(precision="bf16"), "cpu", "fp32") == "bf16"  # the version's own wins
    assert run_precision(ModelSettings(backend="onnx"), "cuda") == "fp32"
    with pytest.raises(UsageError, match="model version of its own"):
        run_precision(ModelSettings(), "cuda", "bf16")
    with pytest.raises(UsageError, match="torch backend"):
        run_precision(ModelSettings(backend="onnx"), "cpu", "fp16")


def test_config_keys_and_bad_values(tmp_path, monkeypatch):
    for name in ("REINDEX_DEVICES", "REINDEX_PRECISION", "REINDEX_EMBED_BATCH_SIZE", "REINDEX_THREADS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "reindex.toml").write_text('[defaults]\nprecision = "fp16"\nembed_batch_size = 48\nthreads = 1\n')
    cfg = load_config(cwd=tmp_path)
    assert (cfg.precision, cfg.embed_batch_size, cfg.threads, cfg.devices) == ("fp16", 48, 1, None)
    monkeypatch.setenv("REINDEX_PRECISION", "fp8")
    with pytest.raises(UsageError, match="unknown precision") as e:
        load_config(cwd=tmp_path)
    assert "fp32, fp16, bf16" in (e.value.hint or "")
    monkeypatch.delenv("REINDEX_PRECISION")
    monkeypatch.setenv("REINDEX_EMBED_BATCH_SIZE", "lots")
    with pytest.raises(UsageError, match="valid integer"):
        load_config(cwd=tmp_path)


def test_the_device_default_batch_is_reached_unless_one_is_configured(minilm_path, tmp_path):
    import torch

    assert Embedder(minilm_path, device="cpu").batch_size == default_batch_size("cpu")
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path / 'q'}",
                    state_url=f"sqlite:///{tmp_path}/state.db", embed_batch_size=24, threads=1)
    with Workspace(config):
        e = Embedder(minilm_path, device="cpu")
        assert e.batch_size == 24 and e.threads == 1 and torch.get_num_threads() == 1
        assert Embedder(minilm_path, device="cpu", batch_size=8).batch_size == 8  # the caller's own wins
    dev.set_runtime(dev.Runtime())
    assert Embedder(minilm_path, device="cpu").threads == available_cores()


@pytest.mark.slow
def test_measured_agreement_matches_the_precision_rule(minilm_path, demo_corpus):
    """fp16 stays within the tolerance of fp32 on real text, bf16 does not: the rule in devices.py."""
    texts = [d["text"] for d in demo_corpus.documents[:16]]
    ref = Embedder(minilm_path, device="cpu", precision="fp32").embed_documents(texts)
    for precision in PRECISIONS:
        settings = ModelSettings(precision=precision)
        vectors = Embedder(minilm_path, settings, device="cpu", precision=precision
                           if precision in RUNTIME_PRECISIONS else None).embed_documents(texts)
        worst = float(cosine_rows(ref, vectors).min())
        assert (worst >= PRECISION_TOLERANCE) == (precision in RUNTIME_PRECISIONS), (precision, worst)
        assert worst > 0.99, (precision, worst)  # every precision is still the same model


def test_the_plan_shows_agreement_for_a_precision_other_than_fp32(minilm_path, demo_corpus, tmp_path):
    from reindexer import commands
    from reindexer.sources.spec import SourceSpec
    from tests.plugins.corpus import write_jsonl

    corpus = write_jsonl(tmp_path / "c.jsonl", demo_corpus.documents[:6])
    config = Config(base_dir=tmp_path, store_url=f"qdrant+local:{tmp_path / 'q'}",
                    state_url=f"sqlite:///{tmp_path}/state.db")
    with Workspace(config) as ws:
        plan = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(precision="bf16"),
                             source=SourceSpec(kind="jsonl", location=str(corpus)))
    agreement = plan.estimate["agreement_with_torch"]
    assert agreement["precision"] == "bf16" and agreement["sample"] == 6
    assert 0.99 < agreement["min_cosine"] <= agreement["mean_cosine"] < 1.0
    assert json.loads(plan.to_json())["estimate"]["precision"] == "bf16"
    assert np.isfinite(plan.estimate["docs_per_second"])
