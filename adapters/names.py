"""Name rules: which collection, alias and vector names a store accepts, and the errors that say so.

Plan checks names before anything is written (``Backend.validate_collection_name``
holds a name to ``SAFE_NAME_RULE`` unless the backend has a rule of its own), and
adapters check the dense vector the tool is told to embed into
(``check_vector_name``). Pure functions over strings: no store, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from reindexer.errors import UsageError

SAFE_NAME_RULE = (
    "ASCII letters, digits, '_', '-' and '.'; starting with a letter, digit or '_'; no '..'; at most 255 characters"
)
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def safe_name_problem(name: str) -> str | None:
    """What keeps ``name`` from being a safe collection name (``SAFE_NAME_RULE``), or None.

    Path separators, '..', whitespace, control and non-ASCII characters are out: an
    embedded store turns a name into a folder, and a name that reads differently in
    two encodings or shells is an outage waiting to happen.
    """
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > 255:
        return f"it is {len(name)} characters long"
    bad = sorted({c for c in name if c not in _SAFE_NAME_CHARS})
    if bad:
        kinds = []
        if any(c in "/\\" for c in bad):
            kinds.append("a path separator")
        if any(c.isspace() for c in bad):
            kinds.append("whitespace")
        if any(not c.isprintable() for c in bad):
            kinds.append("a control character")
        if any(not c.isascii() for c in bad):
            kinds.append("a non-ASCII character")
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"it contains {' and '.join(kinds) or 'a character outside the rule'} ({shown})"
    if ".." in name:
        return "it contains '..'"
    if name[0] in "-.":
        return f"it starts with {name[0]!r}"
    return None


def check_vector_name(collection: str, vector: str, names: Sequence[str]) -> None:
    """``UsageError`` naming the dense vectors of ``collection`` when ``vector`` is not one of them."""
    if vector not in names:
        raise UsageError(
            f"collection {collection!r} has no dense vector {vector!r}; its dense vectors: {_vector_list(names)}",
            hint="pass --vector-name with one of them (or set vector_name in [collections.NAME] of reindex.toml)",
        )


def ambiguous_vector(collection: str, names: Sequence[str]) -> UsageError:
    """The error for a collection with several dense vectors and no recorded choice among them."""
    return UsageError(
        f"collection {collection!r} has {len(names)} dense vectors ({_vector_list(names)}) and reindexer "
        "was not told which one to embed into",
        hint="name it when adopting: `reindex adopt COLLECTION --vector-name NAME` "
        "(or vector_name in [collections.NAME] of reindex.toml)",
    )


def _vector_list(names: Sequence[str]) -> str:
    return ", ".join(repr(n) if n else "the unnamed vector" for n in sorted(names)) or "none"
