"""The ANN index of a pgvector version (issue 24, point 2): HNSW or IVFFlat, built after the bulk load,
recorded in the catalog, searched with its recorded settings, refused where a backend cannot build it,
and its build time on a line of its own in the plan's estimate and the apply's report.

Store-level tests run on the session's PostgreSQL server (``pgvector_server``); the plan and apply
test on a tiny corpus with the real model, once, there too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

from reindexer import estimate_index  # noqa: E402
from reindexer.adapters import CollectionSpec, Point, open_store  # noqa: E402
from reindexer.adapters.metadata import validate_spec  # noqa: E402
from reindexer.adapters.pgvector import PgvectorBackend  # noqa: E402
from reindexer.adapters.pgvector.layout import ann_settings, build_memory, ivfflat_lists  # noqa: E402
from reindexer.adapters.pgvector.store import TableStore  # noqa: E402
from reindexer.cli import cli  # noqa: E402
from reindexer.errors import BackendError, UsageError  # noqa: E402


def unit(i: int, dim: int = 4) -> list[float]:
    v = [0.01] * dim
    v[i % dim] = 1.0 + i / 10_000  # distinct points, four clusters
    return v


@pytest.fixture
def server(empty_pgvector_server):
    return empty_pgvector_server


def index_defs(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))]


# -- the settings ---------------------------------------------------------------------------
def test_ivfflat_lists_and_probes_follow_pgvectors_advice():
    assert [ivfflat_lists(n) for n in (0, 999, 2500, 1_000_000, 4_000_000)] == [1, 1, 2, 1000, 2000]
    assert ivfflat_lists(10**10) == 32768  # pgvector's most lists
    assert ann_settings({"ann_index": "ivfflat"}, 100_000) == {"kind": "ivfflat", "lists": 100, "probes": 10}
    assert ann_settings({"ann_index": "ivfflat", "ivf_lists": 9, "ivf_probes": 20}, 5) == {
        "kind": "ivfflat",
        "lists": 9,
        "probes": 9,  # a query cannot scan more lists than there are
    }
    assert ann_settings({"hnsw_m": 8}, 10) == {"kind": "hnsw", "m": 8, "ef_construction": 64}


def test_index_settings_are_checked_and_other_backends_refuse_ivfflat():
    def check(params, kinds=("hnsw",), backend="qdrant"):
        validate_spec(CollectionSpec("docs__v1", dim=4, index_params=params), kinds, backend)

    pgvector = PgvectorBackend.ann_indexes
    check({"ann_index": "ivfflat", "ivf_lists": 10, "ivf_probes": 3}, pgvector, "pgvector")
    with pytest.raises(UsageError) as err:
        check({"ann_index": "ivfflat"})
    assert "qdrant builds no ivfflat index (it builds hnsw)" in str(err.value) and "--ann-index" in err.value.hint
    with pytest.raises(UsageError) as err:
        check({"ivf_lists": 10}, pgvector)
    assert "ivf_lists belongs to another ANN index than hnsw" in str(err.value)
    assert "--ann-index ivfflat" in err.value.hint
    with pytest.raises(UsageError, match="hnsw_m belongs to another ANN index than ivfflat"):
        check({"ann_index": "ivfflat", "hnsw_m": 8}, pgvector)
    with pytest.raises(UsageError, match="ivf_probes 9 is more than ivf_lists 4"):
        check({"ann_index": "ivfflat", "ivf_lists": 4, "ivf_probes": 9}, pgvector)
    with pytest.raises(UsageError, match="ann_index must be one of hnsw, ivfflat"):
        check({"ann_index": "diskann"}, pgvector)
    with pytest.raises(UsageError, match="ivf_lists must be a positive integer"):
        check({"ann_index": "ivfflat", "ivf_lists": 0}, pgvector)
    with pytest.raises(UsageError, match="above 32768"):
        PgvectorBackend().validate_index_params({"ann_index": "ivfflat", "ivf_lists": 40_000})


def test_build_memory_matches_pgvectors_own_accounting():
    # pgvector 0.6: "memory required is 24 MB" for 20,000 rows of 384 dimensions and 200 lists (measured here);
    # "hnsw graph no longer fits into maintenance_work_mem after 1864 tuples" at 4 MB, 384 dimensions, m 16
    ivf = build_memory({"kind": "ivfflat", "lists": 200}, 384, 20_000)
    assert ivf // 2**20 + 1 == 24
    assert build_memory({"kind": "ivfflat", "lists": 50}, 128, 20_000) // 2**20 + 1 == 8  # "is 8 MB"
    assert build_memory({"kind": "ivfflat", "lists": 1000}, 64, 60_000) // 2**20 + 1 == 209  # "is 209 MB"
    per_element = build_memory({"kind": "hnsw", "m": 16, "ef_construction": 64}, 384, 1)
    assert abs(4 * 2**20 / per_element - 1864) < 1864 * 0.05


# -- the store ------------------------------------------------------------------------------
def test_ivfflat_is_built_after_the_load_recorded_and_searched_with_its_probes(server):
    with open_store(server.url()) as s:
        s.create_collection(CollectionSpec("docs__v1", dim=4, index_params={"ann_index": "ivfflat"}))
        s.upsert("docs__v1", [Point(f"d{i}", unit(i), {"lang": "en" if i % 2 else "de"}) for i in range(2500)])
        conn = s._client
        assert not any("ivfflat" in d for d in index_defs(conn, "docs__v1"))  # not while loading
        assert s.describe("docs__v1").ann_index == {}
        s.finish_writes("docs__v1")
        s.finish_writes("docs__v1")  # once built, a later pass leaves it
        (ivf,) = [d for d in index_defs(conn, "docs__v1") if "USING ivfflat" in d]
        assert "vector_cosine_ops" in ivf and "lists='2'" in ivf  # 2,500 rows / 1000
        built = s.describe("docs__v1").ann_index
        assert {k: built[k] for k in ("kind", "lists", "probes", "rows", "dim")} == {
            "kind": "ivfflat",
            "lists": 2,
            "probes": 1,
            "rows": 2500,
            "dim": 4,
        }
        assert built["seconds"] >= 0 and built["built_at"] and built["maintenance_work_mem"] > 0
        assert "reindex.ann_index" not in s.describe("docs__v1").metadata  # the tool's own key, kept apart

        s.set_alias("docs", "docs__v1")
        hits = s.search("docs", unit(3), k=5)
        assert len(hits) == 5
        assert conn.execute("SHOW ivfflat.probes").fetchone()[0] == "1"
        s.search("docs", unit(3), k=5, where={"lang": "en"})
        assert conn.execute("SHOW ivfflat.probes").fetchone()[0] == "2"  # four times, at most the lists


def test_ivfflat_with_the_operators_lists_and_probes_finds_the_nearest(server):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((400, 8))
    query = rng.standard_normal(8)
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    exact = [f"d{i}" for i in np.argsort(-cosine)[:5]]
    with open_store(server.url()) as s:
        s.create_collection(
            CollectionSpec("docs__v1", dim=8, index_params={"ann_index": "ivfflat", "ivf_lists": 4, "ivf_probes": 4})
        )
        s.upsert("docs__v1", [Point(f"d{i}", v.tolist(), {}) for i, v in enumerate(vectors)])
        s.finish_writes("docs__v1")
        assert "lists='4'" in next(d for d in index_defs(s._client, "docs__v1") if "ivfflat" in d)
        s._client.execute("SET enable_seqscan = off")  # the index answers, not a scan
        hits = s.search("docs__v1", query.tolist(), k=5)
        assert [h.doc_id for h in hits] == exact  # every list probed: exact
        assert s._client.execute("SHOW ivfflat.probes").fetchone()[0] == "4"


def test_hnsw_builds_are_recorded_too(server):
    with open_store(server.url()) as s:
        s.create_collection(CollectionSpec("docs__v1", dim=4, index_params={"hnsw_m": 8}))
        s.upsert("docs__v1", [Point(f"d{i}", unit(i), {}) for i in range(50)])
        s.finish_writes("docs__v1")
        built = s.describe("docs__v1").ann_index
        assert (built["kind"], built["m"], built["ef_construction"], built["rows"]) == ("hnsw", 8, 64, 50)
        assert any("USING hnsw" in d for d in index_defs(s._client, "docs__v1"))


def test_the_plan_of_a_build_reads_the_memory_it_will_have_and_a_timed_build_leaves_nothing(server, monkeypatch):
    monkeypatch.setenv("REINDEX_PG_MAINTENANCE_WORK_MEM", "2MB")
    with open_store(server.url()) as s:
        planned = s.ann_index_plan(384, "cosine", {"ann_index": "ivfflat"}, 1_000_000)
        assert planned is not None
        assert (planned["kind"], planned["lists"], planned["probes"]) == ("ivfflat", 1000, 32)
        assert planned["maintenance_work_mem"] == 2 * 2**20 and planned["over_memory"] == "fails"
        assert planned["memory"] > 200 * 2**20  # 50,000 samples of 384 dimensions and 1,000 bounds each
        with pytest.raises(UsageError) as err:
            estimate_index.check_memory(planned, 1_000_000)
        assert "REINDEX_PG_MAINTENANCE_WORK_MEM=" in err.value.hint and "--ivf-lists" in err.value.hint
        hnsw = s.ann_index_plan(384, "cosine", {}, 100_000)
        assert hnsw is not None and hnsw["over_memory"] == "slows" and hnsw["parallel_workers"] >= 1
        assert "past about 932 rows" in (estimate_index.memory_warning(hnsw, 100_000) or "")  # 2 MB / 2,248 B a row

        relations = s._client.execute("SELECT count(*) FROM pg_class").fetchone()[0]
        seconds = s.time_index_build(8, "cosine", {"kind": "hnsw", "m": 16, "ef_construction": 64}, 200)
        assert seconds is not None and seconds > 0
        # k-means over 1,000 rows wants about 17 MB: the timed build gets it, whatever the build's setting
        assert s.time_index_build(384, "cosine", {"kind": "ivfflat", "lists": 20, "probes": 4}, 1000)
        assert s._client.execute("SELECT count(*) FROM pg_class").fetchone()[0] == relations


# -- plan and apply -------------------------------------------------------------------------
def run_cli(*args: str) -> dict:
    r = CliRunner().invoke(cli, ["--json", "--yes", *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.slow  # plans and applies with the real model
def test_plan_estimates_the_index_build_apart_and_apply_reports_it(server, minilm_path, tmp_path: Path, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i}"}) + "\n" for i in range(40)))
    base = ["--store", server.url(), "--state", f"sqlite:///{tmp_path}/state.db"]
    plan = run_cli(*base, "plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{corpus}",
                   "--ann-index", "ivfflat", "-o", str(tmp_path / "p1.json"))  # fmt: skip
    index = plan["estimate"]["index"]
    assert (index["kind"], index["lists"], index["probes"], index["rows"], index["method"]) == (
        "ivfflat", 1, 1, 40, "measured"
    )  # fmt: skip
    assert index["seconds_low"] <= index["seconds"] <= index["seconds_high"] and "random vectors" in index["basis"]
    assert plan["estimate"]["total_seconds"] >= plan["estimate"]["seconds"]

    # the first apply loses its server while building the index, after the whole load ...
    def interrupted(self, name):
        raise BackendError("the server went away during the index build")

    real = TableStore.finish_writes
    monkeypatch.setattr(TableStore, "finish_writes", interrupted)
    assert CliRunner().invoke(cli, [*base, "--yes", "apply", str(tmp_path / "p1.json")]).exit_code != 0
    monkeypatch.setattr(TableStore, "finish_writes", real)
    # ... and its resume, which has nothing left to write, builds it
    applied = run_cli(*base, "apply", "--resume", "docs")
    assert applied["stats"]["embedded"] == 0 and applied["live"] == "docs__v1"
    built = applied["index_build"]
    assert (built["kind"], built["lists"], built["rows"]) == ("ivfflat", 1, 40) and built["seconds"] >= 0
    (row,) = run_cli(*base, "status", "docs")
    assert row["live"]["ann_index"]["kind"] == "ivfflat" and row["live"]["ann_index"]["rows"] == 40

    # the same model with another index: a copy, whose estimate now scales the recorded build
    text = CliRunner().invoke(cli, [*base, "plan", "docs", "--ann-index", "ivfflat", "--ivf-lists", "2",
                                    "-o", str(tmp_path / "p2.json")])  # fmt: skip
    assert "index: ivfflat (lists 2, probes 1) over 40 rows after the load" in text.output
    plan = json.loads((tmp_path / "p2.json").read_text())
    assert plan["mode"] == "copy"
    index = plan["estimate"]["index"]
    assert (index["lists"], index["method"]) == (2, "history") and "1 earlier ivfflat build" in index["basis"]
    expected = built["seconds"] * estimate_index.work({**index, "dim": 384}) / estimate_index.work(built)
    assert math.isclose(index["seconds"], expected, rel_tol=0.05, abs_tol=0.01)
    applied = run_cli(*base, "apply", str(tmp_path / "p2.json"))
    assert applied["index_build"]["lists"] == 2 and applied["stats"]["embedded"] == 0


def test_a_store_without_ivfflat_refuses_the_plan_with_exit_2_and_nothing_created(minilm_path, tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(5)))
    store = f"qdrant+local:{tmp_path / 'qdrant'}"
    r = CliRunner().invoke(
        cli,
        ["--store", store, "--state", f"sqlite:///{tmp_path}/state.db", "plan", "docs", "--model", str(minilm_path),
         "--source", f"jsonl:{corpus}", "--ann-index", "ivfflat", "-o", str(tmp_path / "p.json")],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "qdrant builds no ivfflat index (it builds hnsw)" in r.stderr
    assert not (tmp_path / "p.json").exists()
    with open_store(store) as s:
        assert s.list_collections() == []
