"""What the PostgreSQL application tests share (langchain-postgres' two layouts, LlamaIndex's PGVectorStore):
the workspace on ``pgvector+local``, the application's writes, the judged corpus and gates, the judgements
as ``reindex eval`` reads them, and a reader running SQL through the application's name."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

from reindexer.ab import Judgements
from reindexer.config import Config
from reindexer.workspace import Workspace

N = 20
N_QUERIES = 6
#: the cut-over's gate: the 256-dimension cut may lose a little nDCG on these few queries, not more
GATE = "ndcg@10 >= -0.1"
#: a gate asking for a gain that the truncation cannot show: it refuses the cut-over
STRICT = "ndcg@10 significantly better at p < 0.05"
WRITES = [
    "Zebras cross the Mara river every year in search of fresh grazing.",  # after adopt and migrate
    "A sourdough starter needs flour, water and a warm kitchen.",  # after the shadow is built
    "Lighthouses once burned whale oil to guide ships past the reef.",  # after the cut-over
]


def pg_workspace(folder: Path) -> Workspace:
    """A workspace on the embedded PostgreSQL under ``folder``, its state in SQLite beside it."""
    return Workspace(
        Config(
            base_dir=folder,
            store_url=f"pgvector+local:{folder / 'pg'}",
            state_url=f"sqlite:///{folder}/state.db",
            batch_size=8,
        )
    )


def connect(ws: Workspace):
    """A connection of the application's own to the workspace's database (autocommit)."""
    import psycopg

    info = ws.store._client.info
    return psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=info.dbname, autocommit=True)


def judged_corpus(demo_corpus) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, int]]]:
    """``N`` documents holding every relevant document of the first ``N_QUERIES`` queries, and those queries."""
    qids = list(demo_corpus.queries)[:N_QUERIES]
    qrels = {q: dict(demo_corpus.qrels[q]) for q in qids}
    by_id = demo_corpus.doc_by_id()
    wanted = list(dict.fromkeys(d for q in qids for d in qrels[q]))
    wanted += [d["id"] for d in demo_corpus.documents if d["id"] not in wanted][: N - len(wanted)]
    return [by_id[d] for d in wanted], {q: demo_corpus.queries[q] for q in qids}, qrels


def write_judgements(
    queries: dict[str, str], judged: dict[str, dict[str, int]], folder: Path
) -> tuple[Judgements, Path, Path]:
    """Qrels already in the tool's document ids, in memory and as the files ``reindex eval`` reads."""
    queries_file, qrels_file = folder / "queries.jsonl", folder / "qrels.tsv"
    queries_file.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    with qrels_file.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows([q, doc_id, grade] for q, rels in judged.items() for doc_id, grade in rels.items())
    return Judgements(queries, judged, "the corpus's qrels"), queries_file, qrels_file


class SqlReader(threading.Thread):
    """``query`` over and over on a connection of its own, every failure kept; each answer must be 3 rows of one
    version, the vector's dimension their last column."""

    def __init__(self, ws: Workspace, query: str):
        super().__init__(daemon=True)
        self.conn, self.query = connect(ws), query
        self.stop, self.queries, self.failures = threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rows = self.conn.execute(self.query).fetchall()
                assert len(rows) == 3 and len({r[-1] for r in rows}) == 1  # one version's rows
                self.queries += 1
            except Exception as exc:  # noqa: BLE001 - what the test counts
                self.failures.append(repr(exc))

    def __enter__(self) -> SqlReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(30)
        self.conn.close()
