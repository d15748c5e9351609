"""Everything the tool does, on PostgreSQL with pgvector: a few dense tests, each walking several verbs on one store.

The backend-independent behaviour of each verb is proven on Qdrant and Milvus by the big
matrices (tests/test_sync.py, tests/test_catchup.py, tests/test_crash.py, ...); pgvector is
kept out of them (CI time), so these tests walk the same verbs once here, on the session's
PostgreSQL server (``pgvector_server``, tests/plugins/pgvector.py), and check what only
PostgreSQL can show: the rows behind the view, the tables, views and catalog rows each verb
leaves. One test runs on the embedded default ``pgvector+local`` (a PostgreSQL of its own).

- the spine on ``pgvector+local``: plan, apply, a model change with a dimension change,
  verify, a cut-over killed between the view swap and the state record (repaired by the
  next command), rollback, gc;
- sync (changed, new and deleted documents), eval, verify and verify --fix of a damaged
  shadow, the catch-up of an application's SQL writes and deletes through the view at
  cut-over and rollback, gc, forget;
- the catch-up's read of an application's rows (``scroll_untagged``), filtered by PostgreSQL;
- the Searcher, and ``reindex serve`` answering from the live version while the view swaps
  back and forth, with shadow traffic mirrored to the built shadow;
- ``apply --executor ray`` (writers on Ray workers) against the local executor's build;
- a SIGKILL at the kill points of apply, cutover, rollback, gc, migrate and adopt, and a sync
  killed half-way, each followed by the operator's next command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from reindexer import killpoints
from reindexer.cli import cli
from tests.plugins.liveness import N_KB_DOCS, N_PAIR_DOCS, PAIR_BATCH, Pair
from tests.test_crash import (
    completed,
    max_run_id,
    reindex,
    reindex_here,
    sync_batches_at_least,
    was_killed,
)

pytest.importorskip("pgvector", reason="pip install 'reindexer[pgvector]' for the pgvector tests")

SLOW = pytest.mark.slow  # builds versions with the real model: left out of make test-fast

N_DOCS = 36


# -- helpers ------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok(*args: str) -> dict[str, Any] | list[Any]:
    """``reindex --json ARGS`` in this process, which must exit 0; its JSON answer."""
    r = invoke("--json", "--yes", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _judged_corpus(folder: Path, corpus, n_docs: int = N_DOCS, n_queries: int = 10) -> dict[str, Path]:
    """``n_docs`` documents holding every relevant document of ``n_queries`` judged queries, and those queries."""
    chosen = dict(list(corpus.qrels.items())[:n_queries])
    wanted = {d for rel in chosen.values() for d in rel}
    docs = [d for d in corpus.documents if d["id"] in wanted]
    docs += [d for d in corpus.documents if d["id"] not in wanted][: n_docs - len(docs)]
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl", "qrels": folder / "qrels.tsv"}
    paths["corpus"].write_text("".join(json.dumps(d) + "\n" for d in docs))
    paths["queries"].write_text("".join(json.dumps({"_id": q, "text": corpus.queries[q]}) + "\n" for q in chosen))
    paths["qrels"].write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{g}\n" for q, rel in chosen.items() for d, g in rel.items())
    )
    return paths


def _documents(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def _unit(dim: int, i: int) -> str:
    """A unit vector as pgvector's text form, for an application's INSERT."""
    return "[" + ",".join("1" if j == i % dim else "0" for j in range(dim)) + "]"


def _view_target(conn, view: str = "docs") -> str | None:
    """The table behind ``view``, read from PostgreSQL's own dependency records."""
    row = conn.execute(
        "SELECT DISTINCT c.relname FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
        "JOIN pg_class v ON v.oid = r.ev_class JOIN pg_class c ON c.oid = d.refobjid "
        "WHERE v.relname = %s AND c.relname <> %s",
        (view, view),
    ).fetchone()
    return None if row is None else str(row[0])


def _relations(conn) -> dict[str, str]:
    """Every table and view of the schema but the catalog's, by kind (r: table, v: view)."""
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v') "
        "AND c.relname NOT IN ('reindexer_collections', 'reindexer_aliases')"
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _catalog(conn) -> tuple[list[str], dict[str, str]]:
    """The catalog's collection rows and alias rows."""
    names = [r[0] for r in conn.execute("SELECT name FROM reindexer_collections ORDER BY name").fetchall()]
    aliases = dict(conn.execute("SELECT alias, target FROM reindexer_aliases").fetchall())
    return names, aliases


