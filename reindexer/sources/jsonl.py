"""JSON Lines files: one JSON object per line.

Each line is an object. ``id_field`` (default ``id``) and ``text_field``
(default ``text``) are dotted paths into it (``meta.doc_id``,
``page_content``, ``_node_content``; see ``base.extract_text``). The payload is
the whole object minus the id field (when it is a top-level key) and minus the
tool's own keys. **The text field stays in the payload**, so applications that
read ``payload["text"]`` keep working against the new index, and the new index
can itself serve as a payload source later.

The file is streamed line by line, never loaded whole; a name ending in ``.gz``
is read through gzip. Blank lines are skipped. A line that is not valid UTF-8 or
not a JSON object, a missing or unusable id, a duplicate id, or a line without
text raises ``UsageError`` naming the file and the line number (iteration stops
at the first; ``scan()`` reports every line without text at once). An empty file
yields nothing: whether an empty corpus is an error is the planner's call.

Incremental semantics: a full pass lists every current doc id, so diffing it
against a ledger finds new, changed *and deleted* documents. Files take no
``since``: they are read whole anyway. ``updated_field`` (optional) fills
``Document.updated_at``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reindexer.errors import UsageError
from reindexer.sources.base import RecordSource


class JsonlSource(RecordSource):
    unit = "lines"
    # json.loads gives JSON types only: jsonable would copy every value unchanged
    convert_payload = False

    def __init__(
        self,
        path: str | Path,
        text_field: str = "text",
        id_field: str = "id",
        *,
        updated_field: str | None = None,
    ) -> None:
        super().__init__(text_field=text_field, id_field=id_field, updated_field=updated_field)
        self.path = Path(path)
        self.description = f"jsonl:{self.path}"

    def _open(self) -> IO[bytes]:
        try:
            if self.path.name.endswith(".gz"):
                return gzip.open(self.path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
            return open(self.path, "rb")
        except FileNotFoundError:
            raise UsageError(f"{self.description}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{self.description}: is a directory, not a file") from None
        except OSError as exc:
            raise UsageError(f"{self.description}: cannot read ({exc.strerror})") from None

    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        with self._open() as fh:
            line_no = 0
            try:
                for raw in fh:
                    line_no += 1
                    if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    if not raw.strip():
                        continue
                    yield f"line {line_no}", None, self._parse(raw, f"line {line_no}")
            except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
                raise UsageError(f"{self.description}: cannot read after line {line_no} ({exc})") from None

    def _parse(self, raw: bytes, where: str) -> dict[str, Any]:
        """One line as a JSON object; ``where`` names the line in errors ("line 7", or a byte offset)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{self.description}: {where} is not valid UTF-8") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{self.description}: {where} is not valid JSON ({exc.msg} at column {exc.colno})",
                hint="a JSONL file holds one JSON object per line",
            ) from None
        except (ValueError, RecursionError) as exc:  # a number past int's digit limit; nesting past the stack
            raise UsageError(
                f"{self.description}: {where} cannot be read as JSON ({exc})",
                hint="a JSONL file holds one JSON object per line",
            ) from None
        if not isinstance(obj, dict):
            raise UsageError(
                f"{self.description}: {where} holds a JSON {type(obj).__name__}, not an object",
                hint="a JSONL file holds one JSON object per line",
            )
        return obj
