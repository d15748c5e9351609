"""Where document text comes from.

A source yields ``Document(doc_id, text, payload)``. The payload is every field
the application keeps beside the text, copied untouched into the new index.
``content_hash`` is what the ledger compares: the same text and payload under
the same model version is never embedded twice.
"""

from __future__ import annotations

import abc
import datetime
import decimal
import functools
import hashlib
import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reindexer.adapters.base import RESERVED_PAYLOAD_KEYS
from reindexer.errors import UsageError
from reindexer.idset import IdSet
from reindexer.sampling import Reservoir


@dataclass
class Document:
    doc_id: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)
    # Optional watermark value (ISO-8601 string or number) for incremental sources.
    updated_at: Any = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.text, self.payload)


def content_hash(text: str, payload: dict[str, Any]) -> str:
    """sha256 over the text and the canonical JSON of the payload.

    The payload counts because it is written into the index with the vector: a
    changed payload field must reach the store even when the text did not change.
    """
    h = hashlib.sha256()
    h.update(text.encode("utf-8"))
    h.update(b"\x00")
    h.update(_CANONICAL.encode(payload).encode("utf-8"))
    return h.hexdigest()


# json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str) without building an
# encoder per call (a third of the hash's time): the same bytes, so every ledger stays valid.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


class Source(abc.ABC):
    """A finite stream of documents; iterate it again to read it again."""

    #: Short, secret-free description for plans, logs and state, e.g. "jsonl:/data/docs.jsonl".
    description: str

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Document]: ...

    def close(self) -> None:  # noqa: B027 - optional hook: sources holding nothing keep it
        """Release files, connections or store handles."""

    # Added with the sources: context-manager support and a full-pass scan.
    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, sample: int = 0, seed: int = 0) -> ScanResult:
        """One full pass: how many documents, their ids, the newest ``updated_at`` (see ``ScanResult``),
        and, with ``sample``, that many documents drawn uniformly from the whole pass (``ScanResult.sample``).

        The default reads every document; ``RecordSource`` overrides it to
        collect *all* bad records into one error instead of stopping at the first.
        Close the result (or use it as a context manager) to drop its ids.
        """
        result = ScanResult(sample_size=sample, sample_seed=seed)
        try:
            chunk: list[str] = []  # a chunk per call: a spilled IdSet answers each with one query
            for doc in self:
                chunk.append(doc.doc_id)
                result._see(doc.updated_at)
                result.offer(doc)
                if len(chunk) >= ID_CHUNK:
                    result.ids.add(chunk)
                    chunk = []
            result.ids.add(chunk)
        except BaseException:
            result.close()
            raise
        return result


# ---------------------------------------------------------------------------
# Shared machinery of the built-in sources (payload, jsonl, parquet, sql).
# ---------------------------------------------------------------------------

#: Where every source points users whose text is not where they said.
TEXT_FIELD_HINT = (
    "pass --text-field with the payload path that holds the text, e.g. page_content; "
    "for several fields, a template such as --text '{title}. {text}'"
)

# LlamaIndex keeps each node as a JSON string under this payload key.
NODE_CONTENT_KEY = "_node_content"

_EXAMPLES = 5  # ids quoted in an error message
ID_CHUNK = 1000  # rows whose ids are checked against the pass's IdSet at once


