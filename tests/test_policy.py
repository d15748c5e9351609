"""One policy: each configured default gives the same outcome through the CLI and through the library.

Every case runs twice in the same folder, on the same reindex.toml and from the
same starting store and state (a snapshot restored in place): once as `reindex`
commands (click's CliRunner), once through ``reindexer.deploy()`` or the
command layer. The outcomes (exit code, live version, physical collections,
what gc dropped) must be equal, and equal to what the case expects.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import reindexer
from reindexer import commands
from reindexer.cli import cli
from reindexer.config import ENV_KEYS
from reindexer.errors import ReindexError
from reindexer.model_identity import ModelSettings
from reindexer.workspace import Workspace

REFUSING_GATE = "ndcg@10 >= 0"  # a 16-dimension truncation of MiniLM loses nDCG on these queries
TRUNCATED = 16


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    live: str | None
    collections: tuple[str, ...]
    dropped: tuple[str, ...] = ()


def _corpus_files(folder: Path, corpus) -> None:
    """About 40 documents holding every relevant document of 12 judged queries."""
    chosen = dict(list(corpus.qrels.items())[:12])
    wanted = {d for rel in chosen.values() for d in rel}
    docs = [d for d in corpus.documents if d["id"] in wanted]
    docs += [d for d in corpus.documents if d["id"] not in wanted][: max(0, 40 - len(docs))]
    data = folder / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    # the same text under another field, for the text_field case
    (data / "body.jsonl").write_text("".join(
        json.dumps({"id": d["id"], "body": d["text"], "title": d["title"]}) + "\n" for d in docs))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": corpus.queries[q]}) + "\n"
                                                for q in chosen))
    (data / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, rel in chosen.items() for d, g in rel.items()))


def _observe(folder: Path, exit_code: int, dropped: tuple[str, ...] = ()) -> Outcome:
    with Workspace.open(cwd=folder) as ws:
        return Outcome(exit_code, ws.store.resolve("docs"), tuple(sorted(ws.store.list_collections())), dropped)


def _cli(*args: str) -> int:
    result = CliRunner().invoke(cli, list(args))
    print(result.output)
    return result.exit_code


# -- the cases: (reindex.toml, what the store holds first, the CLI's steps, the library's steps, expected) ------
def _live_v1(folder: Path, minilm_path: Path, *, v2_cut_over: bool = False) -> None:
    """docs__v1 live from data/corpus.jsonl (and docs__v2 cut over, v1 retired, when asked)."""
    with Workspace.open(cwd=folder) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path),
                                         source=f"jsonl:{folder / 'data/corpus.jsonl'}"))
        if v2_cut_over:
            commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path),
                                             settings=ModelSettings(truncate_dim=TRUNCATED)))


def _deploy_truncated(folder: Path, minilm_path: Path) -> int:
    try:
        result = reindexer.deploy(minilm_path, "docs", settings=ModelSettings(truncate_dim=TRUNCATED))
    except ReindexError as exc:
        return exc.exit_code
    return {"promoted": 0, "built": 0, "unchanged": 0, "refused": 6}[result.decision]


def _apply_truncated_cli(folder: Path, minilm_path: Path) -> int:
    code = _cli("plan", "docs", "--model", str(minilm_path), "--truncate-dim", str(TRUNCATED), "-o", "plan.json")
    return code or _cli("--yes", "apply", "plan.json")


def _deploy_new(folder: Path, minilm_path: Path) -> int:
    try:
        return 0 if reindexer.deploy(minilm_path, "docs").promoted else 1
    except ReindexError as exc:
        return exc.exit_code


def _apply_new_cli(folder: Path, minilm_path: Path) -> int:
    code = _cli("plan", "docs", "--model", str(minilm_path), "-o", "plan.json")
    return code or _cli("--yes", "apply", "plan.json")


def _gc_cli(folder: Path, minilm_path: Path) -> tuple[int, tuple[str, ...]]:
    result = CliRunner().invoke(cli, ["--yes", "--json", "gc", "docs"])
    return result.exit_code, tuple(json.loads(result.stdout)["dropped"]) if result.exit_code == 0 else ()


def _gc_api(folder: Path, minilm_path: Path) -> tuple[int, tuple[str, ...]]:
    with Workspace.open(cwd=folder) as ws:
        return 0, tuple(commands.gc(ws, "docs")["dropped"])


CASES = {
    # The bug: a default gate with judged clauses and no judged queries anywhere.
    "defaults-gate-without-judgements": (
        f'[defaults]\ngate = "{REFUSING_GATE}"\n', "v1", _apply_truncated_cli, _deploy_truncated,
        Outcome(2, "docs__v1", ("docs__v1",))),
    "collection-gate-and-judgements-refuse": (
        f'[collections.docs]\ngate = "{REFUSING_GATE}"\nqueries = "data/queries.jsonl"\nqrels = "data/qrels.tsv"\n',
        "v1", _apply_truncated_cli, _deploy_truncated, Outcome(6, "docs__v1", ("docs__v1", "docs__v2"))),
    "collection-source": (
        '[collections.docs]\nsource = "jsonl:data/corpus.jsonl"\n', None, _apply_new_cli, _deploy_new,
        Outcome(0, "docs__v1", ("docs__v1",))),
    "collection-source-and-text-field": (
        '[collections.docs]\nsource = "jsonl:data/body.jsonl"\ntext_field = ["title", "body"]\n', None,
        _apply_new_cli, _deploy_new, Outcome(0, "docs__v1", ("docs__v1",))),
    "defaults-keep-zero": (
        "[defaults]\nkeep = 0\n", "v1v2", _gc_cli, _gc_api, Outcome(0, "docs__v2", ("docs__v2",), ("docs__v1",))),
}


@pytest.mark.slow  # builds real versions twice per case
@pytest.mark.parametrize("case", list(CASES))
def test_a_configured_default_means_the_same_to_the_cli_and_the_library(case, tmp_path, monkeypatch, minilm_path,
                                                                       demo_corpus):
    toml, start, via_cli, via_library, expected = CASES[case]
    for name in (*ENV_KEYS, "REINDEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    _corpus_files(tmp_path, demo_corpus)
    (tmp_path / "reindex.toml").write_text(toml)
    if start:
        _live_v1(tmp_path, minilm_path, v2_cut_over=start == "v1v2")
    snapshot = tmp_path.parent / f"{tmp_path.name}-start"
    if (tmp_path / ".reindex").exists():
        shutil.copytree(tmp_path / ".reindex", snapshot / ".reindex")

    outcomes = {}
    for label, steps in (("cli", via_cli), ("library", via_library)):
        shutil.rmtree(tmp_path / ".reindex", ignore_errors=True)
        if snapshot.exists():
            shutil.copytree(snapshot / ".reindex", tmp_path / ".reindex")
        done = steps(tmp_path, minilm_path)
        code, dropped = done if isinstance(done, tuple) else (done, ())
        outcomes[label] = _observe(tmp_path, code, dropped)
    assert outcomes["cli"] == outcomes["library"] == expected, outcomes
