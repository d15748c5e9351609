"""The plan's estimate (issue 26.4): a uniform seeded sample of the whole source, its token lengths, the
interval's arithmetic, and one plan whose JSON and text carry the interval and the sampled lengths."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from reindexer import estimate
from reindexer.cli import cli
from reindexer.sources.base import ScanResult
from reindexer.sources.spec import SourceSpec, open_source


# -- the sample ------------------------------------------------------------------------------
def reservoir(items, k: int, seed: int = estimate.SAMPLE_SEED) -> list:
    """What a source's scan keeps of ``items`` as its sample (the reservoir of ScanResult)."""
    with ScanResult(sample_size=k, sample_seed=seed) as result:
        for item in items:
            result.offer(item)
        return result.sample


def test_the_sample_is_seeded_and_every_position_is_equally_likely():
    assert reservoir(range(1000), 10) == reservoir(range(1000), 10)
    assert reservoir(range(1000), 10, seed=1) != reservoir(range(1000), 10)
    counts: Counter[int] = Counter()
    draws = 4000
    for seed in range(draws):
        picked = reservoir(range(20), 5, seed=seed)
        assert len(picked) == len(set(picked)) == 5
        counts.update(picked)
    expected = draws * 5 / 20  # 1000 a position; a binomial's sd is about 27
    assert all(abs(counts[p] - expected) < 130 for p in range(20)), counts


def test_the_sample_takes_what_a_short_source_gives_in_random_order():
    assert sorted(reservoir(range(5), 10)) == [0, 1, 2, 3, 4]  # fewer than asked: all
    assert reservoir(range(0), 10) == []
    firsts = Counter(reservoir(range(100), 100, seed=seed)[0] for seed in range(300))
    assert len(firsts) > 50  # the whole source kept, yet its order shuffled: any prefix is a sample too


def test_a_source_scan_draws_its_sample_in_the_same_pass(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(300)))
    with open_source(SourceSpec(kind="jsonl", location=str(path))) as src, src.scan(sample=20, seed=3) as scanned:
        assert scanned.count == 300
        texts = [doc.text for doc in scanned.sample]
    assert len(set(texts)) == 20 and any(int(t.split()[1]) >= 100 for t in texts)