@dataclass
class ScanResult:
    """What a full pass over a source saw, in memory that does not grow with the source.

    ``ids`` holds every current doc id (an ``IdSet``: in memory for a small source,
    in a temporary file beyond; iterated in sorted order) and ``count`` their number.
    ``max_updated_at`` is the largest ``Document.updated_at`` seen, the next watermark
    for a ``since`` pass; it is None when the source has no updated field or the pass
    found no rows (keep the previous watermark then). The content hashes are not kept:
    the diff against a ledger streams in the pipeline (reindexer.build.stream).
    """

    ids: IdSet = field(default_factory=IdSet)
    max_updated_at: Any = None
    #: how many documents the pass keeps as a uniform random sample (``sample``), 0 for none
    sample_size: int = 0
    sample_seed: int = 0
    _reservoir: Reservoir[Document] | None = None

    @property
    def sample(self) -> list[Document]:
        """``sample_size`` documents drawn uniformly from the whole pass (all of them when there are fewer),
        in random order, so any prefix is a uniform sample too; the same source and seed, the same sample."""
        shuffled = list(self._reservoir.chosen) if self._reservoir is not None else []
        random.Random(self.sample_seed).shuffle(shuffled)
        return shuffled

    @property
    def count(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self.ids.close()

    def __enter__(self) -> ScanResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def offer(self, doc: Document) -> None:
        """One document of the pass, for the sample (reindexer.sampling.Reservoir)."""
        if not self.sample_size:
            return
        if self._reservoir is None:
            self._reservoir = Reservoir(self.sample_size, self.sample_seed)
        self._reservoir.offer(doc)

    def _see(self, updated_at: Any) -> None:
        if updated_at is None:
            return
        try:
            if self.max_updated_at is None or updated_at > self.max_updated_at:
                self.max_updated_at = updated_at
        except TypeError:
            raise UsageError(
                f"updated-field values of different types cannot be compared: "
                f"{self.max_updated_at!r} and {updated_at!r}"
            ) from None


def _duplicate(description: str, doc_id: str, where: str) -> UsageError:
    return UsageError(
        f"{description}: duplicate id {doc_id!r} at {where}",
        hint="every document needs its own id; deduplicate the source",
    )


def resolve_path(obj: Any, path: str) -> Any:
    """``obj['a']['b']`` for ``path='a.b'`` (a key that itself contains dots wins); a JSON string holding an
    object is descended into.

    ``metadata.title`` reads ``obj["metadata"]["title"]``; when
    ``obj["metadata"]`` is the *string* ``'{"title": ...}'`` it is parsed first.
    A string has no keys, so this never changes what an ordinary path means.
    Raises ``KeyError`` when the path does not exist.
    """
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    cur: Any = obj
    for part in path.split("."):
        if isinstance(cur, str):
            cur = _json_object(cur)
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def _json_object(value: str) -> dict[str, Any] | None:
    s = value.lstrip()
    if not s.startswith("{"):
        return None
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):  # not JSON, or nested past the stack: a plain text
        return None
    return obj if isinstance(obj, dict) else None


#: a ``{path}`` placeholder of a text template; ``{{`` and ``}}`` are literal braces
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")


@functools.lru_cache(maxsize=256)  # asked once per document of a pass, about a handful of strings
def is_template(text_field: str) -> bool:
    """True when ``text_field`` is a text template (``"{title}. {text}"``), not one payload path."""
    return any(m.group(1) for m in _PLACEHOLDER.finditer(text_field or "") if m.group(1) and m.group(1).strip())


def template_fields(text_field: str) -> list[str]:
    """The payload paths a template reads, in order (a plain path: itself)."""
    if not is_template(text_field):
        return [text_field]
    return [m.group(1).strip() for m in _PLACEHOLDER.finditer(text_field) if m.group(1) and m.group(1).strip()]


def fields_template(fields: list[str] | tuple[str, ...]) -> str:
    """The text field of several paths (repeated ``--text-field``): one path as it is, else a template
    joining them with a blank line, so ``title`` and ``text`` give ``"{title}\n\n{text}"``."""
    fields = [f for f in fields if f]
    if len(fields) == 1:
        return fields[0]
    return "\n\n".join("{" + f + "}" for f in fields)


def _placeholder_value(record: dict[str, Any], path: str) -> str:
    """What a placeholder renders: text, a number, or "" for a missing or empty field."""
    if path.rsplit(".", 1)[-1] == NODE_CONTENT_KEY:
        return extract_text(record, path) or ""
    try:
        value = resolve_path(record, path)
    except KeyError:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return ""


