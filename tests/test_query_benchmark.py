"""The query-side benchmark runs and reports; its latency targets are checked by the benchmark itself.

No timing is asserted here: a shared CI machine cannot hold a latency target, and
benchmarks/query.py prints ratios measured side by side in one run instead.
"""

from __future__ import annotations

import json
import time

import pytest

from benchmarks import query as qb


def test_percentiles_and_summary():
    xs = [float(i) for i in range(1, 101)]
    assert qb.percentile(xs, 50) == pytest.approx(50.5)
    assert qb.percentile(xs, 99) == pytest.approx(99.01)
    assert qb.percentile([], 99) is None
    s = qb.summary([3.0, 1.0, 2.0])
    assert (s["n"], s["p50"], s["max"]) == (3, 2.0, 3.0)
    assert qb.summary([])["p99"] is None
    assert qb.ratio(2.0, 1.0) == 2.0 and qb.ratio(None, 1.0) is None and qb.ratio(1.0, 0.0) is None


def test_open_loop_keeps_its_schedule_counts_failures_and_runs_events():
    assert qb.poisson_arrivals(20, 2, seed=1) == qb.poisson_arrivals(20, 2, seed=1)
    expected = len(qb.poisson_arrivals(50, 0.6, seed=3))
    fired = []

    def call(q):
        time.sleep(0.002)
        if q == "bad":
            raise RuntimeError("boom")
        return q.upper()

    samples, records, start = qb.open_loop(call, ["a", "bad"], rate=50, seconds=0.6, seed=3, workers=4,
                                           events=[(0.3, "flip", lambda: fired.append(1) or "done")])
    assert len(samples) == expected
    assert all(s.latency_ms >= s.service_ms > 0 for s in samples)
    assert {s.info for s in samples if s.ok} <= {"A"}
    assert all(s.error == "RuntimeError: boom" for s in samples if not s.ok)
    assert fired == [1] and records[0]["event"] == "flip" and records[0]["ok"] and records[0]["result"] == "done"
    assert records[0]["at"] >= 0.3 and start > 0

    closed = qb.closed_loop(lambda q: time.sleep(0.001), ["x"], seconds=0.2, clients=2)
    assert closed["requests"] > 10 and closed["errors"] == 0 and closed["throughput_rps"] > 0


def test_overlap_marks_queries_that_met_shadow_work():
    s = [qb.Sample(at=0.0, latency_ms=10, service_ms=10, ok=True, done=0.01),
         qb.Sample(at=1.0, latency_ms=10, service_ms=10, ok=True, done=1.01),
         qb.Sample(at=2.0, latency_ms=10, service_ms=10, ok=True, done=2.01)]
    start = 100.0
    assert qb._overlaps(s, start, [(101.005, 101.5)]) == [False, True, False]
    assert qb._overlaps(s, start, []) == [False, False, False]


def _report(overhead=1.02, mirror=(1.01, 1.30), cut=(1.2, 2.5), failed=0):
    ms = {"n": 10, "p50": 10.0, "p90": 11.0, "p99": 12.0, "mean": 10.0, "max": 13.0}
    configs = {}
    for (name, sample), r in zip(qb.MIRROR_CONFIGS, (1.0, mirror[0], mirror[1], 1.01), strict=True):
        configs[name] = {"sample": sample, "open_loop_ms": ms, "p50_ratio": 1.0, "p99_ratio": r,
                         "mirror_counts": None if sample == 0 else {"mirrored": 5, "dropped": 0}}
    report = {
        "docs": 100, "store": "qdrant+local",
        "machine": {"nproc": 2, "cpu_count": 2, "cpu_model": "test CPU", "torch_threads": 2,
                    "load_1min": {"median": 1.0, "min": 0.5, "max": 2.0, "samples": 3}},
        "overhead": {"backend": "qdrant", "physical": "docs__v1", "queries": 10, "k": 10, "searcher_ms": ms,
                     "direct_ms": ms, "direct_aa_ms": ms, "aa_p50_ratio": 1.0, "same_ranking": 10,
                     "direct_encode_ms": ms, "direct_search_ms": ms, "p50_ratio": overhead,
                     "p99_ratio": 1.0, "paired_ratio_median": 1.0, "paired_overhead_ms_median": 0.1},
        "mirroring": {"rate_qps": 16, "rounds": 1, "block_seconds": 1, "configs": configs},
        "cutover": {"rate_qps": 16, "window_s": 10, "refresh_s": 1.0, "steady_ms": ms, "queries": 20,
                    "failed": failed, "mixed_answers": 0, "live_after": "docs__v1",
                    "windows": {name: {"ms": ms, "p99_ratio": r, "failed": 0, "event_seconds": 0.1,
                                       "switch_lag_s": 0.5}
                                for name, r in zip(("cutover", "rollback"), cut, strict=True)}},
        "serve": {"status": qb.SERVE_SKIPPED},
    }
    report["targets"] = qb.check_targets(report)
    report["pass"] = all(c["pass"] for c in report["targets"].values())
    return report