def test_a_random_sample_sees_the_corpus_lengths_where_its_first_documents_would_not():
    # a corpus whose first third is short and whose rest mixes short and long texts (one in two long)
    lengths = [12] * 1000 + [12 if i % 2 else 300 for i in range(2000)]
    truth = estimate.token_profile(lengths, 256)
    drawn = estimate.token_profile(reservoir(lengths, 512), 256)
    first = estimate.token_profile(lengths[:512], 256)
    assert first["truncated_share"] == 0 and first["p90"] == 12  # what the first 512 say: all short
    assert truth["truncated_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert drawn["truncated_share"] == pytest.approx(truth["truncated_share"], abs=0.07)
    assert drawn["p90"] == truth["p90"] == 300 and drawn["p50"] == truth["p50"] == 12
    assert drawn["mean"] == pytest.approx(truth["mean"], rel=0.15)


def test_quantiles_match_numpy_and_the_profile_counts_the_texts_cut_at_the_window():
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert estimate.quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    profile = estimate.token_profile([10, 20, 256, 256, 30], 256)
    assert profile == {"sampled": 5, "p50": 30.0, "p90": 256.0, "mean": 114.4, "window": 256, "truncated_share": 0.4}


def test_the_mean_length_band_is_seeded_brackets_the_mean_and_narrows_with_the_sample():
    rng = np.random.default_rng(0)
    small = [int(x) for x in rng.integers(5, 300, 50)]
    large = [int(x) for x in rng.integers(5, 300, 2000)]
    assert estimate.mean_band(small) == estimate.mean_band(small)
    lo_s, hi_s = estimate.mean_band(small)
    lo_l, hi_l = estimate.mean_band(large)
    assert lo_s < 1 < hi_s and lo_l < 1 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # 40 times the sample: about a sixth of the width
    assert estimate.mean_band([7]) == (1.0, 1.0) and estimate.mean_band([7] * 20) == (1.0, 1.0)


# -- the interval's arithmetic ---------------------------------------------------------------
def test_the_interval_with_a_flat_factor_and_with_the_stores_time_per_document():
    band = estimate.TIMING_BAND
    point, low, high = estimate.interval(100.0, (0.9, 1.2), (1.15, 1.0, 1.5), 1000, additive=False)
    assert point == pytest.approx(115.0)
    assert low == pytest.approx(100 * 0.9 * (1 - band) * 1.0)
    assert high == pytest.approx(100 * 1.2 * (1 + band) * 1.5)
    point, low, high = estimate.interval(100.0, (1.0, 1.0), (0.002, 0.001, 0.004), 1000, additive=True)
    assert (point, low, high) == pytest.approx((102.0, 100 * (1 - band) + 1.0, 100 * (1 + band) + 4.0))


def test_the_store_overhead_is_the_time_outside_encode_per_document_of_earlier_runs():
    runs = [
        {"docs": 1000, "seconds": 10.0, "embed_share": 0.9},  # 1 ms a document outside encode
        {"docs": 500, "seconds": 10.0, "embed_share": 0.8},  # 4 ms
        {"docs": 2000, "seconds": 20.0, "embed_share": 0.8},  # 2 ms
    ]
    assert estimate.store_overhead(runs) == pytest.approx((0.002, 0.001, 0.004))
    assert estimate.store_overhead([]) is None


def test_history_gives_the_median_and_the_slowest_and_fastest_runs_at_least_the_timing_band():
    runs = [{"docs_per_second": r} for r in (80.0, 100.0, 125.0)]
    est = estimate.from_history(runs, 1000, "cpu")
    assert est["seconds"] == 10.0 and est["seconds_low"] == 8.0 and est["seconds_high"] == 12.5
    one = estimate.from_history([{"docs_per_second": 100.0}], 1000, "cpu")
    assert (one["seconds_low"], one["seconds"], one["seconds_high"]) == (9.0, 10.0, 11.0)


def test_a_sample_estimate_scales_the_cost_per_token_slot_to_the_corpus_and_says_how():
    timing = estimate.SampleTiming(docs=64, seconds=[0.5, 1.5], slots=[32 * 20, 32 * 100])
    lengths = [20] * 50 + [100] * 50  # mean 60 tokens
    est = estimate.from_sample(timing, lengths, 256, 10_000, "cpu", runs=[])
    per_slot = 2.0 / (32 * 120)
    embed = per_slot * 10_000 * 60 * estimate.PIPELINE_PADDING
    assert est["seconds"] == pytest.approx(embed * estimate.SAMPLE_OVERHEAD, abs=0.051)
    assert est["seconds_low"] < est["seconds"] < est["seconds_high"]
    assert est["overhead"] == "flat" and est["sample_docs"] == 64 and est["tokens"]["p50"] == 60.0
    assert "from a sample of 64 documents" in est["basis"] and "no earlier run on this store" in est["basis"]
    with_store = estimate.from_sample(
        timing, lengths, 256, 10_000, "cpu", runs=[{"docs": 1000, "seconds": 10.0, "embed_share": 0.8}]
    )
    assert with_store["overhead"] == "store history"
    assert with_store["seconds"] == pytest.approx(embed + 10_000 * 0.002, abs=0.051)
    assert "1 earlier run on it" in with_store["basis"]


def test_a_run_is_remembered_for_its_model_and_for_its_store(tmp_path):
    from reindexer.state import StateStore

    state = StateStore(f"sqlite:///{tmp_path}/s.db")
    estimate.record_run(state, "a" * 64, "cpu", "qdrant+local:x", 100, 10.0, 8.0)
    estimate.record_run(state, "b" * 64, "cpu", "qdrant+local:x", 100, 5.0, 4.0)
    estimate.record_run(state, "b" * 64, "cpu", "milvus+lite:y", 100, 5.0, 4.0)
    assert len(estimate.past_runs(state, "b" * 64, "cpu")) == 2
    assert [r["model"] for r in estimate.store_runs(state, "qdrant+local:x", "cpu")] == ["a" * 64, "b" * 64]
    assert estimate.store_runs(state, "qdrant+local:x", "cuda") == []
    assert estimate.store_overhead(estimate.store_runs(state, "milvus+lite:y", "cpu")) == pytest.approx(
        (0.01, 0.01, 0.01)
    )


# -- one plan, end to end --------------------------------------------------------------------
def test_a_plan_states_its_interval_and_the_corpus_lengths_it_sampled(tmp_path, monkeypatch, minilm_path):
    short = "A short note on retrieval."
    long = " ".join(["Dense retrieval encodes every passage of a long abstract into one vector"] * 40)
    # the first hundred are short, then one in two is long: the first texts alone would see none cut
    docs = [{"id": f"d{i}", "text": short if i < 100 or i % 2 else long} for i in range(300)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "REINDEX_STORE": f"qdrant+local:{tmp_path}/q",
        "REINDEX_STATE": f"sqlite:///{tmp_path}/state.db",
        "REINDEX_EMBED_BATCH_SIZE": "16",
        "REINDEX_PROGRESS": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("reindexer.plan_inputs.ESTIMATE_SAMPLE", 120)  # a sample smaller than the corpus
    monkeypatch.setattr("reindexer.estimate.TIMED_MIN", 16)
    args = ["plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{corpus}"]
    r = CliRunner().invoke(cli, ["--json", *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)["estimate"]
    # timed: TIMED_BATCHES encode batches of the build's size (16 here), TIMED_MIN (16) at least
    assert est["method"] == "sample" and est["warmup_docs"] == estimate.WARMUP
    assert est["sample_docs"] == estimate.TIMED_BATCHES * 16
    assert 0 < est["seconds_low"] < est["seconds"] < est["seconds_high"]
    tokens = est["tokens"]
    assert tokens["sampled"] == 120 and tokens["window"] == 256
    assert tokens["p90"] == 256 and tokens["p50"] < 20  # the long third is cut at the window
    assert 0.2 < tokens["truncated_share"] < 0.5
    assert est["storage_bytes"] > 0 and est["overhead"] == "flat"
    assert "index" not in est  # Qdrant indexes as it writes: no index build after the load to add
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "s (between " in r.output and "cut at the window of 256" in r.output


# -- the ANN index built after the load (reindexer.estimate_index) ------------------------------
class _Meta:
    """The state's key-value table, as the index history uses it."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def get_meta(self, key):
        return self.values.get(key)

    def append_meta_list(self, key, entry, keep):
        self.values[key] = json.dumps((json.loads(self.values.get(key, "[]")) + [entry])[-keep:])


class _IndexStore:
    """A store that builds its index after the load: its plan for a build, and a timed small build."""

    def __init__(self, planned, probe_seconds=0.5):
        self.planned, self.probe_seconds, self.timed = planned, probe_seconds, []

    def ann_index_plan(self, dim, metric, index_params, rows):
        return None if self.planned is None else dict(self.planned)

    def time_index_build(self, dim, metric, settings, rows):
        self.timed.append((settings, rows))
        return self.probe_seconds


def _index_ws(planned, **store):
    from types import SimpleNamespace

    return SimpleNamespace(store=_IndexStore(planned, **store), state=_Meta(), store_url="pgvector://db:5432/app")


HNSW_PLAN = {"kind": "hnsw", "m": 16, "ef_construction": 64, "memory": 1, "maintenance_work_mem": 2**26}


def test_no_index_line_where_the_store_indexes_as_it_writes():
    from reindexer.estimate_index import index_estimate

    assert index_estimate(_index_ws(None), 384, "cosine", {}, 10_000) is None


def test_without_history_a_small_build_is_timed_and_scaled_by_the_work_model():
    import math

    from reindexer import estimate_index

    ws = _index_ws({**HNSW_PLAN, "parallel_workers": 2}, probe_seconds=0.5)
    est = estimate_index.index_estimate(ws, 384, "cosine", {}, 100_000)
    ((settings, rows),) = ws.store.timed
    assert rows == estimate_index.PROBE_ROWS and settings["m"] == 16
    scale = 100_000 * math.log2(100_000) / (1000 * math.log2(1000))  # rows x log2(rows), the same m and ef
    assert est["method"] == "measured" and est["seconds"] == pytest.approx(0.5 * scale, rel=0.01)
    assert est["seconds_low"] == pytest.approx(est["seconds"] * (1 - estimate.TIMING_BAND) / 3, rel=0.01)
    assert est["seconds_high"] == pytest.approx(est["seconds"] * (1 + estimate.TIMING_BAND), rel=0.01)
    assert "2 parallel maintenance workers" in est["basis"] and "warning" not in est


def test_with_history_the_recorded_builds_are_scaled_and_the_probe_is_skipped():
    from reindexer import estimate_index

    ws = _index_ws({"kind": "ivfflat", "lists": 100, "probes": 10, "memory": 1, "maintenance_work_mem": 2**26})
    for rows, lists, seconds in ((10_000, 10, 1.0), (20_000, 20, 4.0)):
        estimate_index.record_build(
            ws.state, ws.store_url, {"kind": "ivfflat", "lists": lists, "rows": rows, "dim": 384, "seconds": seconds}
        )
    estimate_index.record_build(ws.state, ws.store_url, {"kind": "hnsw", "m": 16, "ef_construction": 64,
                                                         "rows": 10, "dim": 384, "seconds": 99.0})  # fmt: skip
    est = estimate_index.index_estimate(ws, 384, "cosine", {"ann_index": "ivfflat"}, 100_000)
    assert ws.store.timed == [] and est["method"] == "history" and "2 earlier ivfflat builds" in est["basis"]
    # rows x (lists + IVF_ROW_WORK): 100,000 x 116 against 10,000 x 26 and 20,000 x 36
    scaled = sorted([1.0 * 100_000 * 116 / (10_000 * 26), 4.0 * 100_000 * 116 / (20_000 * 36)])
    assert est["seconds"] == pytest.approx(sum(scaled) / 2, rel=0.01)
    # the interval: the smallest and largest of them (wider than ±TIMING_BAND here)
    assert est["seconds_low"] == pytest.approx(scaled[0], rel=0.01)
    assert est["seconds_high"] == pytest.approx(scaled[1], rel=0.01)


def test_an_hnsw_graph_past_maintenance_work_mem_is_slower_and_said_so():
    from reindexer import estimate_index

    fits = _index_ws({**HNSW_PLAN, "memory": 2**26}).store.planned
    spills = {**HNSW_PLAN, "memory": 2**28, "over_memory": "slows"}  # four times the memory: a quarter fits
    assert estimate_index.memory_factor({**fits, "rows": 1, "dim": 1}) == 1.0
    factor = estimate_index.memory_factor(spills)
    assert factor == pytest.approx(0.25 + 0.75 * estimate_index.ONDISK_SLOWDOWN)
    est = estimate_index.index_estimate(_index_ws(spills), 384, "cosine", {}, 100_000)
    warning = est["warning"]
    assert "past about 25,000 rows" in warning and "REINDEX_PG_MAINTENANCE_WORK_MEM=282MB" in warning