def render_template(record: dict[str, Any], template: str) -> str:
    """``template`` with each ``{path}`` replaced by the record's value there ("" when missing)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return _placeholder_value(record, m.group(1).strip())

    return _PLACEHOLDER.sub(one, template).strip()


def _all_placeholders_empty(record: dict[str, Any], template: str) -> bool:
    return not any(_placeholder_value(record, f).strip() for f in template_fields(template))


def extract_text(record: dict[str, Any], text_field: str) -> str | None:
    """The text under ``text_field``, or None when it is missing, not a string or blank.

    A *text template* (``"{title}. {text}"``, see ``is_template``) renders every
    ``{path}`` placeholder from the record (a missing field renders empty); a
    document whose placeholders are all empty has no text (None), so the
    template's literal punctuation alone never becomes a document.

    ``text_field`` is a dotted path (``page_content``, ``metadata.body``); a key
    that itself contains dots wins, and JSON strings holding an object are
    descended into (``_node_content.text``).

    LlamaIndex: when the path's last part is ``_node_content`` the value is the
    node serialised as JSON, and the text is its ``"text"`` member (or, for
    newer node classes, ``"text_resource"."text"``). So ``--text-field
    _node_content`` reads LlamaIndex collections; the ``_node_content`` payload
    field itself is still copied untouched. Other fields are never parsed as
    JSON when they are the final value, so a document whose text happens to be
    JSON is embedded as it is; and a ``_node_content`` that is not a JSON object
    with text counts as no text (it is not a LlamaIndex node).
    """
    if is_template(text_field):
        if _all_placeholders_empty(record, text_field):
            return None
        text = render_template(record, text_field)
        return text if text.strip() else None
    try:
        value = resolve_path(record, text_field)
    except KeyError:
        return None
    if text_field.rsplit(".", 1)[-1] == NODE_CONTENT_KEY:
        node = _json_object(value) if isinstance(value, str) else value
        value = None
        if isinstance(node, dict):
            value = node.get("text")
            if not (isinstance(value, str) and value.strip()):
                resource = node.get("text_resource")
                value = resource.get("text") if isinstance(resource, dict) else None
    if isinstance(value, str) and value.strip():
        return value
    return None


def normalize_doc_id(value: Any) -> str | None:
    """A document id as a string; None when the value cannot be one.

    Strings (non-empty) and integers are accepted, UUIDs become their string
    form. Floats and booleans are refused: ``1.0`` and ``"1"`` must not be
    silently taken for one another.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, uuid.UUID):
        return str(value)
    return None


