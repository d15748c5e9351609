"""Bad input is refused at plan time, before anything is written; read-only commands create no store.

Each refusal is checked as its user meets it (the CLI): exit 2 (or 3), one message naming
the fix, and the state database file and the store's collections byte-for-byte as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reindexer import commands
from reindexer.adapters.registry import backends
from reindexer.cli import cli
from reindexer.config import ENV_KEYS, Config
from reindexer.errors import UsageError
from reindexer.sources.spec import SourceSpec
from reindexer.state import StateStore
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl


@pytest.fixture(autouse=True)
def _no_configured_env(monkeypatch, tmp_path):
    for name in (*ENV_KEYS, "REINDEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no reindex.toml of the checkout's


@pytest.fixture(scope="module", params=["qdrant-local", "milvus-lite"])
def live_docs(request, tmp_path_factory, minilm_path, demo_corpus):
    """(kind, store URL, state URL, folder): ``docs`` live at v1 on 20 documents."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"validation-{kind}")
    url = f"qdrant+local:{folder / 'qdrant'}" if kind == "qdrant-local" else f"milvus+lite:{folder / 'milvus.db'}"
    state = f"sqlite:///{folder / 'state.db'}"
    corpus = write_jsonl(folder / "corpus.jsonl", demo_corpus.documents[:20])
    with Workspace(Config(base_dir=folder, store_url=url, state_url=state, batch_size=32)) as ws:
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False,
                                         source=SourceSpec(kind="jsonl", location=str(corpus))))
    return kind, url, state, folder


def _snapshot(url: str, folder: Path) -> tuple[str, tuple[str, ...], dict[str, str]]:
    from reindexer.adapters import open_store

    digest = hashlib.sha256((folder / "state.db").read_bytes()).hexdigest()
    with open_store(url) as store:
        return digest, tuple(sorted(store.list_collections())), store.list_aliases()


def _refused(url: str, state: str, folder: Path, *args: str, code: int = 2) -> str:
    before = _snapshot(url, folder)
    r = CliRunner().invoke(cli, ["--store", url, "--state", state, *args])
    assert r.exit_code == code, r.output
    assert "unexpected" not in r.output and "Traceback" not in r.output
    assert _snapshot(url, folder) == before, "a refused plan changed the store or the state"
    return r.output


MILVUS_RULE = "Milvus names: ASCII letters, digits and underscores, starting with a letter or underscore"
# (collection, what Qdrant says (None: valid there), what Milvus says)
NAME_CASES = [
    ("a/b", "path separator", MILVUS_RULE),
    ("..", "contains '..'", MILVUS_RULE),
    ("my docs", "whitespace", MILVUS_RULE),
    ("dökü", "non-ASCII", MILVUS_RULE),
    ("my-docs", None, MILVUS_RULE),
    ("1docs", None, MILVUS_RULE),
]


