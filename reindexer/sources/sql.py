"""SQL queries through SQLAlchemy: any database with a dialect (SQLite, PostgreSQL, ...).

``SqlSource(url, query)`` runs one SELECT and streams its rows with a
server-side cursor (``stream_results`` and ``yield_per``), so only one batch of
rows is held at a time. Each row's columns become the payload, minus the id
column (``id_field``, default ``id``); the text column (``text_field``,
default ``text``) stays in the payload. Values JSON cannot hold directly are
converted: datetimes to ISO-8601, decimals to numbers, UUIDs to strings. A JSON
column returned as a dict, or as a JSON string holding an object, can be
reached with a dotted path (``meta.body``).

Secrets: the URL may hold ``${VAR}`` placeholders (``postgresql://app:
${PGPASSWORD}@db/docs``); they are expanded from the environment when the first
connection is made and the expanded URL lives only inside the engine. A literal
password is refused (``sql_url.check_sql_url``). Drivers that read their own
environment (libpq's ``PGPASSWORD``, ``~/.pgpass``) work with no password in
the URL at all.

The query is taken literally: every ``:`` in it is escaped before SQLAlchemy
sees it, so ``'10:30'`` and PostgreSQL's ``::text`` casts mean what they say and
the query cannot take bind parameters of its own. A trailing ``;`` is dropped.
With ``since`` the query becomes a subquery, so it must be valid as one (an
``ORDER BY`` inside is fine on PostgreSQL, SQLite and MySQL, not on SQL Server).

Partitions (the Ray executor's parallel read): ``id_boundaries(n)`` asks the database for
the largest id of each of ``n`` equal tiles of the query ordered by id (``NTILE``, one
query, sorted by the database), and ``partition(lo, hi)`` is the same source restricted to
``lo < id <= hi`` (either end open) through bound parameters. The ranges are disjoint and
cover every row, since the database's own ordering decides both the tiles and the
filters; rows with a NULL id go to the first range, where they meet the same error as in
a whole read.

Incremental semantics:

- A full pass (no ``since``) lists every current doc id, so diffing it against
  a ledger finds new, changed *and deleted* documents.
- With ``updated_field`` and ``since``, the query is wrapped as a subquery and
  filtered by ``updated_field > :since`` (a bound parameter, never formatted
  into the SQL), so only rows updated after the watermark come back. Deleted
  rows are simply absent from such a pass: **deletions cannot be detected from
  a ``since`` pass**; run a full pass (or a soft-delete column) for them.
- Each ``Document.updated_at`` holds the row's updated value (ISO-8601 for
  datetimes); ``scan().max_updated_at`` is the next watermark. The comparison is
  the database's own, so store the watermark in the form the column returns it
  (SQLite compares text: ``'2024-01-02 10:00'`` and ``'2024-01-02T09:00'``
  compare as strings). The filter is strict ``>``: rows committed later with an
  updated value at or below the watermark (long transactions, clock skew) are
  missed until the next full pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reindexer.errors import BackendUnavailableError, UsageError
from reindexer.sources.base import RecordSource
from reindexer.sources.sql_url import check_sql_url, expand_sql_url, redact_sql_url

SUBQUERY_ALIAS = "reindex_src"
SINCE_PARAM = "reindex_since"
LOW_PARAM, HIGH_PARAM, TILES_PARAM = "reindex_id_low", "reindex_id_high", "reindex_tiles"


class SqlSource(RecordSource):
    unit = "rows"

    def __init__(
        self,
        url: str,
        query: str,
        text_field: str = "text",
        id_field: str = "id",
        *,
        updated_field: str | None = None,
        since: Any = None,
        batch_size: int = 1000,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(text_field=text_field, id_field=id_field, updated_field=updated_field)
        check_sql_url(url)
        if not query or not query.strip():
            raise UsageError("an sql source needs a query")
        if since is not None and not updated_field:
            raise UsageError("--since needs --updated-field, the column compared with the watermark")
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.url = url  # the template, placeholders unexpanded
        self.query = query
        self.since = since
        self.batch_size = batch_size
        self.engine_options = engine_options or {}
        #: (low, high): only rows with ``low < id <= high``; None at either end is open
        self.id_range: tuple[Any, Any] | None = None
        self._engine: Any = None
        self.description = f"sql:{redact_sql_url(url)}"
        if since is not None:
            self.description += f" since {updated_field}>{since}"

    # -- SQL -------------------------------------------------------------
    def _query(self) -> str:
        query = self.query.strip()
        while query.endswith(";"):
            query = query[:-1].rstrip()
        return query.replace(":", "\\:")  # literal colons; the query takes no binds

    @staticmethod
    def _quote(dialect: Any) -> Any:
        if dialect is None:
            from sqlalchemy.dialects import sqlite

            dialect = sqlite.dialect()
        return dialect.identifier_preparer.quote

    def statement(self, dialect: Any = None) -> Any:
        """The ``TextClause`` to run: the query, wrapped and filtered when ``since`` or ``id_range`` is set."""
        from sqlalchemy import text

        sql, binds = self._filtered(self._quote(dialect))
        return text(sql).bindparams(*binds) if binds else text(sql)

    def _filtered(self, quote: Any) -> tuple[str, list[Any]]:
        """The query's SQL with the ``since`` and ``id_range`` filters, and their bound parameters."""
        from sqlalchemy import bindparam
        from sqlalchemy.types import NullType

        query = self._query()
        alias = quote(SUBQUERY_ALIAS)
        where: list[str] = []
        # Untyped on purpose: a typed str bind renders as ``::VARCHAR`` on
        # PostgreSQL, and ``timestamp > varchar`` has no operator. Untyped, the
        # database casts the value to the column's type.
        binds = []
        if self.since is not None:
            where.append(f"{alias}.{quote(self.updated_field)} > :{SINCE_PARAM}")
            binds.append(bindparam(SINCE_PARAM, self.since, type_=NullType()))
        if self.id_range is not None:
            low, high = self.id_range
            column = f"{alias}.{quote(self.id_field)}"
            if low is not None:
                where.append(f"{column} > :{LOW_PARAM}")
                binds.append(bindparam(LOW_PARAM, low, type_=NullType()))
            if high is not None:
                # NULL ids fall in the first range, where they fail as in a whole read
                null = f" OR {column} IS NULL" if low is None else ""
                where.append(f"({column} <= :{HIGH_PARAM}{null})")
                binds.append(bindparam(HIGH_PARAM, high, type_=NullType()))
        if not where:
            return query, []
        # newlines: a trailing ``-- comment`` in the query must not swallow the ``)``
        return f"SELECT * FROM (\n{query}\n) AS {alias} WHERE {' AND '.join(where)}", binds

    def partition(self, low: Any, high: Any) -> SqlSource:
        """This source restricted to ``low < id <= high`` (None: that end open)."""
        part = SqlSource(
            self.url,
            self.query,
            text_field=self.text_field,
            id_field=self.id_field or "id",
            updated_field=self.updated_field,
            since=self.since,
            batch_size=self.batch_size,
            engine_options=self.engine_options,
        )
        part.id_range = (low, high)
        return part

    def id_boundaries(self, parts: int) -> list[Any]:
        """The largest id of each of ``parts`` tiles of the query by id, smallest first, distinct.

        The last is left out: the last range stays open above, so rows added since are read
        too. Empty when the query has fewer rows than two tiles need.
        """
        from sqlalchemy import bindparam, text
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        if parts < 2:
            return []
        engine = self._get_engine()
        quote = self._quote(engine.dialect)
        sql, binds = self._filtered(quote)
        column, alias = quote(self.id_field), quote(SUBQUERY_ALIAS)
        tiles = text(
            f"SELECT MAX(t.{column}) AS high FROM (SELECT {alias}.{column}, NTILE(:{TILES_PARAM}) OVER "
            f"(ORDER BY {alias}.{column}) AS tile FROM (\n{sql}\n) AS {alias} "
            f"WHERE {alias}.{column} IS NOT NULL) AS t GROUP BY t.tile ORDER BY t.tile"
        ).bindparams(*binds, bindparam(TILES_PARAM, parts))
        try:
            conn = engine.connect()
        except DBAPIError as exc:
            raise BackendUnavailableError(f"{self.description}: cannot connect ({_first_line(exc.orig)})") from None
        try:
            highs = [row[0] for row in conn.execute(tiles)]
        except SQLAlchemyError as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                reason = _first_line(exc.orig)
                raise BackendUnavailableError(f"{self.description}: connection lost ({reason})") from None
            raise UsageError(
                f"{self.description}: the query cannot be split by {self.id_field} "
                f"({_first_line(getattr(exc, 'orig', exc))})",
                hint="the Ray executor splits an sql source with NTILE over the id column",
            ) from None
        finally:
            conn.close()
        return list(dict.fromkeys(highs[:-1]))

    def _get_engine(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError

            try:
                self._engine = create_engine(expand_sql_url(self.url), **self.engine_options)
            except (ArgumentError, NoSuchModuleError, ValueError) as exc:
                # The message may quote the expanded URL: say only what kind of problem it is.
                raise UsageError(
                    f"{self.description}: cannot open this URL ({type(exc).__name__})",
                    hint="check the dialect and driver names, e.g. postgresql+psycopg://",
                ) from None
            except ImportError as exc:
                raise UsageError(f"{self.description}: the database driver is not installed ({exc.name})") from None
        return self._engine

    def _records(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        engine = self._get_engine()
        try:
            conn = engine.connect()
        except DBAPIError as exc:
            raise BackendUnavailableError(f"{self.description}: cannot connect ({_first_line(exc.orig)})") from None
        row = 0
        try:
            stmt = self.statement(engine.dialect)
            try:
                result = conn.execution_options(stream_results=True, yield_per=self.batch_size).execute(stmt)
            except SQLAlchemyError as exc:
                raise UsageError(
                    f"{self.description}: the query failed ({_first_line(getattr(exc, 'orig', exc))})",
                    hint="check the query and --updated-field",
                ) from None
            with result:
                for mapping in result.mappings():
                    row += 1
                    yield f"row {row}", None, dict(mapping)
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise BackendUnavailableError(
                    f"{self.description}: connection lost after row {row} ({_first_line(exc.orig)})"
                ) from None
            raise UsageError(f"{self.description}: reading failed after row {row} ({_first_line(exc.orig)})") from None
        finally:
            conn.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _first_line(exc: Any) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