def jsonable(value: Any) -> Any:
    """``value`` made storable as a JSON payload.

    Files and databases hand back types JSON has no word for: datetimes, dates
    and times become ISO-8601 strings, ``Decimal`` an int or float, UUIDs
    strings, tuples lists; dicts and lists are converted recursively. Bytes
    raise ``TypeError`` (the caller names the field).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes")
    raise TypeError(type(value).__name__)


class RecordSource(Source):
    """A source whose rows are dicts: the id, text and updated-at value are read by name.

    Subclasses implement ``_records()``, yielding ``(where, doc_id, record)``:
    ``where`` names the row for messages ("line 12", "row 5", "point #3"),
    ``doc_id`` is the id when the row carries it outside the record (the payload
    source, whose ids come from the store) or None to read it from ``id_field``.

    The document's payload is the record minus the id field (when it is a
    top-level key) and minus the tool's own payload keys; the text field stays
    in the payload, so applications that read it keep working after a cut-over.

    Iteration stops at the first bad row with a ``UsageError``; ``scan()`` reads
    everything and reports all rows without text in one message.
    """

    #: plural noun for messages: "lines", "rows", "points"
    unit = "rows"
    #: convert payload values with ``jsonable`` (files and SQL); the payload
    #: source copies what the store holds untouched.
    convert_payload = True

    def __init__(
        self,
        *,
        text_field: str = "text",
        id_field: str | None = "id",
        updated_field: str | None = None,
    ) -> None:
        if not text_field:
            raise ValueError("text_field must not be empty")
        self.text_field = text_field
        self.id_field = id_field
        self.updated_field = updated_field

    @abc.abstractmethod
    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]: ...

    # -- the shared pipeline ------------------------------------------------
    def __iter__(self) -> Iterator[Document]:
        with IdSet() as seen:
            yield from self.iter_into(seen)

    def iter_into(self, seen: IdSet) -> Iterator[Document]:
        """One pass whose ids go into ``seen``, a repeated id raising where it stands.

        Repeats are found against the IdSet a chunk at a time, so the ids of a pass stay
        out of memory however large the source (reindexer.idset). A consumer that needs
        the pass's ids afterwards (the pipeline, for deletions) passes its own set and
        keeps no second one.
        """
        for chunk in self._chunks():
            for where, doc_id, record in self._checked_ids(chunk, seen):
                text = extract_text(record, self.text_field)
                if text is None:
                    raise UsageError(
                        f"{self.description}: {where} (id {doc_id!r}) has no text under {self.text_field!r}",
                        hint=TEXT_FIELD_HINT,
                    )
                yield self._document(where, doc_id, text, record)

    def _chunks(self) -> Iterator[list[tuple[str, str | None, dict[str, Any]]]]:
        chunk: list[tuple[str, str | None, dict[str, Any]]] = []
        for item in self._records():
            chunk.append(item)
            if len(chunk) >= ID_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _checked_ids(
        self, chunk: list[tuple[str, str | None, dict[str, Any]]], seen: IdSet
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """The chunk's rows with their ids, in order; a bad or repeated id raises where it stands."""
        ids: list[str | UsageError] = []
        for where, doc_id, record in chunk:
            try:
                ids.append(self.read_id(where, doc_id, record))
            except UsageError as exc:
                ids.append(exc)
        valid = [i for i in ids if isinstance(i, str)]
        before = seen.present(valid)
        seen.add(valid)
        here: set[str] = set()
        for (where, _, record), got in zip(chunk, ids, strict=True):
            if isinstance(got, UsageError):
                raise got
            if got in before or got in here:
                raise _duplicate(self.description, got, where)
            here.add(got)
            yield where, got, record

    def scan(self, sample: int = 0, seed: int = 0) -> ScanResult:
        result = ScanResult(sample_size=sample, sample_seed=seed)
        missing: list[str] = []  # the first few ids without text, for the message
        missing_count = 0
        try:
            for chunk in self._chunks():
                for where, doc_id, record in self._checked_ids(chunk, result.ids):
                    text = extract_text(record, self.text_field)
                    if text is None:
                        missing_count += 1
                        if len(missing) < _EXAMPLES:
                            missing.append(doc_id)
                        continue
                    doc = self._document(where, doc_id, text, record)
                    result._see(doc.updated_at)
                    result.offer(doc)
        except BaseException:
            result.close()
            raise
        if missing_count:
            total = result.count
            result.close()
            examples = ", ".join(repr(i) for i in missing)
            more = ", ..." if missing_count > _EXAMPLES else ""
            raise UsageError(
                f"{self.description}: {missing_count} of {total} {self.unit} have no text "
                f"under {self.text_field!r} (e.g. ids {examples}{more})",
                hint=TEXT_FIELD_HINT,
            )
        return result

    def validate(self) -> int:
        """Full pass that raises on any bad row; returns the number of documents."""
        with self.scan() as scanned:
            return scanned.count

    # -- helpers ------------------------------------------------------------
    def read_id(self, where: str, doc_id: str | None, record: dict[str, Any]) -> str:
        if doc_id is None:
            assert self.id_field is not None
            try:
                raw = resolve_path(record, self.id_field)
            except KeyError:
                raise UsageError(
                    f"{self.description}: {where} has no id field {self.id_field!r}",
                    hint="pass --id-field with the field that holds the document id",
                ) from None
            doc_id = normalize_doc_id(raw)
            if doc_id is None:
                raise UsageError(
                    f"{self.description}: {where} has an unusable id {raw!r} under "
                    f"{self.id_field!r}: ids must be non-empty strings or integers"
                )
        return doc_id

    def _document(self, where: str, doc_id: str, text: str, record: dict[str, Any]) -> Document:
        payload = {
            k: v
            for k, v in record.items()
            if k not in RESERVED_PAYLOAD_KEYS and not (k == self.id_field and self.id_field is not None)
        }
        updated_at = None
        if self.updated_field:
            try:
                updated_at = resolve_path(record, self.updated_field)
            except KeyError:
                raise UsageError(f"{self.description}: {where} has no updated field {self.updated_field!r}") from None
        if self.convert_payload:
            try:
                payload = {k: jsonable(v) for k, v in payload.items()}
                updated_at = jsonable(updated_at)
            except TypeError as exc:
                bad = _first_unjsonable(payload)
                raise UsageError(
                    f"{self.description}: {where} has a {exc} value under {bad!r}, which a payload cannot store",
                    hint="cast or drop that field (in SQL, select it as text)",
                ) from None
        return Document(doc_id, text, payload, updated_at)


def _first_unjsonable(payload: dict[str, Any]) -> str:
    for k, v in payload.items():
        try:
            jsonable(v)
        except TypeError:
            return k
    return "?"