def test_targets_and_render_mark_a_missed_target():
    report = _report()
    assert report["targets"]["overhead_p50"]["pass"] and report["targets"]["mirror_0.1_p99"]["pass"]
    assert not report["targets"]["mirror_1.0_p99"]["pass"] and not report["targets"]["rollback_p99"]["pass"]
    assert not report["pass"]
    text = qb.render(report)
    assert "Searcher p50 / direct p50" in text and "1.020x  PASS" in text
    assert "live p99, mirror 1.0 / none" in text and "1.300x  FAIL" in text
    assert "4. reindex serve: skipped: reindex serve not installed" in text
    assert text.rstrip().endswith("RESULT: FAIL")
    good = _report(mirror=(1.0, 1.04), cut=(1.5, 1.9))
    assert good["pass"] and qb.render(good).rstrip().endswith("RESULT: PASS")
    assert not _report(failed=1, mirror=(1.0, 1.0), cut=(1.0, 1.0))["pass"]


def test_cli_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        qb.parse_args(["--docs", "5"])
    args = qb.parse_args(["--concurrency", "1,2", "--store", "milvus+lite"])
    assert args.concurrency == [1, 2] and args.store == "milvus+lite"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, minilm_path):
    """One in-process run of parts 1-3 at a tiny size; its work folder (store, state) is kept."""
    import torch

    work = tmp_path_factory.mktemp("bench-query") / "work"
    args = qb.parse_args(["--docs", "30", "--queries", "10", "--rate", "20", "--live-seconds", "0.4",
                          "--rounds", "1", "--closed-seconds", "0.2", "--window", "0.6", "--load-every", "1",
                          "--max-utilisation", "0", "--torch-threads", "1", "--skip-serve",
                          "--workdir", str(work)])
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REINDEX_PROGRESS", "0")
        report = qb.run(args)
    assert torch.get_num_threads() == threads  # run() leaves the process-wide setting as it found it
    return report, work


@pytest.mark.slow
def test_benchmark_runs_end_to_end_at_a_tiny_size(tiny_run):
    report, _ = tiny_run
    json.dumps(report, default=str)  # the --json report is serialisable

    assert report["build"]["dims"] == {"docs__v1": 384, "docs__v2": 128}
    assert report["machine"]["torch_threads"] == 1 and len(report["machine"]["contention_probe"]) >= 1
    assert report["build"]["points"] == {"docs__v1": 30, "docs__v2": 30}
    ov = report["overhead"]
    assert ov["same_model_object"] and ov["queries"] == 10 and ov["p50_ratio"] > 0 and ov["aa_p50_ratio"] > 0
    assert ov["same_ranking"] == 10  # the Searcher ranks exactly as the direct path does
    assert set(ov["breakdown"]) == {"model.encode", "Embedder.embed_queries", "client search (raw)",
                                    "adapter store.search", "Searcher.search"}
    mi = report["mirroring"]["configs"]
    assert set(mi) == {name for name, _ in qb.MIRROR_CONFIGS}
    assert mi["none"]["mirror_counts"] is None and mi["none"]["p99_ratio"] == pytest.approx(1.0)
    assert mi["sample 1.0"]["shadow_work_ms"]["n"] == mi["sample 1.0"]["mirror_counts"]["mirrored"]
    full = mi["sample 1.0"]["mirror_counts"]
    assert full["offered"] == mi["sample 1.0"]["open_loop_ms"]["n"]
    assert full["mirrored"] + full["dropped"] + full["no_shadow"] + full["failed"] == full["offered"]
    assert full["mirrored"] > 0  # the built v2 shadow was found and searched
    co = report["cutover"]
    assert co["failed"] == 0 and co["mixed_answers"] == 0 and co["live_after"] == "docs__v1"
    assert [e["event"] for e in co["events"]] == ["cutover", "rollback"] and all(e["ok"] for e in co["events"])
    assert set(co["windows"]) == {"cutover", "rollback"}
    assert report["serve"] == {"status": "skipped (--skip-serve)"}
    assert set(report["targets"]) == {"overhead_p50", "mirror_0.1_p99", "mirror_1.0_p99", "cutover_p99",
                                      "rollback_p99", "failed"}
    text = qb.render(report)
    for needle in ("1. Searcher.search vs direct", "A/A control", "2. live latency with shadow mirroring",
                   "3. cut-over v1 -> v2", "4. reindex serve: skipped", "targets:", "RESULT: "):
        assert needle in text, text


@pytest.mark.slow
def test_serve_part_drives_reindex_serve_on_loopback(tiny_run):
    why = qb.serve_available()
    if why is not None:
        pytest.skip(why)
    report, work = tiny_run
    store_url = qb.store_url_for("qdrant+local", work)
    serve = qb.bench_serve(work, store_url, f"sqlite:///{work / 'state.db'}", qb.query_texts(), [1, 2],
                           seconds=0.3, rounds=1, torch_threads=1)
    assert serve["status"] == "measured" and set(serve["levels"]) == {"1", "2"}
    assert all(lv["requests"] > 0 and lv["errors"] == 0 for lv in serve["levels"].values())
    assert "--preload docs" in serve["command"] and "127.0.0.1" in serve["command"]
    text = qb.render({**report, "serve": serve})
    assert "4. reindex serve on loopback" in text and "req/s" in text
