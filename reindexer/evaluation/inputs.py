"""Loading queries, relevance judgements (qrels) and query logs.

Formats:

- BEIR queries: ``queries.jsonl``, one object per line with ``_id`` and
  ``text``; other keys (``metadata`` ...) are ignored.
- BEIR qrels: a TSV with the header ``query-id  corpus-id  score`` and one
  graded judgement (an integer) per line.
- TREC qrels: whitespace separated ``qid iteration docid rel``, no header.
  The format is detected from the first non-blank line.
- Query logs (for label-free comparison): plain text, one query per line, or
  JSONL with ``text`` and an optional ``_id``/``id``.

Every problem in a file is a ``UsageError`` that names the file and the line,
because the person who has to fix it is looking at that file. A missing file is
a ``NotFoundError``.

``align`` then applies trec_eval's rules to a (queries, qrels) pair: judgements
for queries that are not in the query file are ignored, and queries without a
single relevant document are skipped, both counted so a report can say so.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reindexer.errors import NotFoundError, UsageError

Queries = dict[str, str]
"""query id -> query text"""
Qrels = dict[str, dict[str, int]]
"""query id -> {doc id -> graded relevance}"""

RELEVANCE_THRESHOLD = 1
"""trec_eval's default relevance level: a grade of at least 1 is relevant."""

BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")