def _tags(conn, table: str) -> set[str | None]:
    return {r[0] for r in conn.execute(f"SELECT DISTINCT payload->>'reindex_model' FROM \"{table}\"").fetchall()}


def _ids(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute(f'SELECT id FROM "{table}" ORDER BY id').fetchall()]


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def server_url(request, tmp_path) -> Iterator[str]:
    """The session's PostgreSQL (``vectors``), emptied before and after; PGUSER/PGPASSWORD set for the test."""
    from tests.plugins.stores import _url_for

    yield from _url_for(request, "pgvector-server", tmp_path)


def _cli_env(monkeypatch, tmp_path: Path, store_url: str) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    values = {
        "REINDEX_STORE": store_url,
        "REINDEX_STATE": f"sqlite:///{tmp_path}/state.db",
        "REINDEX_BATCH_SIZE": "16",
        "REINDEX_PROGRESS": "0",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def server_env(server_url, tmp_path, monkeypatch) -> dict[str, str]:
    return _cli_env(monkeypatch, tmp_path, server_url)


# -- the spine on the embedded default -------------------------------------------------------
def _local_view(store_url: str) -> tuple[str | None, int, int]:
    """(the table behind the view, its dimension, its rows), read as the application reads it."""
    from reindexer.adapters import open_store

    with open_store(store_url) as s:
        conn = s._client
        dim, rows = conn.execute("SELECT max(vector_dims(embedding)), count(*) FROM docs").fetchone()
        return _view_target(conn), int(dim), int(rows)


@SLOW
def test_the_spine_on_pgvector_local_with_a_cutover_killed_after_the_view_swap(
    tmp_path, monkeypatch, minilm_path, small_corpus_file
):
    """plan, apply, a model change with a dimension change (MiniLM truncated to 128), status, verify, a cut-over
    SIGKILLed between the view swap and the state record (its embedded PostgreSQL keeps running, its pid stays on
    pgserver's list of holders), repaired by the next command, rollback and gc, through the command line."""
    env = _cli_env(monkeypatch, tmp_path, f"pgvector+local:{tmp_path}/pg")
    store = env["REINDEX_STORE"]
    planned = ok("plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{small_corpus_file}", "-o", "p1.json")
    assert planned["counts"]["source_docs"] == 60
    assert ok("apply", "p1.json")["live"] == "docs__v1"
    assert _local_view(store) == ("docs__v1", 384, 60)

    planned = ok("plan", "docs", "--model", str(minilm_path), "--truncate-dim", "128", "-o", "p2.json")
    assert planned["dimension_change"] is True
    assert not ok("apply", "p2.json", "--no-cutover")["cut_over"]
    assert _local_view(store) == ("docs__v1", 384, 60)  # the shadow is built; the application still reads v1
    [row] = ok("status", "docs")
    assert row["live"]["physical"] == "docs__v1" and row["shadows"][0]["physical"] == "docs__v2"
    assert ok("verify", "docs", "--version", "2")["ok"]

    killed = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--yes", "cutover", "docs"],
        env={**os.environ, killpoints.ENV: "after-alias-swap"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _local_view(store) == ("docs__v2", 128, 60)  # one view swap, a new column type; the state lags
    [row] = ok("status", "docs")  # the next command repairs the state from the view
    assert row["live"]["physical"] == "docs__v2" and [x["physical"] for x in row["retired"]] == ["docs__v1"]
    assert [(x["kind"], x["recorded"]) for x in row["repairs"]] == [("completed", True)]
    assert ok("verify", "docs")["ok"]

    assert ok("rollback", "docs")["live"] == "docs__v1"
    assert _local_view(store) == ("docs__v1", 384, 60)
    assert ok("gc", "docs", "--keep", "0")["dropped"] == ["docs__v2"]
    assert [v["status"] for v in ok("history", "docs")["versions"]] == ["live", "dropped"]
    from reindexer.adapters import open_store

    with open_store(store) as s:
        assert _relations(s._client) == {"docs": "v", "docs__v1": "r"}
        assert _catalog(s._client) == (["docs__v1"], {"docs": "docs__v1"})
        # v1's HNSW index was built after its load, with the metric's operator class
        [(table, definition)] = s._client.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'"
        ).fetchall()
        assert table == "docs__v1" and "vector_cosine_ops" in definition


# -- sync, eval, verify --fix, catch-up, cut-over, rollback, gc, forget ------------------------
@SLOW
def test_sync_eval_verify_fix_catch_up_gc_and_forget_on_the_server(
    server_env, pgvector_server, minilm_path, demo_corpus, tmp_path
):
    files = _judged_corpus(tmp_path, demo_corpus)
    judged = {line.split("\t")[1] for line in files["qrels"].read_text().splitlines()[1:]}
    ok("plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{files['corpus']}", "-o", "p1.json")
    assert ok("apply", "p1.json")["live"] == "docs__v1"

    # sync: two texts edited, two documents deleted, one new, in the source file
    docs = _documents(files["corpus"])
    filler = [i for i, d in enumerate(docs) if d["id"] not in judged]
    edited = [docs[filler[0]]["id"], docs[filler[1]]["id"]]
    for i in filler[:2]:
        docs[i]["text"] = f"Rewritten: {docs[i]['text']} The service now restarts itself nightly."
    gone = [docs[filler[2]]["id"], docs[filler[3]]["id"]]
    docs = [d for d in docs if d["id"] not in gone] + [{"id": "brand-new", "text": "A new article about view swaps."}]
    _write(files["corpus"], docs)
    synced = ok("sync", "docs")
    assert synced["versions"]["v1"] == {"seen": N_DOCS - 1, "embedded": 3, "unchanged": N_DOCS - 4, "deleted": 2}
    with pgvector_server.connect() as conn:  # as the application reads it: through the view
        assert _ids(conn, "docs") == sorted(d["id"] for d in docs)
        texts = dict(conn.execute("SELECT id, payload->>'text' FROM docs WHERE id = ANY(%s)", (edited,)).fetchall())
        assert all(t.startswith("Rewritten: ") for t in texts.values()) and len(texts) == 2
    assert ok("sync", "docs")["versions"]["v1"]["embedded"] == 0

    # v2: a dimension change, built from the live payload, not cut over; eval compares the two
    ok("plan", "docs", "--model", str(minilm_path), "--truncate-dim", "128", "-o", "p2.json")
    assert not ok("apply", "p2.json", "--no-cutover")["cut_over"]
    evaluated = ok(
        "eval", "docs", "--queries", str(files["queries"]), "--qrels", str(files["qrels"]), "--versions", "v1,v2"
    )
    assert evaluated["versions"] == ["v1", "v2"] and set(evaluated["comparisons"])
    assert evaluated["metrics"]["v1"]["recall@10"] >= 0.8 and evaluated["metrics"]["v2"]["recall@10"] >= 0.5

    # The shadow damaged behind the tool's back: a row gone, one re-tagged by another model, a stray one.
    with pgvector_server.connect() as conn:
        victims = _ids(conn, "docs__v2")[:2]
        conn.execute("DELETE FROM docs__v2 WHERE id = %s", (victims[0],))
        retagged = json.dumps({"reindex_model": "someothermodl"})
        conn.execute("UPDATE docs__v2 SET payload = payload || %s::jsonb WHERE id = %s", (retagged, victims[1]))
        conn.execute(
            "INSERT INTO docs__v2 (id, embedding, payload) VALUES ('stray', %s::vector, %s)",
            (_unit(128, 0), json.dumps({"text": "not in the source"})),
        )
    bad = invoke("--json", "verify", "docs", "--version", "2", "--full")
    assert bad.exit_code == 7, bad.output
    problems = " ".join(json.loads(bad.stdout)["before"]["problems"])
    assert "not the store" in problems and "another model" in problems and "stray" in problems
    fixed = ok("verify", "docs", "--version", "2", "--fix", "--full")
    assert fixed["fixed"] and fixed["ok"]
    with pgvector_server.connect() as conn:
        assert _ids(conn, "docs__v2") == _ids(conn, "docs__v1")  # the stray deleted, the two re-embedded
        v1_tag, v2_tag = (
            conn.execute(
                "SELECT metadata->>'reindex.fingerprint' FROM reindexer_collections WHERE name = %s", (t,)
            ).fetchone()[0][:12]
            for t in ("docs__v1", "docs__v2")
        )
        assert _tags(conn, "docs__v2") == {v2_tag}

        # The application writes through the view between the last sync and the cut-over: a new row, and a
        # rewrite of one the tool wrote (its own payload, without the tool's tag).
        app_row = {"text": "Zebras cross the Mara river every year.", "source": "app"}
        conn.execute(
            "INSERT INTO docs (id, embedding, payload) VALUES ('app-1', %s::vector, %s)",
            (_unit(384, 3), json.dumps(app_row)),
        )
        rewritten = {"text": "A text the application rewrote."}
        conn.execute("UPDATE docs SET payload = %s WHERE id = %s", (json.dumps(rewritten), edited[0]))

    moved = ok("cutover", "docs")
    assert moved["live"] == "docs__v2" and moved["caught_up"] == {"embedded": 2, "deleted": 0}, moved
    assert moved["catch_up"].startswith("changes only: 2 points without v1's model tag"), moved["catch_up"]
    with pgvector_server.connect() as conn:
        assert _view_target(conn) == "docs__v2"
        assert _ids(conn, "docs") == sorted([d["id"] for d in docs] + ["app-1"])
        assert _tags(conn, "docs") == {v2_tag}  # every row of the live table embedded by v2's model
        assert conn.execute(
            "SELECT payload->>'text', vector_dims(embedding) FROM docs WHERE id = %s", (edited[0],)
        ).fetchone() == ("A text the application rewrote.", 128)
    assert ok("verify", "docs", "--version", "2")["ok"]

    # The application deletes through the view the row it wrote into v1 before the cut-over. v1's ledger never held
    # that row (the application wrote it; the catch-up carried it to v2), so the counts agree; v2's ledger names it
    # and v2 no longer holds it: the rollback's catch-up deletes it from v1 (and re-embeds the rewrite by v1's model).
    with pgvector_server.connect() as conn:
        conn.execute("DELETE FROM docs WHERE id = 'app-1'")
    back = ok("rollback", "docs")
    assert back["live"] == "docs__v1" and (back["re_embedded"], back["deleted"]) == (1, 1), json.dumps(back)
    assert back["catch_up"].startswith("changes only: 0 points without v2's model tag, 1 re-read"), back["catch_up"]
    with pgvector_server.connect() as conn:
        assert _ids(conn, "docs__v1") == _ids(conn, "docs__v2") == sorted(d["id"] for d in docs)
        assert _tags(conn, "docs__v1") == {v1_tag}
        assert conn.execute("SELECT payload->>'text' FROM docs WHERE id = %s", (edited[0],)).fetchone() == (
            "A text the application rewrote.",
        )
        # Once more, with a deletion the counts do see (a document the tool wrote): the full pass, which must
        # delete the application's row as well, though no ledger of v1 ever held it.
        conn.execute(
            "INSERT INTO docs (id, embedding, payload) VALUES ('app-2', %s::vector, %s)",
            (_unit(384, 5), json.dumps({"text": "Lighthouses once burned whale oil."})),
        )
    # (v2's ledger still names app-1, which the application deleted from v2: the counts disagree, and the full
    # pass drops that ledger row)
    assert ok("cutover", "docs", "--to", "v2")["caught_up"] == {"embedded": 1, "deleted": 1}
    with pgvector_server.connect() as conn:
        conn.execute("DELETE FROM docs WHERE id = ANY(%s)", (["app-2", edited[1]],))
    back = ok("rollback", "docs")
    assert back["catch_up"].startswith("full catch-up: store count"), back["catch_up"]
    assert back["deleted"] == 2, json.dumps(back)
    docs = [d for d in docs if d["id"] != edited[1]]
    with pgvector_server.connect() as conn:
        assert _ids(conn, "docs__v1") == _ids(conn, "docs__v2") == sorted(d["id"] for d in docs)

    # gc: v2's table, its catalog row and its index go; v1, its view and its index stay
    assert ok("gc", "docs", "--keep", "0")["dropped"] == ["docs__v2"]
    with pgvector_server.connect() as conn:
        assert _relations(conn) == {"docs": "v", "docs__v1": "r"}
        assert _catalog(conn) == (["docs__v1"], {"docs": "docs__v1"})
        indexes = [r[0] for r in conn.execute("SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%hnsw%'")]
        assert indexes == ["docs__v1"]
        assert _ids(conn, "docs") == sorted(d["id"] for d in docs)
    history = ok("history", "docs")
    assert [v["status"] for v in history["versions"]] == ["live", "dropped"]

    # forget: the state lets go; the store keeps its table, view, rows and catalog rows
    forgotten = ok("forget", "docs")
    assert forgotten["forgotten"] and forgotten["left_in_store"] == ["docs__v1"]
    assert ok("status") == []
    with pgvector_server.connect() as conn:
        assert _relations(conn) == {"docs": "v", "docs__v1": "r"}
        assert _catalog(conn) == (["docs__v1"], {"docs": "docs__v1"})
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == len(docs)


# -- the catch-up's read, in an application's table -------------------------------------------
def test_untagged_rows_are_found_by_postgres_in_an_applications_json_column(server_url, pgvector_server):
    """The catch-up reads only the rows without the live model's tag; in an application's table that tag lives in
    its one JSON column (tables.py). PostgreSQL finds them, as the interface's default (every row read) would."""
    from reindexer.adapters import open_store
    from reindexer.adapters.base import MODEL_KEY, VectorStore

    tag = "minilm@0123456789ab"
    metas = [{MODEL_KEY: tag, "n": i} for i in range(12)]
    metas[2] = {"n": 2}  # written by the application: no tag
    metas[5] = {MODEL_KEY: "older@ba9876543210", "n": 5}
    metas[7] = None  # no JSON at all
    metas[9] = [MODEL_KEY, tag]  # JSON, but not an object: no tag
    with pgvector_server.connect() as conn:
        conn.execute("CREATE TABLE notes (id uuid PRIMARY KEY, body text, embedding vector(3), meta json)")
        for i, meta in enumerate(metas):
            conn.execute(
                "INSERT INTO notes VALUES (%s, %s, '[1,0,0]', %s)",
                (f"00000000-0000-0000-0000-{i:012d}", f"note {i}", None if meta is None else json.dumps(meta)),
            )
    with open_store(server_url) as store:
        read: list[int] = []  # the rows that crossed the connection, page by page
        points_of = store._points
        store._points = lambda layout, rows: (read.append(len(rows)), points_of(layout, rows))[1]
        pages = list(store.scroll_untagged("notes", MODEL_KEY, tag, batch_size=2))
        assert sum(read) == 4, read  # only the untagged rows left the server
        found = {p.doc_id[-2:]: p.payload for page in pages for p in page}
        assert sorted(found) == ["02", "05", "07", "09"] and all(len(page) <= 2 for page in pages)
        assert found["05"][MODEL_KEY] == "older@ba9876543210" and found["05"]["meta"] == {"n": 5}  # the tag lifted out
        assert found["02"] == {"body": "note 2", "meta": {"n": 2}}
        default = VectorStore.scroll_untagged(store, "notes", MODEL_KEY, tag, batch_size=5)
        assert {p.doc_id[-2:]: p.payload for page in default for p in page} == found


# -- the Searcher, `reindex serve` and shadow traffic ------------------------------------------
@SLOW
def test_searcher_and_serve_answer_from_the_live_view_across_cutovers_with_shadow_traffic(pg_pair, demo_corpus):
    """The service and the operator's commands are separate clients of the server, as in production."""
    pytest.importorskip("fastapi", reason='pip install "reindexer[serve]" (in the test extra)')
    from reindexer import Searcher
    from reindexer.adapters.base import MODEL_KEY
    from reindexer.serve import create_app
    from tests.test_serve import assert_every_answer_whole, live_server, swap_back_and_forth

    pair = pg_pair
    pair.restore()  # docs: v1 live (384 dimensions), v2 built (256)
    queries = list(demo_corpus.queries.values())[:20]
    with pair.workspace() as admin, pair.workspace() as served:
        v1_tag = admin.store.describe("docs__v1").metadata["reindex.fingerprint"][:12]
        # An application's Searcher, opened from the URLs as an application opens it
        with Searcher("docs", store=pair.store_url, state=pair.config().state_url) as searcher:
            hits = searcher.search(queries[0], k=5)
            assert len(hits) == 5 and {h.version for h in hits} == {"docs__v1"}
            assert {h.payload[MODEL_KEY] for h in hits} == {v1_tag}
            service = hits[1].payload["meta"]["service"]
            filtered = searcher.search(queries[0], k=5, filter={"meta.service": service})  # a JSONB containment
            assert filtered and {h.payload["meta"]["service"] for h in filtered} == {service}

        # `reindex serve`'s app, on loopback, mirroring every query to the built shadow while v2 is one
        with live_server(create_app(served, refresh=0.1, shadow_sample=1.0)) as url:
            loop = swap_back_and_forth(admin, url, queries, swaps=1)
        assert_every_answer_whole(loop, admin)  # before, between and after the swaps: one version per answer
        mirrored = admin.state.traffic(admin.store_url, "docs")
        assert mirrored and {(r.live, r.shadow) for r in mirrored} == {("docs__v1", "docs__v2")}
        assert all(len(r.shadow_ids) == 5 for r in mirrored)
    assert pair.view() == "docs__v1"


# -- SIGKILL at the kill points, then the operator's next command ------------------------------
@dataclass
class PgPair(Pair):
    """The liveness world (tests/plugins/liveness.py: docs v1 live and v2 built, an adopted ``kb``) in a
    database of the session's server, restored for each case by cloning a pristine copy (``TEMPLATE``)."""

    server: Any = None
    database: str = "flow_world"

    @property
    def embedded(self) -> bool:
        return False

    def env(self, batch_size: int = PAIR_BATCH) -> dict[str, str]:
        # One text per encode call: a sync's batches then take long enough for the watcher to kill between them.
        return {
            **super().env(batch_size),
            "PGUSER": self.server.user,
            "PGPASSWORD": self.server.password,
            "REINDEX_EMBED_BATCH_SIZE": "1",
        }

    def _recreate(self, template: str | None = None) -> None:
        with self.server.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}"' + (f' TEMPLATE "{template}"' if template else ""))
        if template is None:
            with self.server.connect(self.database) as conn:
                conn.execute("CREATE EXTENSION vector")

    def build(self) -> None:
        self._recreate()
        super().build()
        with self.server.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}_pristine"')
            conn.execute(f'CREATE DATABASE "{self.database}_pristine" TEMPLATE "{self.database}"')
        shutil.rmtree(self.pristine, ignore_errors=True)
        shutil.copytree(self.ws_dir, self.pristine)

    def restore(self) -> None:
        self._recreate(template=f"{self.database}_pristine")
        shutil.rmtree(self.ws_dir, ignore_errors=True)
        shutil.copytree(self.pristine, self.ws_dir)

    def drop(self) -> None:
        with self.server.connect("postgres") as conn:
            for db in (self.database, f"{self.database}_pristine"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def view(self, name: str = "docs") -> str | None:
        with self.server.connect(self.database) as conn:
            return _view_target(conn, name)


@pytest.fixture(scope="module")
def pg_pair(pgvector_server, tmp_path_factory, minilm_path, demo_corpus) -> Iterator[PgPair]:
    base = tmp_path_factory.mktemp("pg-pair")
    pair = PgPair(
        kind="pgvector-server",
        base=base,
        ws_dir=base / "ws",
        pristine=base / "pristine",
        store_url=pgvector_server.url("flow_world"),
        documents=demo_corpus.documents[:N_PAIR_DOCS],
        minilm_path=minilm_path,
        corpus=base / "corpus.jsonl",
        plan_v1=base / "plan-v1.json",
        plan_v2=base / "plan-v2.json",
        server=pgvector_server,
    )
    with pytest.MonkeyPatch.context() as mp:  # the workspaces of this process read the credentials here
        mp.setenv("PGUSER", pgvector_server.user)
        mp.setenv("PGPASSWORD", pgvector_server.password)
        pair.build()
        try:
            yield pair
        finally:
            pair.drop()


def _consistent(pair: PgPair, collection: str = "docs") -> str:
    """The live version, once the state, the store's alias and PostgreSQL's view agree and verify finds nothing."""
    from reindexer import commands

    with pair.workspace() as ws:
        [row] = commands.status(ws, collection)
        live = row["live"]["physical"]
        assert ws.store.resolve(collection) == live and not row["repairs"], row
        assert commands.verify(ws, collection).ok
    assert pair.view(collection) == live
    return live


def _apply_after_swap(pair: PgPair) -> None:
    plan = str(pair.plan_v2)
    was_killed(reindex(pair, "--yes", "apply", plan, kill_at="after-alias-swap"))
    assert pair.view() == "docs__v2"  # the view moved, the state did not
    assert pair.statuses() == {1: "live", 2: "verified"}
    r = completed(reindex_here(pair, "--json", "--yes", "apply", plan))
    assert r["cut_over"] and r["live"] == "docs__v2" and "interrupted cut-over" in r["message"]
    assert pair.statuses() == {1: "retired", 2: "live"} and _consistent(pair) == "docs__v2"


def _apply_before_swap(pair: PgPair) -> None:
    was_killed(reindex(pair, "--yes", "apply", str(pair.plan_v2), kill_at="before-alias-swap"))
    assert pair.view() == "docs__v1" and pair.statuses() == {1: "live", 2: "verified"}
    r = completed(reindex_here(pair, "--json", "--yes", "apply", "--resume", "docs"))
    assert r["cut_over"] and r["live"] == "docs__v2" and r["stats"].get("embedded", 0) == 0
    assert pair.statuses() == {1: "retired", 2: "live"} and _consistent(pair) == "docs__v2"


def _cutover_after_swap(pair: PgPair) -> None:
    was_killed(reindex(pair, "--yes", "cutover", "docs", kill_at="after-alias-swap"))
    assert pair.view() == "docs__v2" and pair.statuses() == {1: "live", 2: "verified"}
    [row] = completed(reindex_here(pair, "--json", "status", "docs"))  # takes over the dead process's lease
    assert [(r["kind"], r["recorded"]) for r in row["repairs"]] == [("completed", True)]
    assert pair.statuses() == {1: "retired", 2: "live"} and _consistent(pair) == "docs__v2"


def _cutover_before_swap(pair: PgPair) -> None:
    was_killed(reindex(pair, "--yes", "cutover", "docs", kill_at="before-alias-swap"))
    assert pair.view() == "docs__v1"
    r = completed(reindex_here(pair, "--json", "--yes", "cutover", "docs"))
    assert r["live"] == "docs__v2" and _consistent(pair) == "docs__v2"


def _rollback_after_swap(pair: PgPair) -> None:
    from reindexer import commands

    with pair.workspace() as ws:
        commands.cutover(ws, "docs")
    was_killed(reindex(pair, "--yes", "rollback", "docs", kill_at="after-alias-swap"))
    assert pair.view() == "docs__v1" and pair.statuses() == {1: "retired", 2: "live"}
    again = reindex_here(pair, "--yes", "rollback", "docs")
    assert again.returncode == 0 and "completed the interrupted rollback" in again.stdout, again.describe()
    assert pair.statuses() == {1: "live", 2: "retired"} and _consistent(pair) == "docs__v1"


def _gc_after_drop(pair: PgPair) -> None:
    from reindexer import commands

    with pair.workspace() as ws:
        commands.cutover(ws, "docs")
    was_killed(reindex(pair, "--yes", "gc", "docs", "--keep", "0", kill_at="gc-after-drop"))
    with pair.server.connect(pair.database) as conn:
        assert "docs__v1" not in _relations(conn) and "docs__v1" not in _catalog(conn)[0]
    r = completed(reindex_here(pair, "--json", "--yes", "gc", "docs", "--keep", "0"))
    assert r["dropped"] == [] and [x["kind"] for x in r["repairs"]] == ["dropped"]
    assert pair.statuses() == {1: "dropped", 2: "live"} and _consistent(pair) == "docs__v2"


def _migrate_after_alias(pair: PgPair) -> None:
    # PostgreSQL drops the table and makes the view in one transaction: no moment without the name, so the kill
    # point between the two (migrate-after-drop) is never reached here; this one is after it, before the record.
    was_killed(reindex(pair, "--yes", "migrate", "kb", kill_at="migrate-after-alias"))
    with pair.server.connect(pair.database) as conn:
        assert _relations(conn)["kb"] == "v"  # the view is there; the state still says kb is the live table
    r = completed(reindex_here(pair, "--json", "--yes", "migrate", "kb"))
    assert r["migrated"] and r["completed"] and r["copied_to"] == "kb__v2"
    assert pair.statuses("kb") == {1: "dropped", 2: "live"} and _consistent(pair, "kb") == "kb__v2"
    with pair.server.connect(pair.database) as conn:
        assert _relations(conn)["kb"] == "v" and conn.execute("SELECT count(*) FROM kb").fetchone()[0] == N_KB_DOCS


def _adopt_before_record(pair: PgPair) -> None:
    from reindexer.adapters.base import MODEL_KEY

    with pair.server.connect(pair.database) as conn:  # an application's copy of kb's rows, untagged, no catalog row
        conn.execute("CREATE TABLE notes (id text PRIMARY KEY, embedding vector(384) NOT NULL, payload jsonb NOT NULL)")
        conn.execute("INSERT INTO notes SELECT id, embedding, payload - 'reindex_model' FROM kb")
    adopt = ("--json", "adopt", "notes", "--model", str(pair.minilm_path), "--sample", "4")
    was_killed(reindex(pair, *adopt, kill_at="adopt-before-record"))
    with pair.workspace() as ws:  # the store changed, the state did not
        assert ws.state.get_collection(ws.store_url, "notes") is None
        assert len({p.payload.get(MODEL_KEY) for page in ws.store.scroll("notes") for p in page} - {None}) == 1
    r = completed(reindex_here(pair, *adopt))
    assert r["collection"] == r["physical"] == "notes" and r["version"] == 1
    with pair.workspace() as ws:
        [row] = [r for r in ws.state.versions(ws.state.get_collection(ws.store_url, "notes").id)]
        assert row.status == "live" and row.point_count == N_KB_DOCS


def _sync_half_way(pair: PgPair) -> None:
    docs = [dict(d) for d in pair.documents]
    for d in docs[:6]:
        d["text"] = f"{d['text']} Edited after the first build."
    docs = docs[:-3] + [{"id": f"new-{j}", "text": f"A document added later, number {j}."} for j in range(3)]
    _write(pair.corpus, docs)
    cmd = ("--json", "--yes", "sync", "docs")
    killed = was_killed(reindex(pair, *cmd, kill_when=sync_batches_at_least(2, max_run_id(pair)), batch_size=2))
    assert killed.killed_at["batches"] >= 2
    r = completed(reindex_here(pair, *cmd, batch_size=2))
    done = sum(v["embedded"] for v in r["versions"].values())
    assert done < 2 * 9, f"the re-run started over: {r['versions']}"  # 9 changed documents, two versions
    with pair.server.connect(pair.database) as conn:
        assert _ids(conn, "docs__v1") == _ids(conn, "docs__v2") == sorted(d["id"] for d in docs)
        assert all(len(_tags(conn, t)) == 1 for t in ("docs__v1", "docs__v2"))
    assert _consistent(pair) == "docs__v1"
    with pair.workspace() as ws:
        from reindexer import commands

        assert commands.verify(ws, "docs", "v2").ok


KILLS = {
    "apply-after-alias-swap": _apply_after_swap,
    "apply-before-alias-swap": _apply_before_swap,
    "cutover-after-alias-swap": _cutover_after_swap,
    "cutover-before-alias-swap": _cutover_before_swap,
    "rollback-after-alias-swap": _rollback_after_swap,
    "gc-after-drop": _gc_after_drop,
    "migrate-after-alias": _migrate_after_alias,
    "adopt-before-record": _adopt_before_record,
    "sync-half-way": _sync_half_way,
}


@SLOW
@pytest.mark.parametrize("case", list(KILLS))
def test_a_sigkilled_command_is_repaired_by_the_next_one(pg_pair, case):
    pg_pair.restore()
    KILLS[case](pg_pair)


# -- the Ray executor ------------------------------------------------------------------------
@SLOW
def test_apply_executor_ray_writes_from_workers_and_equals_the_local_build(
    server_env, pgvector_server, minilm_path, small_corpus_file, tmp_path
):
    """`reindex apply --executor ray` in a process of its own, with a local Ray of its own (RAY_ADDRESS=local: the
    workers inherit that process's environment, where the server's credentials are, as on a cluster whose
    workers hold them): writer actors on the workers COPY the rows in; the result equals the local executor's."""
    pytest.importorskip("ray.data", reason='pip install "reindexer[ray]" (in the test extra) for the Ray executor')
    from reindexer.workspace import Workspace

    source = f"jsonl:{small_corpus_file}"
    ok("plan", "local_docs", "--model", str(minilm_path), "--source", source, "-o", "local.json")
    assert ok("apply", "local.json")["live"] == "local_docs__v1"
    ok("plan", "docs", "--model", str(minilm_path), "--source", source, "-o", "ray.json")
    applied = subprocess.run(
        [sys.executable, "-m", "reindexer.cli", "--yes", "--json", "apply", "ray.json", "--executor", "ray"],
        env={**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert applied.returncode == 0, applied.stderr[-3000:]
    out = json.loads(applied.stdout)
    assert out["cut_over"] and out["live"] == "docs__v1" and out["verification"]["ok"]
    assert out["stats"]["embedded"] == 60

    def built(ws: Workspace, collection: str) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
        physical = ws.store.resolve(collection)
        points = [p for page in ws.store.scroll(physical, batch_size=64, with_vectors=True) for p in page]
        [version] = ws.state.versions(ws.state.get_collection(ws.store_url, collection).id)
        return (
            {p.doc_id: p.payload for p in points},
            {p.doc_id: np.asarray(p.vector) for p in points},
            ws.state.ledger(version.id),
        )

    with Workspace.open(cwd=tmp_path) as ws:
        payloads, vectors, ledger = built(ws, "docs")
        want_payloads, want_vectors, want_ledger = built(ws, "local_docs")
    assert payloads == want_payloads and ledger == want_ledger and len(payloads) == 60  # the model tag included
    assert max(float(np.abs(vectors[d] - want_vectors[d]).max()) for d in want_vectors) <= 1e-5
    with pgvector_server.connect() as conn:  # both tables got their HNSW index after the load
        indexed = conn.execute("SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%hnsw%'").fetchall()
        assert sorted(r[0] for r in indexed) == ["docs__v1", "local_docs__v1"]
