"""Verification that scales: counts and a uniform random sample of points, every point when it matters.

A version of 300 short documents (the real MiniLM) is verified with the sample size set to 50,
so the sampled path runs on a collection a test can build; every test gets a fresh copy of it,
on each embedded backend. What is asserted: a clean version is checked by sample and says how
many points and with what chance of finding a fraction of bad ones; counts that disagree send
the check through the full pass, which names the missing point; a point tagged with another
model is found by the sample where the sample drew it (and only the full pass finds one it did
not draw); the source's ids are checked against the ledger; --full, the CLI's JSON, and a
repair (--fix) that learns every bad point although a sample found only some.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from reindexer import commands
from reindexer.adapters.base import MODEL_KEY, Point
from reindexer.build import verify as verify_module
from reindexer.build.verify import (
    DETECT_FRACTION,
    VERIFY_POINTS,
    detection_probability,
    sample_size_for,
    verify_version,
)
from reindexer.cli import cli
from reindexer.config import Config
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

DOCS = 300
POINTS = 50  # the sample size these tests verify with (the default, 4,603, is more than the version holds)


# -- the sample size and its detection probability ---------------------------------------
def test_the_default_sample_finds_a_tenth_of_a_percent_with_99_percent():
    assert VERIFY_POINTS == sample_size_for(0.001, 0.99) == 4603 == math.ceil(math.log(0.01) / math.log(0.999))
    assert detection_probability(DETECT_FRACTION, 4603) >= 0.99 > detection_probability(DETECT_FRACTION, 4602)
    assert detection_probability(0.01, 459) >= 0.99 > detection_probability(0.01, 458)
    assert detection_probability(0.001, 0) == 0 and detection_probability(1.0, 1) == 1


def test_sampling_without_replacement_only_raises_the_chance():
    # Hypergeometric: the chance that 4,603 points drawn from 10^5 miss all 100 bad ones.
    n, total, bad = 4603, 100_000, 100
    miss = math.exp(
        math.lgamma(total - bad + 1)
        - math.lgamma(total - bad - n + 1)
        - math.lgamma(total + 1)
        + math.lgamma(total - n + 1)
    )
    assert 1 - miss >= detection_probability(bad / total, n) >= 0.99


# -- a version of 300 points, a fresh copy per test ----------------------------------------
def _config(kind: str, folder: Path) -> Config:
    url = f"qdrant+local:{folder / 'qdrant'}" if kind == "qdrant-local" else f"milvus+lite:{folder / 'milvus.db'}"
    return Config(base_dir=folder, store_url=url, state_url=f"sqlite:///{folder}/state.db", batch_size=64)


@pytest.fixture(scope="module", params=["qdrant-local", "milvus-lite"])
def built(request, tmp_path_factory, minilm_path, demo_corpus):
    """(kind, pristine folder, the apply's result): v1 live, built from 300 short documents, its
    apply verified with the sample size at POINTS."""
    base = tmp_path_factory.mktemp(f"verify-{request.param}")
    folder = base / "ws"
    folder.mkdir()
    titles = [d["title"] for d in demo_corpus.documents]
    docs = [{"id": f"d{i:04d}", "text": f"{titles[i % len(titles)]} ({i})"} for i in range(DOCS)]
    corpus = write_jsonl(folder / "corpus.jsonl", docs)
    with pytest.MonkeyPatch.context() as m, Workspace(_config(request.param, folder)) as ws:
        m.setattr(verify_module, "VERIFY_POINTS", POINTS)
        plan = commands.plan(
            ws,
            "docs",
            model_path=str(minilm_path),
            estimate=False,
            source=SourceSpec(kind="jsonl", location=str(corpus)),
        )
        result = commands.apply(ws, plan)
    shutil.copytree(folder, base / "pristine")
    return request.param, base, result


@pytest.fixture
def world(built, monkeypatch):
    """(config, the apply's result) of a fresh copy of the built version; verification samples POINTS."""
    kind, base, result = built
    shutil.rmtree(base / "ws")
    shutil.copytree(base / "pristine", base / "ws")
    monkeypatch.setattr(verify_module, "VERIFY_POINTS", POINTS)
    return _config(kind, base / "ws"), result


def _live(ws):
    lc = ws.state.get_collection(ws.store_url, "docs")
    version = next(v for v in ws.state.versions(lc.id) if v.physical_name == "docs__v1")
    return lc, version, ws.state.model_of(version)


def _retag(ws, doc_ids):
    """Points rewritten behind the tool's back with another model's tag (same vectors: only the tag is wrong)."""
    points = ws.store.retrieve("docs__v1", doc_ids, with_vectors=True)
    ws.store.upsert("docs__v1", [Point(p.doc_id, p.vector, {**p.payload, MODEL_KEY: "another-model"}) for p in points])
    ws.store.finish_writes("docs__v1")


def test_apply_verifies_by_sample_and_says_so(world):
    _, result = world
    v = result.verification
    assert v["ok"] and v["checked"] == "sample" and v["points_checked"] == POINTS and v["full_reason"] is None
    assert v["detection_probability"] == pytest.approx(1 - 0.999**POINTS)
    assert f"sample of {POINTS} of {DOCS} points" in v["coverage"] and "at least 4.9%" in v["coverage"]


def test_a_clean_version_verifies_by_sample(world):
    config, _ = world
    with Workspace(config) as ws:
        lc, version, model = _live(ws)
        report = verify_version(ws, lc, version, model, seed=7)
        assert report.ok and report.checked == "sample" and report.points_checked == POINTS
        assert report.sample_seed == 7 and report.sample_size == 16 and report.sample_min_cosine > 0.99
        assert report.to_dict()["detection_fraction"] == 0.001
        again = verify_version(ws, lc, version, model, points=DOCS)  # the size itself: every point
        assert again.ok and again.checked == "full" and again.points_checked == DOCS
        assert again.full_reason == f"{DOCS} points <= sample size {DOCS}"
        assert again.detection_probability == 1.0 and again.coverage().startswith("checked every point")


def test_the_ledger_sample_is_uniform_seeded_and_within_the_ledger(world):
    config, _ = world
    with Workspace(config) as ws:
        _, version, _ = _live(ws)
        ids = [i for page in ws.state.ledger_id_pages(version.id) for i in page]
        first = ws.state.ledger_sample(version.id, POINTS, seed=3)
        assert first == ws.state.ledger_sample(version.id, POINTS, seed=3) == sorted(set(first))
        assert len(first) == POINTS and set(first) <= set(ids)
        assert first != ws.state.ledger_sample(version.id, POINTS, seed=4)
        assert ws.state.ledger_sample(version.id, DOCS + 10, seed=3) == ids
        assert ws.state.ledger_sample(version.id, POINTS, seed=3, page=7) == first  # pages are not the draw
        # Every id is drawn about as often (expected 200 times in 1,200 draws of 50 of 300).
        drawn = Counter(i for seed in range(1200) for i in ws.state.ledger_sample(version.id, POINTS, seed=seed))
        expected = 1200 * POINTS / DOCS
        chi2 = sum((drawn[i] - expected) ** 2 / expected for i in ids)
        assert len(drawn) == DOCS and chi2 < 420  # 299 degrees of freedom: p < 0.0001 beyond 420


def test_a_point_deleted_behind_the_tools_back_sends_it_through_the_full_pass(world):
    config, _ = world
    with Workspace(config) as ws:
        lc, version, model = _live(ws)
        ws.store.delete("docs__v1", ["d0123"])
        report = verify_version(ws, lc, version, model, seed=7)
    assert not report.ok and report.checked == "full" and report.points_checked == DOCS - 1
    assert report.full_reason == f"counts disagree: store {DOCS - 1}, ledger {DOCS}"
    assert report.missing_in_store == ["d0123"]
    assert "1 ids in the ledger but not the store (e.g. d0123)" in report.problems()


def test_a_retagged_point_is_found_by_the_sample_that_drew_it_and_by_the_full_pass(world):
    config, _ = world
    with Workspace(config) as ws:
        lc, version, model = _live(ws)
        sampled = ws.state.ledger_sample(version.id, POINTS, seed=11)
        drawn, not_drawn = sampled[5], next(f"d{i:04d}" for i in range(DOCS) if f"d{i:04d}" not in sampled)
        _retag(ws, [drawn, not_drawn])
        by_sample = verify_version(ws, lc, version, model, seed=11)
        every = verify_version(ws, lc, version, model, seed=11, full=True)
    assert by_sample.checked == "sample" and not by_sample.ok and by_sample.wrong_model == [drawn]
    assert by_sample.store_count == by_sample.ledger_count == DOCS  # the counts cannot see a wrong tag
    assert every.checked == "full" and every.full_reason == "a full pass was asked for"
    assert every.wrong_model == sorted([drawn, not_drawn])


def test_the_source_is_checked_against_the_ledger_by_id(world):
    config, _ = world
    with Workspace(config) as ws:
        lc, version, model = _live(ws)
        ids = [f"d{i:04d}" for i in range(DOCS)]
        swapped = [*ids[:-1], "new-in-source"]  # the same count: only the ids tell
        report = verify_version(ws, lc, version, model, source_ids=swapped, seed=7)
        assert report.checked == "sample" and not report.ok
        assert report.missing_from_source == [ids[-1]] and report.not_in_ledger_source == ["new-in-source"]
        fewer = verify_version(ws, lc, version, model, source_ids=ids[:-1], seed=7)
        assert fewer.checked == "full" and fewer.full_reason == f"counts disagree: source {DOCS - 1}, ledger {DOCS}"
        assert fewer.missing_from_source == [ids[-1]]
        assert verify_version(ws, lc, version, model, source_ids=ids, seed=7).ok


def test_verify_full_and_the_clis_json(world, monkeypatch):
    config, _ = world
    monkeypatch.chdir(config.base_dir)
    monkeypatch.setenv("REINDEX_STORE", config.store_url)
    monkeypatch.setenv("REINDEX_STATE", config.state_url)
    monkeypatch.setenv("REINDEX_PROGRESS", "0")
    runner = CliRunner()
    r = runner.invoke(cli, ["--json", "verify", "docs"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    before = json.loads(r.stdout)["before"]
    assert before["checked"] == "sample" and before["points_checked"] == POINTS and before["sample_seed"] is not None
    assert before["detection_probability"] == pytest.approx(1 - 0.999**POINTS)
    r = runner.invoke(cli, ["--json", "verify", "docs", "--full"], catch_exceptions=False)
    before = json.loads(r.stdout)["before"]
    assert before["checked"] == "full" and before["full_reason"] == "a full pass was asked for"
    r = runner.invoke(cli, ["verify", "docs"], catch_exceptions=False)
    assert r.exit_code == 0 and f"checked a random sample of {POINTS} of {DOCS} points" in r.stdout
    assert "probability at least 4.9%" in r.stdout and "consistent" in r.stdout


def test_fix_learns_every_bad_point_although_the_sample_found_some(world):
    config, _ = world
    with Workspace(config) as ws:
        bad = [f"d{i:04d}" for i in range(0, DOCS, 5)]  # 60 of 300: a sample of 50 misses all with p = 1.4e-5
        _retag(ws, bad)
        fixed = commands.verify(ws, "docs", fix=True)
        assert fixed.before["checked"] == "full" and fixed.before["sample_seed"] is not None
        assert fixed.before["full_reason"] == "the sample found bad points, and a repair needs every one"
        assert "60 ids tagged with another model" in " ".join(fixed.before["problems"])
        assert fixed.fixed and fixed.after["ok"]
        assert commands.verify(ws, "docs", full=True).ok


def test_apply_full_verify_checks_every_point(world, minilm_path):
    config, _ = world
    with Workspace(config) as ws:
        plan = commands.plan(
            ws, "docs", model_path=str(minilm_path), estimate=False, settings=ModelSettings(truncate_dim=128)
        )
        result = commands.apply(ws, plan, cutover=False, full_verify=True)
    v = result.verification
    assert v["ok"] and v["checked"] == "full" and v["points_checked"] == DOCS
    assert v["full_reason"] == "a full pass was asked for"
