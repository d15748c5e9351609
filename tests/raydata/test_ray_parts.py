"""The Ray executor's parts that need no Ray: partitioning, the ledger table, the executor option."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from click.testing import CliRunner

from reindexer.cli import cli
from reindexer.config import load_config
from reindexer.errors import UsageError
from reindexer.raydata import check_executor
from reindexer.raydata.ledger_table import LedgerTable
from reindexer.raydata.reads import jsonl_ranges, jsonl_records, parquet_groups, parquet_records
from reindexer.sources.spec import SourceSpec, open_source


def _lines(path, n):
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"d{i}", "text": "x" * (i % 37) + f" doc {i}", "n": i}) + "\n")
            if i % 7 == 0:
                f.write("\n")  # blank lines are skipped, as the local source skips them
    return path


@pytest.mark.parametrize("partitions", [2, 3, 7, 50])
def test_jsonl_byte_ranges_yield_every_record_once(tmp_path, monkeypatch, partitions):
    import reindexer.raydata.reads as reads

    monkeypatch.setattr(reads, "MIN_SPLIT_BYTES", 64)  # split a small file as a large one would be
    path = _lines(tmp_path / "c.jsonl", 200)
    spec = SourceSpec(kind="jsonl", location=str(path))
    ranges = jsonl_ranges(path, partitions)
    assert len(ranges) == partitions and ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    got = [r for s, e in ranges for r in jsonl_records(spec, s, e)]
    want = list(open_source(spec)._records())
    assert [r[2] for r in got] == [r[2] for r in want]


def test_a_bad_line_in_a_later_range_is_named_by_its_byte_offset(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": \n')
    spec = SourceSpec(kind="jsonl", location=str(path))
    with pytest.raises(UsageError, match=r"the line at byte 26 is not valid JSON"):
        list(jsonl_records(spec, 10, path.stat().st_size))


def test_a_gzip_file_is_one_range(tmp_path):
    import gzip

    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"id": 1, "text": "a"}\n')
    assert jsonl_ranges(path, 8) == [(0, path.stat().st_size)]


def test_parquet_row_groups_are_shared_out_and_read_as_the_local_source_reads_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(50)], "text": [f"t {i}" for i in range(50)],
                             "meta": [{"k": i} for i in range(50)]}), path, row_group_size=8)
    groups = parquet_groups(str(path), 3)
    assert sorted(g for part in groups for g in part) == list(range(7)) and len(groups) == 3
    got = sorted((r for part in groups for r in parquet_records(str(path), part)), key=lambda r: r[2]["id"])
    want = sorted(open_source(SourceSpec(kind="parquet", location=str(path)))._records(), key=lambda r: r[2]["id"])
    assert [r[2] for r in got] == [r[2] for r in want]


def test_the_ledger_table_skips_exactly_the_same_id_with_the_same_hash():
    h = {f"d{i}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)}
    table = LedgerTable.from_ledger(h)
    assert len(table) == 1000 and table.keys.nbytes + table.values.nbytes == 16 * 1000
    ids = ["d3", "d999", "d5", "new", "d7"]
    hashes = [h["d3"], h["d999"], h["d6"], h["d1"], h["d7"][:-1] + "0"]
    assert table.unchanged(ids, hashes).tolist() == [True, True, False, False, h["d7"][:16] == hashes[4][:16]]
    assert LedgerTable.from_ledger({}).unchanged(["a"], [h["d1"]]).tolist() == [False]


def test_unknown_executor_is_refused():
    with pytest.raises(UsageError, match="unknown executor"):
        check_executor("spark")
    assert check_executor(None) == "local" and check_executor("LOCAL") == "local"


def test_the_executor_comes_from_reindex_toml(tmp_path, monkeypatch):
    monkeypatch.delenv("REINDEX_EXECUTOR", raising=False)
    (tmp_path / "reindex.toml").write_text('[apply]\nexecutor = "ray"\nray_address = "ray://head:10001"\n')
    cfg = load_config(cwd=tmp_path)
    assert (cfg.executor, cfg.ray_address) == ("ray", "ray://head:10001")
    monkeypatch.setenv("REINDEX_EXECUTOR", "local")
    assert load_config(cwd=tmp_path).executor == "local"


@pytest.mark.slow  # plans with the real model
def test_executor_ray_without_ray_exits_2_naming_the_extra_and_writes_nothing(tmp_path, monkeypatch,
                                                                              small_corpus_file, minilm_path):
    """Validated before the first write: the state and the store stay byte-identical."""
    store = f"qdrant+local:{tmp_path}/qdrant"
    runner = CliRunner()
    planned = runner.invoke(cli, ["--store", store, "--state", f"sqlite:///{tmp_path}/state.db", "plan", "docs",
                                  "--model", str(minilm_path), "--source", f"jsonl:{small_corpus_file}",
                                  "-o", str(tmp_path / "plan.json")])
    assert planned.exit_code == 0, planned.output
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    applied = runner.invoke(cli, ["--store", store, "--state", f"sqlite:///{tmp_path}/state.db", "--yes",
                                  "apply", str(tmp_path / "plan.json"), "--executor", "ray"])
    assert applied.exit_code == 2
    assert 'pip install "reindexer[ray]"' in applied.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
