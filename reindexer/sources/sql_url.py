"""SQLAlchemy URLs without secrets: refuse literal passwords, redact for display, expand ``${VAR}`` on connect.

Its own module because both the spec (parsing and describing a source) and the SQL
source (connecting) need it, and neither should import the other for it.
"""

from __future__ import annotations

import os
import re

from reindexer.errors import UsageError

# The same split SQLAlchemy's make_url uses: user, then ``:password``, up to ``@``.
_URL_RE = re.compile(
    r"^(?P<scheme>[\w+]+)://"
    r"(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<rest>.*)$",
    re.DOTALL,
)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_QUERY_KEYS = re.compile(r"pass|pwd|token|secret|api_?key|credential", re.IGNORECASE)
_SECRET_HINT = (
    "write the password as a ${VAR} placeholder, e.g. postgresql://app:${PGPASSWORD}@db/docs, "
    "or leave it out and let the driver read its own environment (PGPASSWORD, ~/.pgpass)"
)


def check_sql_url(url: str) -> None:
    """Refuse an SQLAlchemy URL that carries a literal secret.

    A password (or a query parameter such as ``password=``) must be exactly one
    ``${VAR}`` placeholder. The message never repeats the secret.
    """
    m = _URL_RE.match(url or "")
    if not m:
        raise UsageError(
            "not an SQLAlchemy URL (expected dialect[+driver]://...)",
            hint="for example sql:sqlite:///docs.db or sql:postgresql://app:${PGPASSWORD}@db/docs",
        )
    password = m.group("password")
    if password is not None and password != "" and not _PLACEHOLDER.fullmatch(password):
        raise UsageError(f"the SQL URL {redact_sql_url(url)} contains a literal password", hint=_SECRET_HINT)
    _, _, query = m.group("rest").partition("?")
    for pair in query.split("&") if query else ():
        key, _, value = pair.partition("=")
        if value and _SECRET_QUERY_KEYS.search(key) and not _PLACEHOLDER.fullmatch(value):
            raise UsageError(
                f"the SQL URL {redact_sql_url(url)} contains a literal secret in {key!r}",
                hint=_SECRET_HINT,
            )


def redact_sql_url(url: str | None) -> str:
    """The URL with any literal password replaced by ``***``; placeholders stay."""
    if not url:
        return ""
    m = _URL_RE.match(url)
    if not m:
        return url
    out = url
    password = m.group("password")
    if password and not _PLACEHOLDER.fullmatch(password):
        start, end = m.span("password")
        out = out[:start] + "***" + out[end:]
    # query-string secrets
    head, sep, query = out.partition("?")
    if sep:
        pairs = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            if value and _SECRET_QUERY_KEYS.search(key) and not _PLACEHOLDER.fullmatch(value):
                value = "***"
            pairs.append(f"{key}{eq}{value}")
        out = head + sep + "&".join(pairs)
    return out


def expand_sql_url(url: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` placeholders by environment values; call only when connecting.

    Values placed in the user or password part are percent-encoded, so a
    password with ``@`` or ``/`` in it does not break the URL.
    """
    from urllib.parse import quote

    env = os.environ if environ is None else environ

    def value(name: str) -> str:
        v = env.get(name)
        if v is None:
            raise UsageError(
                f"environment variable {name} is not set (the SQL URL names ${{{name}}})",
                hint=f"export {name}=... before running",
            )
        return v

    m = _URL_RE.match(url)
    if not m:
        raise UsageError("not an SQLAlchemy URL (expected dialect[+driver]://...)")
    pieces = []
    last = 0
    for group in ("user", "password"):
        if m.group(group) is None:
            continue
        start, end = m.span(group)
        pieces.append(_PLACEHOLDER.sub(lambda g: value(g.group(1)), url[last:start]))
        pieces.append(_PLACEHOLDER.sub(lambda g: quote(value(g.group(1)), safe=""), url[start:end]))
        last = end
    pieces.append(_PLACEHOLDER.sub(lambda g: value(g.group(1)), url[last:]))
    return "".join(pieces)
