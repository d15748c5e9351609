"""Which configured default a command takes when its caller gave none.

The command layer (reindexer.commands) asks here, and so the
CLI, ``reindexer.deploy()`` and any Python caller get the same answer in the
same folder: what is given wins, then ``[collections.NAME]`` in reindex.toml,
then ``[defaults]`` (or its REINDEX_* variable), then the built-in default.

For a gate at apply time the plan sits between: a given gate, else the gate
the plan was made with (which already took the configured one at plan time),
else the configured one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reindexer.config import Config
from reindexer.errors import UsageError
from reindexer.sources.base import fields_template, is_template
from reindexer.sources.spec import SourceSpec, parse_source

if TYPE_CHECKING:
    from reindexer.ab import Judgements

DEFAULT_TEXT_FIELD = "text"
_SOURCE_OPTIONS = ("id_field", "query", "updated_field")


def text_field(fields: tuple[str, ...] | list[str] | str | None, template: str | None = None) -> str | None:
    """One text field from paths (repeated --text-field) or a template (--text): a path, or a template."""
    if isinstance(fields, str):
        fields = (fields,)
    fields = tuple(f for f in (fields or ()) if f)
    if template is not None:
        if fields:
            raise UsageError(
                "pass --text TEMPLATE or --text-field, not both",
                hint="a template names its fields itself: --text '{title}. {text}'",
            )
        if not is_template(template):
            raise UsageError(
                f"--text {template!r} has no {{field}} placeholder",
                hint="e.g. --text '{title}. {text}'; a single field is --text-field FIELD",
            )
        return template
    return fields_template(fields) if fields else None


def configured_text_field(config: Config, collection: str) -> str | None:
    return text_field(config.collection(collection).get("text_field"))


def vector_name(config: Config, collection: str, given: str | None) -> str | None:
    """The dense vector to embed into: the given name, else ``[collections.NAME] vector_name``, else None."""
    return given if given is not None else config.collection(collection).get("vector_name")


def lexical(config: Config, collection: str, given: str | None) -> str | None:
    """The lexical index a plan asks for: the given one, else ``[collections.NAME] lexical``, else the live one's."""
    return given if given is not None else config.collection(collection).get("lexical")


def configured_source(config: Config, collection: str) -> SourceSpec | None:
    """``[collections.NAME] source`` and its reading options, or None when none is configured."""
    conf = config.collection(collection)
    field = configured_text_field(config, collection)
    if not conf.get("source") and field is None:
        return None
    options = {k: conf[k] for k in _SOURCE_OPTIONS if conf.get(k)}
    if field is not None:
        options["text_field"] = field
    return parse_source(conf.get("source", "payload"), base_dir=config.base_dir, **options)


def source(
    config: Config, collection: str, given: SourceSpec | str | None, base_dir: Path | None = None
) -> SourceSpec | None:
    """The given source (a spec or its text form), else the configured one, else None (the command's own)."""
    if isinstance(given, str):
        given = parse_source(given, base_dir=base_dir)
    return given if given is not None else configured_source(config, collection)


def source_from_options(
    config: Config,
    collection: str,
    text: str | None = None,
    *,
    recorded_text_field: str | None = None,
    text_fields: tuple[str, ...] | list[str] | str | None = None,
    template: str | None = None,
    base_dir: Path | None = None,
    **options: Any,
) -> SourceSpec | None:
    """A source from command-line pieces, or None when none was given.

    A source given without a text option reads the text the way the collection
    records it (``recorded_text_field``, its template or path), then as configured,
    not as the default ``text``.
    """
    unknown = set(options) - set(_SOURCE_OPTIONS)
    if unknown:
        raise UsageError(f"unknown source option(s): {', '.join(sorted(unknown))}")
    field = text_field(text_fields, template)
    if text is None and field is None and not any(options.values()):
        return None
    field = field or recorded_text_field or configured_text_field(config, collection)
    chosen = {k: v for k, v in options.items() if v}
    if field:
        chosen["text_field"] = field
    return parse_source(text or "payload", base_dir=base_dir or Path.cwd(), **chosen)


def plan_gate(config: Config, collection: str, given: str | None) -> str | None:
    """The gate a new plan records: given, else ``[collections.NAME] gate``, else ``[defaults] gate``."""
    return given or config.collection(collection).get("gate") or config.gate


def apply_gate(config: Config, collection: str, given: str | None, planned: str | None) -> str | None:
    """The gate apply judges by: given, else the plan's, else the configured one."""
    return given or planned or plan_gate(config, collection, None)


def judgement_paths(
    config: Config, collection: str, queries: str | Path | None, qrels: str | Path | None
) -> tuple[Path | None, Path | None]:
    """Judged queries for the gate: both given, else both configured (relative to reindex.toml's folder)."""
    if bool(queries) != bool(qrels):
        raise UsageError("queries and qrels go together", hint="pass both (--queries FILE --qrels FILE), or neither")
    if queries and qrels:
        return Path(queries), Path(qrels)
    conf = config.collection(collection)
    if bool(conf.get("queries")) != bool(conf.get("qrels")):
        raise UsageError(
            f"[collections.{collection}] sets one of queries and qrels",
            hint=f"set both in {config.path or 'reindex.toml'}, or neither",
        )
    if conf.get("queries"):
        return config.base_dir / conf["queries"], config.base_dir / conf["qrels"]
    return None, None


def judgements(
    config: Config,
    collection: str,
    given: Judgements | None = None,
    queries: str | Path | None = None,
    qrels: str | Path | None = None,
) -> Judgements | None:
    """Loaded judgements: those given, else from the given paths, else from the configured ones."""
    if given is not None:
        return given
    from reindexer.ab import Judgements

    q, r = judgement_paths(config, collection, queries, qrels)
    return Judgements.load(q, r) if q is not None and r is not None else None


def keep(config: Config, collection: str, given: int | None) -> int:
    """Retired versions gc keeps: given (0 included), else ``[collections.NAME] keep``, else ``[defaults] keep``."""
    if given is not None:
        return given
    configured = config.collection(collection).get("keep")
    return configured if configured is not None else config.keep