def _lines(path: str | Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line; errors if there is none."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{what} file not found: {p}")
    if p.is_dir():
        raise UsageError(f"{what} path is a directory, not a file: {p}")
    seen = False
    # utf-8-sig: files written on Windows often start with a BOM that would
    # otherwise become part of the first id.
    with p.open(encoding="utf-8-sig") as fh:
        try:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if line:
                    seen = True
                    yield lineno, line
        except UnicodeDecodeError as exc:
            raise UsageError(f"{p}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if not seen:
        raise UsageError(f"{p}: the {what} file is empty")


def _json_object(path: str | Path, lineno: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:  # a number past int's digit limit; nesting past the stack
        raise UsageError(f"{path}:{lineno}: cannot be read as JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path}:{lineno}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _id_string(value: object) -> str | None:
    """Ids may be written as JSON numbers; bools and nulls are not ids."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def load_queries(path: str | Path) -> Queries:
    """Read a BEIR ``queries.jsonl`` into {query id: text}, in file order."""
    queries: Queries = {}
    first_line: dict[str, int] = {}
    for lineno, line in _lines(path, "queries"):
        obj = _json_object(path, lineno, line)
        qid = _id_string(obj.get("_id"))
        if qid is None:
            raise UsageError(f"{path}:{lineno}: missing or empty '_id' (a BEIR query needs '_id' and 'text')")
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{path}:{lineno}: query {qid!r} has no 'text' (a non-empty string is needed)")
        if qid in queries:
            raise UsageError(f"{path}:{lineno}: duplicate query id {qid!r} (first on line {first_line[qid]})")
        queries[qid] = text
        first_line[qid] = lineno
    return queries


def _parse_grade(path: str | Path, lineno: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{path}:{lineno}: relevance {value!r} is not an integer") from None


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def detect_qrels_format(first_line: str) -> str:
    """'beir' for a TSV whose first line is the header, 'trec' for 4-column lines."""
    fields = first_line.split()
    if len(fields) == 3 and not _is_int(fields[2]):
        return "beir"
    if len(fields) == 4 and _is_int(fields[3]):
        return "trec"
    return "unknown"


def load_qrels(path: str | Path) -> Qrels:
    """Read BEIR TSV or TREC qrels (detected) into {query id: {doc id: grade}}.

    A judgement repeated with the same grade is harmless and kept once; the
    same (query, doc) pair with two different grades is an error, because
    silently keeping either one would change the metrics.
    """
    lines = _lines(path, "qrels")
    lineno, first = next(lines)
    fmt = detect_qrels_format(first)
    if fmt == "beir":
        header = tuple(f.lower() for f in first.split())
        if header != BEIR_QRELS_HEADER:
            raise UsageError(
                f"{path}:{lineno}: unexpected qrels header {first!r}",
                hint="a BEIR qrels TSV starts with 'query-id\\tcorpus-id\\tscore'",
            )
        body: Iterator[tuple[int, str]] = lines
        width = 3
    elif fmt == "trec":
        body = _chain_first(lineno, first, lines)
        width = 4
    else:
        raise UsageError(
            f"{path}:{lineno}: cannot tell the qrels format from the first line {first!r}",
            hint="expected a BEIR TSV header 'query-id\\tcorpus-id\\tscore' or TREC lines 'qid iteration docid rel'",
        )

    qrels: Qrels = {}
    seen_at: dict[tuple[str, str], int] = {}
    for n, line in body:
        fields = line.split("\t") if fmt == "beir" and "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if len(fields) != width or not all(fields):
            expected = "query-id<TAB>corpus-id<TAB>score" if fmt == "beir" else "qid iteration docid rel"
            raise UsageError(f"{path}:{n}: expected {width} fields ({expected}), found {len(fields)}: {line!r}")
        if fmt == "beir":
            qid, docid, grade_text = fields
        else:
            qid, _iteration, docid, grade_text = fields
        grade = _parse_grade(path, n, grade_text)
        judged = qrels.setdefault(qid, {})
        if docid in judged and judged[docid] != grade:
            raise UsageError(
                f"{path}:{n}: query {qid!r} judges document {docid!r} {grade}, "
                f"but line {seen_at[(qid, docid)]} judged it {judged[docid]}"
            )
        judged[docid] = grade
        seen_at.setdefault((qid, docid), n)
    if not qrels:
        raise UsageError(f"{path}: the qrels file has a header but no judgements")
    return qrels


def _chain_first(lineno: int, line: str, rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield lineno, line
    yield from rest


def load_query_log(path: str | Path) -> Queries:
    """Read a query log: plain lines, or JSONL with ``text`` and optional ``_id``/``id``.

    The format is JSONL when the first non-blank line is a JSON object. Lines
    without an id get ``line-<n>`` so results can be traced back to the file.
    Repeated query texts are kept: a log counts popular queries more than once.
    """
    queries: Queries = {}
    first_line: dict[str, int] = {}
    is_jsonl: bool | None = None
    for lineno, line in _lines(path, "query log"):
        if is_jsonl is None:
            is_jsonl = line.startswith("{")
        if is_jsonl:
            obj = _json_object(path, lineno, line)
            text = obj.get("text")
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"{path}:{lineno}: no 'text' (a non-empty string is needed)")
            raw_id = obj.get("_id", obj.get("id"))
            qid = _id_string(raw_id) if raw_id is not None else f"line-{lineno}"
            if qid is None:
                raise UsageError(f"{path}:{lineno}: the query id {raw_id!r} is not a string or integer")
        else:
            text, qid = line, f"line-{lineno}"
        if qid in queries:
            raise UsageError(f"{path}:{lineno}: duplicate query id {qid!r} (first on line {first_line[qid]})")
        queries[qid] = text
        first_line[qid] = lineno
    return queries


@dataclass(frozen=True)
class SkippedCounts:
    """What ``align`` left out, so reports can say how many queries really counted."""

    queries_without_relevant: int = 0
    """Queries with no judgement of grade >= 1 (trec_eval skips them too)."""
    qrels_unknown_queries: int = 0
    """Distinct query ids in the qrels that the query file does not have."""
    qrels_unknown_judgements: int = 0
    """Judgement lines belonging to those unknown query ids."""

    def as_dict(self) -> dict[str, int]:
        return {
            "queries_without_relevant": self.queries_without_relevant,
            "qrels_unknown_queries": self.qrels_unknown_queries,
            "qrels_unknown_judgements": self.qrels_unknown_judgements,
        }


@dataclass(frozen=True)
class LabelledQueries:
    """Queries and qrels restricted to the queries that can be scored."""

    queries: Queries
    qrels: Qrels
    skipped: SkippedCounts = field(default_factory=SkippedCounts)


def has_relevant(judgements: Mapping[str, int]) -> bool:
    return any(grade >= RELEVANCE_THRESHOLD for grade in judgements.values())


def align(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]) -> LabelledQueries:
    """Keep queries that have at least one relevant judgement, in query-file order.

    Raises ``UsageError`` when nothing is left, naming the likely cause: the
    query ids of the two files do not match at all, or no judgement is relevant.
    """
    unknown = [qid for qid in qrels if qid not in queries]
    kept_queries: Queries = {}
    kept_qrels: Qrels = {}
    without_relevant = 0
    for qid, text in queries.items():
        judgements = qrels.get(qid, {})
        if has_relevant(judgements):
            kept_queries[qid] = text
            kept_qrels[qid] = dict(judgements)
        else:
            without_relevant += 1
    skipped = SkippedCounts(
        queries_without_relevant=without_relevant,
        qrels_unknown_queries=len(unknown),
        qrels_unknown_judgements=sum(len(qrels[qid]) for qid in unknown),
    )
    if not kept_queries:
        if qrels and len(unknown) == len(qrels):
            example = next(iter(qrels))
            raise UsageError(
                f"none of the {len(qrels)} query ids in the qrels is in the queries (for example {example!r})",
                hint="the qrels and queries files are probably from different data sets or splits",
            )
        raise UsageError(f"no query has a relevant judgement (grade >= {RELEVANCE_THRESHOLD}); nothing to evaluate")
    return LabelledQueries(kept_queries, kept_qrels, skipped)


@dataclass(frozen=True)
class DocIdCheck:
    """How many judged documents exist in the collection being evaluated."""

    judged: int
    """Distinct judged doc ids."""
    unknown: int
    """Judged doc ids the collection does not contain."""
    unknown_relevant: int
    """Of those, how many are relevant in at least one judgement: unreachable hits."""
    examples: tuple[str, ...]
    """A few unknown ids, sorted, for the message."""

    def as_dict(self) -> dict[str, object]:
        return {
            "judged": self.judged,
            "unknown": self.unknown,
            "unknown_relevant": self.unknown_relevant,
            "examples": list(self.examples),
        }


def check_doc_ids(
    qrels: Mapping[str, Mapping[str, int]], known_doc_ids: Collection[str], *, examples: int = 5
) -> DocIdCheck:
    """Compare judged doc ids with the collection's ids.

    Some unknown ids are normal (a corpus subset, deleted documents) and are
    only counted: they lower recall for every version alike. If *none* match,
    the qrels are for another collection or use another id scheme, and every
    metric would be zero, so that is a ``UsageError``.
    """
    known = known_doc_ids if isinstance(known_doc_ids, (set, frozenset)) else set(known_doc_ids)
    judged: set[str] = set()
    relevant: set[str] = set()
    for judgements in qrels.values():
        judged.update(judgements)
        relevant.update(d for d, g in judgements.items() if g >= RELEVANCE_THRESHOLD)
    unknown = judged - known
    if judged and unknown == judged:
        sample = ", ".join(repr(d) for d in sorted(unknown)[:examples])
        raise UsageError(
            f"none of the {len(judged)} judged document ids is in the collection (for example {sample})",
            hint="the qrels belong to another collection, or the collection keeps its document ids in another field",
        )
    return DocIdCheck(
        judged=len(judged),
        unknown=len(unknown),
        unknown_relevant=len(unknown & relevant),
        examples=tuple(sorted(unknown)[:examples]),
    )
