"""Issue 22 point 4: every input file fuzzed.

Plan files (`reindex apply`), reindex.toml (`reindex config show`, `reindex plan`), JSONL and Parquet
sources (`reindex plan --source`), and the queries and qrels of `reindex eval` are generated malformed
by Hypothesis and handed to the CLI in-process. Each must be refused as its user meets it: exit 2, 3
or 4, a message on stderr that names the problem, no traceback, no model weights loaded (a refusal
comes before any work), and the state database file and the store's files, collections and aliases
byte-for-byte as before. Seeded and derandomized, so a run is the same run every time.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st

from reindexer import commands
from reindexer import embedding as embedding_module
from reindexer.cli import cli
from reindexer.config import ENV_KEYS, Config
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace
from tests.plugins.corpus import write_jsonl

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class WeightsLoaded(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for name in (*ENV_KEYS, "REINDEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no reindex.toml of the checkout's


@pytest.fixture
def no_weights(monkeypatch):
    """Loading model weights raises: a malformed input is refused before any model is loaded."""
    import sentence_transformers

    def refuse(*args, **kwargs):
        raise WeightsLoaded("a refused input loaded model weights")

    class Refused:
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(embedding_module, "_LOADED", OrderedDict())
    monkeypatch.setattr(embedding_module, "load_sentence_transformer", refuse)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Refused)


@pytest.fixture(scope="module")
def live(tmp_path_factory, minilm_path, demo_corpus):
    """(store URL, state URL, folder, plan dict): ``docs`` live at v1 on 20 documents (Qdrant local),
    and a recorded plan for a new collection ``fresh`` (the base the plan-file mutations start from)."""
    folder = tmp_path_factory.mktemp("input-fuzz")
    url = f"qdrant+local:{folder / 'qdrant'}"
    state = f"sqlite:///{folder / 'state.db'}"
    docs = [{"_id": d["id"], **{k: v for k, v in d.items() if k != "id"}} for d in demo_corpus.documents[:20]]
    corpus = write_jsonl(folder / "corpus.jsonl", docs)
    with Workspace(Config(base_dir=folder, store_url=url, state_url=state, batch_size=32)) as ws:
        spec = SourceSpec(kind="jsonl", location=str(corpus), id_field="_id")
        commands.apply(ws, commands.plan(ws, "docs", model_path=str(minilm_path), estimate=False, source=spec))
        fresh = commands.plan(ws, "fresh", model_path=str(minilm_path), estimate=False, source=spec)
    return url, state, folder, json.loads(fresh.to_json()), docs


def _snapshot(url: str, folder: Path):
    from reindexer.adapters import open_store

    digest = hashlib.sha256((folder / "state.db").read_bytes()).hexdigest()
    files = tuple(
        sorted(
            (str(p.relative_to(folder / "qdrant")), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in (folder / "qdrant").rglob("*")
            if p.is_file() and p.name != ".lock"
        )
    )
    with open_store(url) as store:
        return digest, files, tuple(sorted(store.list_collections())), store.list_aliases()


def _refused(live, *args: str, names: tuple[str, ...] = (), codes=(2, 3, 4)) -> str:
    """Run the CLI on ``args``; it must refuse (exit in ``codes``) with a message on stderr naming
    each of ``names``, no traceback, and leave the state and the store as they were."""
    url, state, folder = live[:3]
    before = _snapshot(url, folder)
    r = CliRunner().invoke(cli, ["--store", url, "--state", state, *args])
    err = r.stderr
    assert not isinstance(r.exception, WeightsLoaded), f"{args}: the refusal loaded model weights"
    assert r.exit_code in codes, f"exit {r.exit_code}: {r.output}"
    assert "Traceback" not in r.output and "unexpected error" not in r.output, r.output
    assert err.strip(), "no message on stderr"
    for name in names:
        assert name in err, f"{name!r} not named in: {err}"
    assert _snapshot(url, folder) == before, "a refused input changed the store or the state"
    return err


# -- JSON values, for wrong types ----------------------------------------------------------
HUGE = 10**400  # beyond Python's 4300-digit int-from-text limit when read back
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


# -- plan files -------------------------------------------------------------------------------
PLAN_KEYS = (
    "id", "state_store_id", "created_at", "collection", "store", "mode", "reason", "from_version",
    "to_version", "source", "counts", "dimension_change", "estimate", "gate", "inputs_fingerprint",
    "schema", "inputs",
)  # fmt: skip


@st.composite
def bad_plans(draw, base: dict) -> bytes:
    kind = draw(st.sampled_from(["bytes", "not-json", "not-object", "schema", "missing", "wrong-type", "nested"]))
    if kind == "bytes":  # invalid UTF-8 somewhere in an otherwise plausible file
        raw = _dumps(base).encode()
        at = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xfe\xfe"]))
        return raw[:at] + bad + raw[at:]
    if kind == "not-json":
        return draw(st.sampled_from(["", "{", "plan", '{"schema": }', "[1,", "\x00", "{'a': 1}", "9" * 5000,
                                     "[" * 100_000 + "]" * 100_000, '{"schema": ' + "9" * 5000 + "}"])).encode()
    if kind == "not-object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return _dumps(value).encode()
    plan = dict(base)
    if kind == "schema":
        plan["schema"] = draw(json_values.filter(lambda v: v != base["schema"]))
    elif kind == "missing":
        for key in draw(st.lists(st.sampled_from(PLAN_KEYS), min_size=1, max_size=4, unique=True)):
            plan.pop(key, None)
        assume(plan != base)
    elif kind == "wrong-type":
        key = draw(st.sampled_from([k for k in PLAN_KEYS if k != "schema"]))
        plan[key] = draw(json_values)
        assume(_dumps(plan[key]) != _dumps(base[key]))
    else:  # a recorded plan, edited inside: a huge, NaN or wrong-typed value deep down
        key = draw(st.sampled_from(["to_version", "counts", "source", "estimate", "inputs"]))
        inner = dict(base[key])
        field = draw(st.sampled_from(sorted(inner) or ["x"]))
        inner[field] = draw(st.one_of(st.just(HUGE), st.just(math.nan), st.just(math.inf), json_values))
        assume(_dumps(inner) != _dumps(base[key]))
        plan[key] = inner
    return _dumps(plan).encode()


@pytest.fixture(scope="module")
def base_plan(live):
    return live[3]


def test_a_malformed_plan_file_is_refused(live, base_plan, tmp_path, no_weights):
    @FUZZ
    @given(raw=bad_plans(base_plan))
    @example(raw=b"\xff\xfe{}")  # was exit 1: UnicodeDecodeError
    @example(raw=b'{"schema": ' + b"9" * 5000 + b"}")  # was exit 1: past int's 4300-digit limit
    @example(raw=b"[" * 100_000 + b"]" * 100_000)  # was exit 1: RecursionError
    @example(raw=_dumps({**base_plan, "id": 5}).encode())  # was exit 1: TypeError
    @example(raw=_dumps({**base_plan, "counts": 5}).encode())  # was exit 1: TypeError
    @example(raw=_dumps({**base_plan, "mode": "noop"}).encode())  # was exit 0: an unrecorded noop plan "applied"
    @example(raw=_dumps({**base_plan, "reason": "edited"}).encode())  # the lease was written before the refusal
    def run(raw: bytes) -> None:
        note(f"plan file: {raw[:300]!r}")
        path = tmp_path / "plan.json"
        path.write_bytes(raw)
        err = _refused(live, "apply", str(path), "--yes")
        assert "plan" in err.lower()

    run()


# -- JSONL sources ------------------------------------------------------------------------------
def _good_lines(docs: list[dict], n: int) -> list[bytes]:
    return [json.dumps(d).encode() for d in docs[:n]]


DEFECTS = ["missing-id", "duplicate-id", "bad-id", "text-type", "no-text", "utf8", "not-json", "not-object", "huge"]


@st.composite
def bad_jsonl(draw, docs: list[dict]) -> tuple[bytes, str]:
    """(file bytes, a word the refusal must name)"""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([b"", b"\n\n", b"   \n"])), "empty"
    lines = _good_lines(docs, draw(st.integers(1, 6)))
    defect = draw(st.sampled_from(DEFECTS))
    at = draw(st.integers(0, len(lines)))
    base = {"_id": f"new-{at}", "text": "a document"}
    if defect == "missing-id":
        bad, word = json.dumps({"text": "no id here"}).encode(), "id"
    elif defect == "duplicate-id":
        bad, word = json.dumps(docs[0]).encode(), "duplicate"
        at = max(at, 1)
        if len(lines) < 1:
            lines = _good_lines(docs, 1)
    elif defect == "bad-id":
        value = draw(st.one_of(st.none(), st.booleans(), st.just(math.nan), st.just(math.inf), st.floats(),
                               st.lists(st.integers(), max_size=2), st.just(""), st.just({"a": 1})))
        bad, word = _dumps({**base, "_id": value}).encode(), "id"
    elif defect == "text-type":
        value = draw(st.one_of(st.none(), st.booleans(), st.integers(), st.just(math.nan), st.floats(),
                               st.lists(st.integers(), min_size=1, max_size=2), st.just(""), st.just("   ")))
        bad, word = _dumps({**base, "text": value}).encode(), "text"
    elif defect == "no-text":
        bad, word = json.dumps({"_id": base["_id"], "body": "x"}).encode(), "text"
    elif defect == "utf8":
        bad, word = b'{"_id": "u", "text": "caf\xe9 \xff"}', "UTF-8"
    elif defect == "not-json":
        bad, word = draw(st.sampled_from([b"{", b"{'_id': 1}", b'{"_id": "x", "text": }', b"NaN NaN"])), "JSON"
    elif defect == "not-object":
        bad, word = _dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode(), "line"
    else:  # huge: a number past int's digit limit, or nesting past the stack
        bad = draw(st.sampled_from([b'{"_id": ' + b"9" * 5000 + b', "text": "t"}',
                                    b'{"_id": "h", "text": "t", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"]))
        word = "line"
    lines.insert(min(at, len(lines)), bad)
    return b"\n".join(lines) + b"\n", word


def test_a_malformed_jsonl_source_is_refused_at_plan(live, minilm_path, tmp_path, no_weights):
    docs = live[4]

    @FUZZ
    @given(case=bad_jsonl(docs))
    @example(case=(b'{"_id": ' + b"9" * 5000 + b', "text": "t"}\n', "line 1"))  # was exit 1: int digit limit
    @example(case=(b'{"_id": "d", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "line 1"))  # RecursionError
    def run(case: tuple[bytes, str]) -> None:
        raw, word = case
        note(f"jsonl: {raw[:300]!r}")
        path = tmp_path / "src.jsonl"
        path.write_bytes(raw)
        _refused(live, "plan", "docs", "--model", str(minilm_path), "--source", f"jsonl:{path}",
                 "--id-field", "_id", names=(word,))

    run()


# -- Parquet sources -------------------------------------------------------------------------------
@st.composite
def bad_parquet(draw, docs: list[dict]) -> tuple[object, str]:
    """(a pyarrow table or raw bytes, a word the refusal must name)"""
    import pyarrow as pa

    kind = draw(st.sampled_from(["bytes", "empty", "no-id-column", "null-id", "duplicate", "text-type", "nan-text"]))
    if kind == "bytes":
        return draw(st.sampled_from([b"", b"PAR1", b"PAR1\x00\x00PAR1", b"not parquet"])), "parquet"
    rows = [{"_id": d["_id"], "text": d["text"]} for d in docs[: draw(st.integers(1, 5))]]
    if kind == "empty":
        return pa.table({"_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), "empty"
    if kind == "no-id-column":
        return pa.table({"text": [r["text"] for r in rows]}), "_id"
    if kind == "null-id":
        return pa.table({"_id": [r["_id"] for r in rows] + [None], "text": [r["text"] for r in rows] + ["t"]}), "id"
    if kind == "duplicate":
        ids = [r["_id"] for r in rows] + [rows[0]["_id"]]
        return pa.table({"_id": ids, "text": [r["text"] for r in rows] + ["again"]}), "duplicate"
    if kind == "text-type":
        values = draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=1, max_size=3))
        return pa.table({"_id": [f"p{i}" for i in range(len(values))], "text": pa.array(values, pa.int64())}), "text"
    return pa.table({"_id": ["a", "b"], "text": pa.array([math.nan, 1.5])}), "text"


def test_a_malformed_parquet_source_is_refused_at_plan(live, minilm_path, tmp_path, no_weights):
    import pyarrow.parquet as pq

    docs = live[4]

    @FUZZ
    @given(case=bad_parquet(docs))
    def run(case) -> None:
        table, word = case
        note(f"parquet: {table!r}")
        path = tmp_path / "src.parquet"
        if isinstance(table, bytes):
            path.write_bytes(table)
        else:
            pq.write_table(table, path)
        _refused(live, "plan", "docs", "--model", str(minilm_path), "--source", f"parquet:{path}",
                 "--id-field", "_id", names=(word,))

    run()


# -- reindex.toml ------------------------------------------------------------------------------------
def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


# (section, key, a bad value, a word the message must hold)
BAD_VALUES = st.one_of(
    st.tuples(st.just("defaults"), st.sampled_from(["batch_size", "embed_batch_size", "threads"]),
              st.integers(max_value=0), st.just("greater than 0")),
    st.tuples(st.just("defaults"), st.just("keep"), st.integers(max_value=-1), st.just("keep")),
    st.tuples(st.just("query"), st.just("shadow_sample"),
              st.one_of(st.floats(min_value=1.0001, allow_infinity=True, allow_nan=False),
                        st.floats(max_value=-0.0001, allow_infinity=True, allow_nan=False), st.just(math.nan)),
              st.just("shadow_sample")),
    st.tuples(st.just("query"), st.just("refresh"),
              st.one_of(st.floats(max_value=-0.0001, allow_infinity=True, allow_nan=False), st.just(math.nan)),
              st.just("refresh")),
    st.tuples(st.just("defaults"), st.just("precision"), st.sampled_from(["fp8", "int4", "double"]),
              st.just("precision")),
    st.tuples(st.just("collections.docs"), st.just("lexical"), st.sampled_from(["bm42", "splade", "BM25"]),
              st.just("lexical")),
    st.tuples(st.just("collections.docs"), st.just("keep"), st.integers(max_value=-1), st.just("keep")),
)
TYPED_KEYS = [
    ("store", "url", str), ("state", "url", str), ("defaults", "batch_size", int), ("defaults", "device", str),
    ("defaults", "keep", int), ("defaults", "gate", str), ("query", "refresh", float),
    ("query", "shadow_sample", float), ("query", "record_query_text", bool), ("apply", "executor", str),
    ("collections.docs", "source", str), ("collections.docs", "id_field", str), ("collections.docs", "keep", int),
]  # fmt: skip


def _wrong_type(kind: type):
    values = st.one_of(st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.text("ab", max_size=3),
                       st.lists(st.integers(0, 2), max_size=2))  # fmt: skip

    def ok_for(v) -> bool:
        if kind is float:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        return isinstance(v, kind) and not (kind is int and isinstance(v, bool))

    return values.filter(lambda v: not ok_for(v))


@st.composite
def bad_tomls(draw) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["syntax", "utf8", "unknown-section", "unknown-key", "wrong-type", "bad-value"]))
    if kind == "syntax":
        syntax = [b"[store\n", b"url = \n", b"[store]\nurl = 'a\n", b"= 1\n", b"[a]\n[a]\n"]
        return draw(st.sampled_from(syntax)), "reindex.toml"
    if kind == "utf8":
        return b'[store]\nurl = "caf\xe9"\n', "UTF-8"
    name = draw(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True))
    if kind == "unknown-section":
        assume(name not in ("store", "state", "defaults", "query", "apply", "collections"))
        return f"[{name}]\nx = 1\n".encode(), name
    if kind == "unknown-key":
        section = draw(st.sampled_from(["store", "state", "defaults", "query", "apply", "collections.docs"]))
        assume(name not in ("url", "batch_size", "device", "devices", "precision", "embed_batch_size", "threads",
                            "keep", "gate", "webhook", "refresh", "shadow_sample", "record_query_text",
                            "models_root", "executor", "ray_address", "source", "text_field", "vector_name",
                            "lexical", "id_field", "updated_field", "query", "queries", "qrels"))  # fmt: skip
        return f"[{section}]\n{name} = 1\n".encode(), name
    if kind == "wrong-type":
        section, key, typ = draw(st.sampled_from(TYPED_KEYS))
        value = draw(_wrong_type(typ))
        return f"[{section}]\n{key} = {_toml_value(value)}\n".encode(), key
    section, key, value, word = draw(BAD_VALUES)
    return f"[{section}]\n{key} = {_toml_value(value)}\n".encode(), word or key


def test_a_malformed_reindex_toml_is_refused(live, minilm_path, tmp_path, no_weights):
    @FUZZ
    @given(case=bad_tomls())
    def run(case: tuple[bytes, str]) -> None:
        raw, word = case
        note(f"reindex.toml: {raw[:300]!r}")
        (tmp_path / "reindex.toml").write_bytes(raw)
        try:
            _refused(live, "config", "show", names=(word,), codes=(2,))
            _refused(live, "plan", "docs", "--model", str(minilm_path), names=(word,), codes=(2,))
        finally:
            (tmp_path / "reindex.toml").unlink()

    run()


# -- queries.jsonl and qrels for `reindex eval` ------------------------------------------------------
@st.composite
def bad_judgements(draw, docs: list[dict]) -> tuple[bytes, bytes, str]:
    """(queries.jsonl, qrels, a word the refusal must name): one of the two malformed."""
    n = draw(st.integers(1, 4))
    queries = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(n)]
    qrels = [(f"q{i}", docs[i]["_id"], 1) for i in range(n)]
    q_lines = [json.dumps(q).encode() for q in queries]
    r_lines = [b"query-id\tcorpus-id\tscore"] + [f"{a}\t{b}\t{c}".encode() for a, b, c in qrels]
    kind = draw(st.sampled_from([
        "q-json", "q-missing-id", "q-missing-text", "q-nan", "q-duplicate", "q-utf8", "q-empty",
        "r-grade", "r-fields", "r-unknown-query", "r-unknown-doc", "r-conflict", "r-utf8", "r-empty", "r-header",
    ]))  # fmt: skip
    at = draw(st.integers(0, n))
    word = ""
    if kind == "q-json":
        q_lines.insert(at, draw(st.sampled_from([
            b"{", b"{'_id': 'q'}", b"[1, 2]", b'"q"', b"NaN", b'{"_id": "q9", "text": "t", "n": ' + b"9" * 5000 + b"}",
            b'{"_id": "q9", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        ])))  # fmt: skip
        word = "JSON"
    elif kind == "q-missing-id":
        q_lines.insert(at, json.dumps({"text": "who"}).encode())
        word = "_id"
    elif kind == "q-missing-text":
        value = draw(st.one_of(st.none(), st.integers(), st.just(""), st.lists(st.text(max_size=2), max_size=2)))
        q_lines.insert(at, _dumps({"_id": "qx", "text": value}).encode())
        word = "text"
    elif kind == "q-nan":
        value = draw(st.sampled_from([math.nan, math.inf, 1.5, True, None, [1]]))
        q_lines.insert(at, _dumps({"_id": value, "text": "who"}).encode())
        word = "_id"
    elif kind == "q-duplicate":
        q_lines.insert(max(at, 1), q_lines[0])
        word = "duplicate"
    elif kind == "q-utf8":
        q_lines.insert(at, b'{"_id": "qu", "text": "caf\xe9"}')
        word = "UTF-8"
    elif kind == "q-empty":
        q_lines = []
        word = "empty"
    elif kind == "r-grade":
        grade = draw(st.sampled_from(["1.5", "NaN", "nan", "inf", "x", "1e3", "9" * 5000, "", "--1"]))
        r_lines.insert(1 + at, f"q0\t{docs[0]['_id']}\t{grade}".encode())
        word = "q" if grade == "" else "relevance"
    elif kind == "r-fields":
        r_lines.insert(1 + at, draw(st.sampled_from([b"q0", b"q0\tx", b"q0\tx\t1\t2\t3"])))
        word = "fields"
    elif kind == "r-unknown-query":
        r_lines = [r_lines[0]] + [f"zz{i}\t{docs[i]['_id']}\t1".encode() for i in range(n)]
        word = "query ids"
    elif kind == "r-unknown-doc":
        r_lines = [r_lines[0]] + [f"q{i}\tno-such-doc-{i}\t1".encode() for i in range(n)]
        word = "document ids"
    elif kind == "r-conflict":
        r_lines.insert(1 + at, f"q0\t{docs[0]['_id']}\t2".encode())
        word = "judges"
    elif kind == "r-utf8":
        r_lines.insert(1 + at, b"q0\tcaf\xe9\t1")
        word = "UTF-8"
    elif kind == "r-empty":
        r_lines = draw(st.sampled_from([[], [r_lines[0]]]))
        word = "qrels"
    else:
        r_lines[0] = b"query\tdoc\tgrade"
        word = "header"
    return b"\n".join(q_lines) + b"\n", b"\n".join(r_lines) + b"\n", word


def test_malformed_queries_or_qrels_are_refused_by_eval(live, tmp_path, no_weights):
    docs = live[4]

    @FUZZ
    @given(case=bad_judgements(docs))
    @example(case=(b'{"_id": "q", "text": "t", "n": ' + b"9" * 5000 + b"}\n", b"", "queries.jsonl:1"))
    @example(case=(b'{"_id": "q0", "text": "who"}\n', b"query-id\tcorpus-id\tscore\nzz\t" + docs[0]["_id"].encode()
                   + b"\t1\n", "query ids"))  # the model was loaded before this was refused
    @example(case=(b'{"_id": "q0", "text": "who"}\n', b"query-id\tcorpus-id\tscore\nq0\t" + docs[0]["_id"].encode()
                   + b"\t0\n", "relevant"))  # the model was loaded before this was refused
    def run(case: tuple[bytes, bytes, str]) -> None:
        queries, qrels, word = case
        note(f"queries: {queries[:300]!r}\nqrels: {qrels[:300]!r}")
        (tmp_path / "queries.jsonl").write_bytes(queries)
        (tmp_path / "qrels.tsv").write_bytes(qrels)
        _refused(live, "eval", "docs", "--queries", str(tmp_path / "queries.jsonl"),
                 "--qrels", str(tmp_path / "qrels.tsv"), names=(word,))

    run()