@pytest.mark.parametrize(("name", "qdrant_says", "milvus_says"), NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_a_bad_collection_name_is_refused_at_plan(live_docs, minilm_path, name, qdrant_says, milvus_says):
    kind, url, state, folder = live_docs
    says = qdrant_says if kind == "qdrant-local" else milvus_says
    if says is None:
        pytest.skip(f"{name!r} is a valid {kind} name")
    output = _refused(url, state, folder, "plan", name, "--model", str(minilm_path),
                      "--source", f"jsonl:{folder / 'corpus.jsonl'}")
    assert f"{name!r} is not a valid" in output and says in output


def test_names_valid_on_qdrant_are_accepted(tmp_path):
    qdrant = backends()["qdrant"]
    for name in ("docs", "my-docs", "team.docs", "docs__v12", "_x"):
        qdrant.validate_collection_name(name)


def test_a_version_name_over_the_milvus_limit_is_refused(live_docs, minilm_path):
    kind, url, state, folder = live_docs
    if kind != "milvus-lite":
        pytest.skip("the 255-character limit is Milvus's")
    output = _refused(url, state, folder, "plan", "d" * 253, "--model", str(minilm_path),
                      "--source", f"jsonl:{folder / 'corpus.jsonl'}")
    assert "not a valid Milvus version collection name" in output


def test_an_over_long_document_id_is_refused_at_plan_on_milvus(live_docs, minilm_path, demo_corpus, tmp_path):
    kind, url, state, folder = live_docs
    docs = [dict(d) for d in demo_corpus.documents[:5]]
    docs[2]["id"] = "x" * 513
    corpus = write_jsonl(tmp_path / "long-ids.jsonl", docs)
    args = ("plan", "fresh", "--model", str(minilm_path), "--source", f"jsonl:{corpus}")
    if kind == "milvus-lite":
        output = _refused(url, state, folder, *args)
        assert "1 document id(s) are longer than 512 bytes" in output
    else:  # Qdrant keys points on a UUID made from the id: any length goes
        assert backends()["qdrant"].max_doc_id_bytes is None


def test_a_truncation_beyond_the_model_dimension_is_refused_at_plan(live_docs, minilm_path):
    _, url, state, folder = live_docs
    output = _refused(url, state, folder, "plan", "docs", "--model", str(minilm_path), "--truncate-dim", "1000")
    assert "truncate dimension 1000 is more than the 384 dimensions" in output and "--truncate-dim 384" in output


def test_an_unknown_metric_is_refused_by_the_library_too(live_docs, minilm_path):
    _, url, state, folder = live_docs
    before = _snapshot(url, folder)
    with Workspace(Config(base_dir=folder, store_url=url, state_url=state)) as ws:
        with pytest.raises(UsageError, match="unknown metric 'manhattan'.*cosine, dot, euclid"):
            commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, metric="manhattan")
        with pytest.raises(UsageError, match="hnsw_m must be a positive integer"):
            commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, metric="dot",
                          index_params={"hnsw_m": 0})
    assert _snapshot(url, folder) == before


# -- read-only commands never create a store ------------------------------------------
READ_ONLY = [
    ("status",),
    ("status", "docs"),
    ("history", "docs"),
    ("verify", "docs"),
    ("eval", "docs", "--log", "queries.txt"),
]


@pytest.mark.parametrize("kind", ["qdrant-local", "milvus-lite"])
@pytest.mark.parametrize("args", READ_ONLY, ids=[" ".join(a[:2]) for a in READ_ONLY])
def test_a_read_only_command_on_a_missing_store_is_exit_3_and_creates_nothing(tmp_path, kind, args):
    missing = tmp_path / "no-such-folder"
    url = f"qdrant+local:{missing / 'qdrant'}" if kind == "qdrant-local" else f"milvus+lite:{missing / 'v.db'}"
    (tmp_path / "queries.txt").write_text("who to page\n")
    # a state that exists, so the missing store is what the command meets (a missing state is exit 3 too)
    StateStore(f"sqlite:///{tmp_path / 'state.db'}").close()
    r = CliRunner().invoke(cli, ["--store", url, "--state", f"sqlite:///{tmp_path / 'state.db'}", *args])
    assert r.exit_code == 3, r.output
    assert f"no store at {missing}" in r.output and "--store" in r.output
    assert not missing.exists()


def test_config_show_creates_nothing(tmp_path):
    (tmp_path / "reindex.toml").write_text('[store]\nurl = "milvus+lite:data/v.db"\n')
    r = CliRunner().invoke(cli, ["--json", "config", "show"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["store"]["url"] == "milvus+lite:data/v.db"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reindex.toml"]


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "docs", "--model", "/no/such/model", "--source", "jsonl:d.jsonl"),
        ("plan", "a/b", "--model", "/no/such/model", "--source", "jsonl:d.jsonl"),
        ("plan", "docs", "--model", "/no/such/model", "--source", "jsonl:d.jsonl", "--metric", "manhattan"),
        ("model", "register", "/no/such/model"),
    ],
    ids=["missing model", "bad name", "bad metric", "register a missing model"],
)
def test_a_refused_writing_command_in_a_fresh_folder_leaves_no_state_or_store(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"id": "1", "text": "a"}\n')
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


def test_a_truncation_past_the_model_in_a_fresh_folder_leaves_no_state_or_store(tmp_path, monkeypatch, minilm_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"id": "1", "text": "a"}\n')
    args = ["plan", "docs", "--model", str(minilm_path), "--source", "jsonl:d.jsonl", "--truncate-dim", "1000"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "truncate dimension 1000" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]
