"""benchmarks/throughput.py's pieces that decide what it prints: padding by sort key, targets, the table.

The benchmark itself is run by hand (docs/benchmarks.md); nothing here times anything.
"""

from __future__ import annotations

import pytest

from benchmarks.throughput import long_documents, padding_waste, render, targets


def test_sorting_a_window_by_length_pads_less_than_source_order(minilm_path, demo_corpus):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    texts = [d["text"] for d in demo_corpus.documents[:256]]
    w = padding_waste(texts, tokenizer, batch=16, window=128)
    assert 0 <= w["tokens"] <= w["characters"] < w["unsorted"] < 1


def test_the_long_corpus_is_deterministic_real_text_around_the_models_window(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    docs = long_documents(200, tokenizer)
    assert docs == long_documents(200, tokenizer)
    assert len({d["id"] for d in docs}) == len({d["text"] for d in docs}) == 200
    lengths = sorted(len(ids) for ids in tokenizer([d["text"] for d in docs])["input_ids"])
    assert 230 <= lengths[100] <= 270 and lengths[10] >= 170 and lengths[190] <= 350  # median, p5, p95
    assert 0.3 < sum(n > 256 for n in lengths) / len(lengths) < 0.6  # many cut at the window
    assert all(d["text"].endswith(".") and d["title"] in d["text"] and d["meta"] for d in docs)


def _backend(ratio):
    return {"raw_torch_docs_per_second": 200.0, "raw_docs_per_second": 260.0, "build_docs_per_second": 200.0 * ratio,
            "build_over_raw_torch": ratio, "cosine_to_torch": {"mean": 0.999, "min": 0.99}, "build_seconds": [5.0]}


def _store(ratio):
    return {"build_docs_per_second": 30.0, "build_over_raw_encode": ratio, "raw_insert_docs_per_second": 900.0,
            "build_over_slower_of_encode_and_insert": ratio}


def _long(qdrant, milvus):
    return {"docs": 1000, "tokens": {"p5": 190.0, "p50": 250.0, "p95": 330.0, "mean": 253.2, "over_256": 0.44},
            "estimate": "sample", "raw_encode": {"docs_per_second": 25.0},
            "stores": {"qdrant+local": _store(qdrant), "milvus+lite": _store(milvus)},
            "padding_waste": {"unsorted": 0.07, "characters": 0.04, "tokens": 0.012}}


def _report(device="cpu", ratio=0.96, growth=(400.0, 500.0), noop=(600.0, 25.0), backends=None, long=None):
    store = _store(ratio)
    return {"docs": 1000, "device": device, "batch_size": 64, "rounds": 2,
            "machine": {"cpus_usable": 2, "load_avg_start": [1.0], "load_avg_end": [1.0]},
            "raw_encode": {"docs_per_second": 31.0}, "stores": {"qdrant+local": store},
            "padding_waste": {"unsorted": 0.3, "characters": 0.05, "tokens": 0.04},
            "memory": {"build": [{"docs": 10_000, "peak_rss_mb": growth[0], "seconds": 60, "cpu_seconds": 50},
                                 {"docs": 100_000, "peak_rss_mb": growth[1], "seconds": 600, "cpu_seconds": 500}],
                       "noop": {"docs": 1_000_000, "peak_rss_mb": noop[0], "seconds": noop[1], "cpu_seconds": 20}},
            **({"backends": backends} if backends else {}), **({"long": long} if long else {})}


@pytest.mark.parametrize("report, failed", [
    (_report(), set()),
    (_report(ratio=0.9), {"build qdrant+local"}),
    (_report(device="cuda", ratio=0.9), set()),  # the GPU target is 0.85x the slower of encode and insert
    (_report(growth=(400.0, 600.0)), {"RSS growth 10000 -> 100000"}),
    (_report(noop=(1100.0, 31.0)), {"no-op sync 1000000 RSS", "no-op sync 1000000 time"}),
    # with --backend onnx the CPU build must beat raw torch encode
    (_report(backends={"onnx": _backend(1.3), "openvino": _backend(0.98)}), {"build --backend openvino"}),
    # long texts: 1.0x on Qdrant local, 0.95x on Milvus Lite
    (_report(long=_long(1.0, 0.95)), set()),
    (_report(long=_long(0.99, 0.94)), {"build qdrant+local (long texts)", "build milvus+lite (long texts)"}),
])
def test_targets_fail_exactly_where_a_figure_misses(report, failed):
    result = targets(report)
    assert {name for name, t in result.items() if not t["pass"]} == failed
    report["targets"] = result
    text = render(report)
    assert text.count("FAIL") == len(failed) and "0.04" not in text and "4.0%" in text
    for choice in report.get("backends", {}):
        assert f"--backend {choice}" in text
    if "long" in report:
        assert "median 250, p95 330, 44% past" in text and "long texts: padding in batches" in text
        assert text.count("raw encode ") == 2
