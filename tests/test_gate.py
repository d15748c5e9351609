"""The evaluation gate end to end, on the demo corpus, with real models.

One embedded Qdrant workspace per module; each model embeds the 600 documents once:

- v1: all-MiniLM-L6-v2, the live index;
- v2: MiniLM fine-tuned on the demo's training pairs (``tuned_model_path``): it must
  win a gated A/B against v1 and be cut over;
- v3: MiniLM truncated to its first 32 dimensions (a severe Matryoshka cut of a
  model never trained for it): the gate must refuse it, leave it built for
  inspection, and let ``force`` override it, audited.

The stages are module-scoped fixtures that build on each other (``promoted`` ->
``refused`` -> ``forced``), so every test asks for the stage it needs and the
file stays correct whatever order the tests run in. Run with ``-s`` to see the
A/B numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reindexer import commands
from reindexer.ab import Judgements
from reindexer.config import Config
from reindexer.demo_corpus import write_demo_files
from reindexer.errors import EXIT_GATE_REFUSED, GateRefusedError, UsageError
from reindexer.evaluation.report import SCHEMA, UNLABELLED_SCHEMA
from reindexer.model_identity import ModelSettings
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace

pytestmark = pytest.mark.slow

GATE = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
STRICT = "ndcg@10 significantly better at p < 0.05"
DEGRADED = ModelSettings(truncate_dim=32)
METRICS = ("ndcg@10", "recall@10", "mrr@10")


@dataclass
class Lab:
    ws: Workspace
    folder: Path
    files: dict[str, Path]
    judgements: Judgements
    timings: dict[str, float] = field(default_factory=dict)


def _events(ws: Workspace, action: str | None = None) -> list[dict[str, Any]]:
    events = commands.history(ws, "docs", limit=500)["events"]  # newest first
    return [e for e in events if action is None or e["action"] == action]


def _version(ws: Workspace, number: int):
    lc = ws.state.get_collection(ws.store_url, "docs")
    return next(v for v in ws.state.versions(lc.id) if v.version == number)


def _release_store(ws: Workspace) -> None:
    """Close the embedded Qdrant folder so another process may open it; reopened lazily on next use."""
    if ws._store is not None:
        ws._store.close()
        ws._store = None


def _print_ab(title: str, means: dict[str, dict[str, float]], comparisons: dict[str, Any] | None = None) -> None:
    width = 28 if comparisons else 10
    print(f"\n{title}")
    print(f"  {'version':<8}" + "".join(f"  {m:>{width}}" for m in METRICS))
    for version, values in means.items():
        cells = []
        for m in METRICS:
            cell = f"{values[m]:.4f}"
            test = (comparisons or {}).get(version, {}).get(m)
            if test is not None:
                cell += f" ({test.delta:+.4f}, p={test.p_value:.4f})"
            cells.append(f"  {cell:>{width}}")
        print(f"  {version:<8}" + "".join(cells))


# -- the workspace and its stages ---------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory, minilm_path, demo_corpus):
    """v1 (base MiniLM) built from the 600-document demo corpus and live behind ``docs``."""
    folder = tmp_path_factory.mktemp("gate")
    files = write_demo_files(demo_corpus, folder / "data")
    config = Config(base_dir=folder, store_url=f"qdrant+local:{folder / 'qdrant'}",
                    state_url=f"sqlite:///{folder / 'state.db'}", batch_size=64)
    judgements = Judgements(dict(demo_corpus.queries), dict(demo_corpus.qrels), source="demo corpus")
    with Workspace(config) as ws:
        started = time.perf_counter()
        p1 = commands.plan(ws, "docs", model_path=str(minilm_path), model_name="all-MiniLM-L6-v2",
                           source=SourceSpec(kind="jsonl", location=str(files["corpus"])), estimate=False)
        r1 = commands.apply(ws, p1)
        assert r1.live == "docs__v1" and r1.stats["embedded"] == len(demo_corpus.documents) == 600
        lab = Lab(ws, folder, files, judgements, timings={"v1 build": time.perf_counter() - started})
        yield lab
        print("\ntest_gate timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in lab.timings.items()))


@pytest.fixture(scope="module")
def promoted(lab, tuned_model_path):
    """v2, the fine-tuned model, applied with the gate against v1: it passes and is cut over."""
    ws = lab.ws
    started = time.perf_counter()
    p2 = commands.plan(ws, "docs", model_path=str(tuned_model_path), model_name="minilm-tuned", estimate=False)
    assert p2.to_version["physical"] == "docs__v2" and p2.from_version["physical"] == "docs__v1"
    result = commands.apply(ws, p2, judgements=lab.judgements, gate=GATE)
    lab.timings["v2 build+gate"] = time.perf_counter() - started
    return result


@pytest.fixture(scope="module")
def refused(lab, promoted, minilm_path):
    """v3, MiniLM cut to 32 dimensions, applied with the same gate against the live v2: refused."""
    ws = lab.ws
    started = time.perf_counter()
    p3 = commands.plan(ws, "docs", model_path=str(minilm_path), model_name="minilm-trunc32", settings=DEGRADED,
                       estimate=False)
    assert p3.to_version["physical"] == "docs__v3" and p3.dimension_change
    with pytest.raises(GateRefusedError) as exc:
        commands.apply(ws, p3, judgements=lab.judgements, gate=GATE)
    lab.timings["v3 build+gate"] = time.perf_counter() - started
    # what the refusal left behind, captured before any later stage changes it
    snapshot = {
        "alias": ws.store.resolve("docs"),
        "v3_status": _version(ws, 3).status,
        "v3_exists": ws.store.collection_exists("docs__v3"),
        "v3_count": ws.store.count("docs__v3"),
        "events": _events(ws),
    }
    return p3, exc.value, snapshot


@pytest.fixture(scope="module")
def forced(lab, refused):
    """The refused v3 applied again with ``force``: it is cut over, and the override is audited."""
    p3, _, _ = refused
    started = time.perf_counter()
    result = commands.apply(lab.ws, p3, judgements=lab.judgements, gate=GATE, force=True)
    lab.timings["v3 forced"] = time.perf_counter() - started
    return result


# -- (a) the fine-tuned model wins ----------------------------------------------------
def test_fine_tuned_model_passes_the_gate_and_is_cut_over(lab, promoted):
    r = promoted
    assert r.gate is not None and r.gate["passed"] and not r.gate["forced"], r.gate
    assert r.cut_over and r.live == "docs__v2" and lab.ws.store.resolve("docs") == "docs__v2"
    assert r.verification["ok"]
    v1, v2 = r.evaluation["versions"]["v1"], r.evaluation["versions"]["v2"]
    assert r.evaluation["queries"] == 80
    _print_ab(f"gated apply of v2 (fine-tuned) against v1, gate {GATE!r}:", {"v1": v1, "v2": v2})
    for reason in r.gate["reasons"]:
        print(f"  {reason}")
    assert v2["ndcg@10"] - v1["ndcg@10"] > 0.1
    assert v2["recall@10"] > v1["recall@10"] and v2["mrr@10"] > v1["mrr@10"]
    assert all(reason.startswith("PASS") for reason in r.gate["reasons"])

    assert _version(lab.ws, 2).status == "live" and _version(lab.ws, 1).status == "retired"
    gate_events = [e for e in _events(lab.ws, "gate") if e["result"] == "passed"]
    assert gate_events and gate_events[0]["detail"]["gate"] == GATE


# -- (b) a degraded model is refused, stays built, and can be forced -------------------
def test_degraded_model_is_refused_and_left_built_for_inspection(refused):
    _, exc, snap = refused
    assert exc.exit_code == EXIT_GATE_REFUSED == 6
    assert "refused promoting v3" in exc.message and "--force" in (exc.hint or "")
    print(f"\ngate refused v3 (MiniLM truncated to 32 dims): {exc.message}")

    assert snap["alias"] == "docs__v2"  # the live index did not move
    assert snap["v3_status"] == "verified" and snap["v3_exists"] and snap["v3_count"] == 600
    refusals = [e for e in snap["events"] if e["action"] == "gate" and e["result"] == "refused"]
    assert len(refusals) == 1 and refusals[0]["detail"]["gate"] == GATE
    assert any(r.startswith("FAIL") for r in refusals[0]["detail"]["reasons"])
    # the refused shadow was never pointed at
    cutovers = [e for e in snap["events"] if e["action"] == "cutover"]
    assert all(e["detail"]["to"] != "docs__v3" for e in cutovers)


def test_forced_apply_cuts_over_and_is_audited(lab, forced):
    r = forced
    assert r.gate["forced"] and not r.gate["passed"]
    assert r.cut_over and r.live == "docs__v3" and lab.ws.store.resolve("docs") == "docs__v3"
    [event] = _events(lab.ws, "gate-forced")
    assert event["result"] == "forced" and event["detail"]["gate"] == GATE
    assert _events(lab.ws, "cutover")[0]["detail"]["to"] == "docs__v3"


# -- (c) a gate without judgements is a usage error, before any building ---------------
def test_gate_without_judgements_is_refused_before_building(lab, promoted, minilm_path):
    ws = lab.ws
    collections, aliases = sorted(ws.store.list_collections()), dict(ws.store.list_aliases())
    lc = ws.state.get_collection(ws.store_url, "docs")
    versions = [v.version for v in ws.state.versions(lc.id)]

    p = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=64),
                      estimate=False)
    with pytest.raises(UsageError, match="needs judged queries") as exc:
        commands.apply(ws, p, gate=GATE)
    assert exc.value.exit_code == 2 and "--queries" in (exc.value.hint or "")
    gated = commands.plan(ws, "docs", model_path=str(minilm_path), settings=ModelSettings(truncate_dim=64),
                          gate=GATE, estimate=False)
    with pytest.raises(UsageError, match="needs judged queries"):
        commands.apply(ws, gated)  # the plan's own gate

    assert sorted(ws.store.list_collections()) == collections and dict(ws.store.list_aliases()) == aliases
    assert [v.version for v in ws.state.versions(lc.id)] == versions
    assert not ws.store.collection_exists(p.to_version["physical"])


# -- the three A/B numbers side by side, with the library call the CLI uses ----------
def test_ab_numbers_of_base_fine_tuned_and_truncated(lab, refused):
    started = time.perf_counter()
    result, gate, decisions = commands.evaluate_versions(
        lab.ws, "docs", str(lab.files["queries"]), str(lab.files["qrels"]), versions="v1,v2,v3", gate=STRICT)
    lab.timings["eval v1,v2,v3"] = time.perf_counter() - started
    comparisons = {name: c.tests for name, c in result.comparisons.items()}
    _print_ab("A/B/C on the demo corpus (80 judged queries; delta vs v1, paired randomisation p):",
              {v: result.means[v] for v in result.versions}, comparisons)
    assert result.versions == ["v1", "v2", "v3"] and len(result.query_ids) == 80
    n = {v: result.means[v]["ndcg@10"] for v in result.versions}
    assert n["v2"] - n["v1"] > 0.1 and n["v3"] < n["v1"]
    assert decisions["v2"].passed and not decisions["v3"].passed
    assert comparisons["v2"]["ndcg@10"].p_value < 0.05 and comparisons["v3"]["ndcg@10"].p_value < 0.05


# -- the command line ---------------------------------------------------------------
# One real process (``python -m reindexer.cli``, configured by REINDEX_* variables) for
# the reports and the refusal's exit code; the other CLI checks run in-process with
# CliRunner, which saves a Python, torch and model start-up (about 20 s) each.
def _reindex(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    _release_store(lab.ws)  # Qdrant local: one process per folder
    env = {
        **os.environ,
        "REINDEX_STORE": lab.ws.config.store_url,
        "REINDEX_STATE": lab.ws.config.state_url,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "REINDEX_PROGRESS": "0",
    }
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "reindexer.cli", *args], capture_output=True, text=True,
                          env=env, cwd=lab.folder, timeout=300)
    lab.timings["cli subprocess"] = time.perf_counter() - started
    return proc


def _invoke(lab: Lab, monkeypatch, *args: str):
    from click.testing import CliRunner

    from reindexer.cli import cli

    _release_store(lab.ws)
    monkeypatch.setenv("REINDEX_PROGRESS", "0")
    config = lab.ws.config
    return CliRunner().invoke(cli, ["--store", config.store_url, "--state", config.state_url, *args],
                              catch_exceptions=False)


def _eval_args(lab: Lab, versions: str) -> list[str]:
    return ["eval", "docs", "--queries", str(lab.files["queries"]), "--qrels", str(lab.files["qrels"]),
            "--versions", versions, "--gate", GATE]


def test_cli_eval_writes_three_reports_and_exits_6_when_the_gate_refuses(lab, refused, tmp_path):
    files = {ext: tmp_path / f"r.{ext}" for ext in ("json", "md", "html")}
    proc = _reindex(lab, *_eval_args(lab, "v1,v2,v3"), "--report-json", str(files["json"]),
                    "--report-md", str(files["md"]), "--report-html", str(files["html"]))
    verdicts = proc.stdout[proc.stdout.find("gate for v2"):]
    print(f"\nreindex eval docs --versions v1,v2,v3 --gate {GATE!r}: exit {proc.returncode}\n{verdicts}")
    assert proc.returncode == EXIT_GATE_REFUSED == 6, proc.stderr  # v3 fails, so the run fails
    assert "gate for v2: passed" in proc.stdout and "gate for v3: refused" in proc.stdout

    data = json.loads(files["json"].read_text())  # the reports are written before the exit
    assert data["schema"] == SCHEMA == "reindexer.evaluation/v1"
    assert data["versions"] == ["v1", "v2", "v3"] and data["baseline"] == "v1" and data["num_queries"] == 80
    assert data["gate"]["expression"] == GATE and data["gate"]["passed"] is False
    decisions = data["gate"]["decisions"]
    assert decisions["v2"]["passed"] is True and decisions["v3"]["passed"] is False
    v2, v3 = (data["comparisons"][v]["metrics"]["ndcg@10"] for v in ("v2", "v3"))
    assert v2["delta"] > 0.1 and v2["p_value"] < 0.05 and v2["ci_low"] > 0
    assert v3["delta"] < 0 and v3["p_value"] < 0.05 and v3["ci_high"] < 0

    md = files["md"].read_text()
    assert md.startswith("# Retrieval evaluation") and "## Gate" in md
    assert "**v2: PASS**" in md and "**v3: FAIL**" in md
    assert "| ndcg@10 |" in md and "## v2 vs v1" in md and "## v3 vs v1" in md

    html = files["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "<title>docs: retrieval evaluation</title>" in html
    assert html.count("<svg") == 4  # an interval plot and a histogram per candidate
    assert "v2: PASS" in html and "v3: FAIL" in html
    assert "<script" not in html and "http" not in html  # one self-contained file


def test_cli_eval_passing_gate_exits_0(lab, promoted, monkeypatch):
    r = _invoke(lab, monkeypatch, "--json", *_eval_args(lab, "v1,v2"))
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["schema"] == SCHEMA and data["gate"]["passed"] is True
    assert data["metrics"]["v2"]["ndcg@10"] == pytest.approx(promoted.evaluation["versions"]["v2"]["ndcg@10"],
                                                              abs=1e-4)


def test_cli_eval_label_free_from_a_query_log(lab, promoted, demo_corpus, monkeypatch, tmp_path):
    log = tmp_path / "queries.txt"
    log.write_text("\n".join(demo_corpus.queries.values()) + "\n")
    r = _invoke(lab, monkeypatch, "--json", "eval", "docs", "--log", str(log), "--versions", "v1,v2")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["schema"] == UNLABELLED_SCHEMA and data["num_queries"] == 80
    c = data["comparisons"]["v2"]
    print(f"\nlabel-free v1 -> v2 on 80 logged queries: overlap@10 {c['mean_overlap']:.3f}, "
          f"RBO {c['mean_rbo']:.3f}, unchanged {c['unchanged']}")
    # a fine-tune moves the results, but does not scramble them
    assert 0.2 < c["mean_overlap"] < 1 and 0.2 < c["mean_rbo"] < 1
    assert c["most_changed"] and {"overlap", "rbo", "dropped", "added"} <= set(c["most_changed"][0])

    r = _invoke(lab, monkeypatch, "eval", "docs", "--log", str(log), "--versions", "v1,v2")
    assert r.exit_code == 0, r.output
    assert "overlap@10" in r.stdout and "RBO" in r.stdout
