"""Effective settings: command-line options over REINDEX_* variables over reindex.toml over defaults.

reindex.toml is looked for in the working directory and its parents; paths in it
are relative to its folder, and so is the default state (.reindex/state.db).
Secrets are never read from it: they come from the environment or from files.

The file and the REINDEX_* variables go through one schema (``FileSchema``):
an unknown section or key is an error that lists the valid ones, every value is
type-checked (the file strictly, as TOML has types; variables as text that must
parse), and a 0 or an empty string given on purpose is kept, not replaced by
the default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from reindexer.adapters.registry import DEFAULT_STORE_URL
from reindexer.errors import UsageError
from reindexer.state.database import DEFAULT_STATE_URL

CONFIG_NAME = "reindex.toml"


# -- the schema of reindex.toml ------------------------------------------------------
class _Section(BaseModel):
    # strict: TOML has real types, so "256" for batch_size is a mistake worth naming
    model_config = ConfigDict(extra="forbid", strict=True)


class StoreSection(_Section):
    url: str | None = None


class StateSection(_Section):
    url: str | None = None


class DefaultsSection(_Section):
    batch_size: int | None = Field(default=None, gt=0)
    device: str | None = None
    # how models run (reindexer.devices); unset means what suits the device
    devices: str | None = None
    precision: str | None = None
    embed_batch_size: int | None = Field(default=None, gt=0)
    threads: int | None = Field(default=None, gt=0)
    keep: int | None = Field(default=None, ge=0)
    gate: str | None = None
    webhook: str | None = None


class QuerySection(_Section):
    refresh: float | None = Field(default=None, ge=0)
    shadow_sample: float | None = Field(default=None, ge=0, le=1)
    record_query_text: bool | None = None
    models_root: str | None = None


class ApplySection(_Section):
    #: where a build's read and embed stages run: "local", or "ray" (reindexer.raydata)
    executor: str | None = None
    ray_address: str | None = None


class CollectionSection(_Section):
    """``[collections.NAME]``: the defaults plan, apply, sync and gc take for one collection."""

    source: str | None = None
    #: a payload path, a template over paths ("{title}. {text}") or a list of paths
    text_field: str | list[str] | None = None
    #: the dense vector adopt and plan embed into, in a collection with several (a Qdrant named vector, a Milvus field)
    vector_name: str | None = None
    #: "bm25": every version plan makes keeps a BM25 sparse vector beside the dense one; "none" drops it
    lexical: Literal["bm25", "none"] | None = None
    id_field: str | None = None
    updated_field: str | None = None
    query: str | None = None
    queries: str | None = None
    qrels: str | None = None
    gate: str | None = None
    webhook: str | None = None
    keep: int | None = Field(default=None, ge=0)


class FileSchema(_Section):
    store: StoreSection = StoreSection()
    state: StateSection = StateSection()
    defaults: DefaultsSection = DefaultsSection()
    query: QuerySection = QuerySection()
    apply: ApplySection = ApplySection()
    collections: dict[str, CollectionSection] = {}


#: REINDEX_* variable -> (section, key) of the schema it overrides
ENV_KEYS: dict[str, tuple[str, str]] = {
    "REINDEX_STORE": ("store", "url"),
    "REINDEX_STATE": ("state", "url"),
    "REINDEX_BATCH_SIZE": ("defaults", "batch_size"),
    "REINDEX_DEVICE": ("defaults", "device"),
    "REINDEX_DEVICES": ("defaults", "devices"),
    "REINDEX_PRECISION": ("defaults", "precision"),
    "REINDEX_EMBED_BATCH_SIZE": ("defaults", "embed_batch_size"),
    "REINDEX_THREADS": ("defaults", "threads"),
    "REINDEX_KEEP": ("defaults", "keep"),
    "REINDEX_GATE": ("defaults", "gate"),
    "REINDEX_WEBHOOK_URL": ("defaults", "webhook"),
    "REINDEX_QUERY_REFRESH": ("query", "refresh"),
    "REINDEX_SHADOW_SAMPLE": ("query", "shadow_sample"),
    "REINDEX_RECORD_QUERY_TEXT": ("query", "record_query_text"),
    "REINDEX_MODELS": ("query", "models_root"),
    "REINDEX_EXECUTOR": ("apply", "executor"),
}

_SECTIONS: dict[str, type[_Section]] = {
    "store": StoreSection,
    "state": StateSection,
    "defaults": DefaultsSection,
    "query": QuerySection,
    "apply": ApplySection,
}


def _valid(model: type[BaseModel]) -> str:
    return ", ".join(sorted(model.model_fields))


def _problem(err: ErrorDetails) -> str:
    """One pydantic error as a sentence about reindex.toml's sections and keys."""
    loc = [str(part) for part in err["loc"]]
    if err["type"] == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown section {loc[0]!r}; valid: {_valid(FileSchema)}"
        section = f"collections.{loc[1]}" if loc[0] == "collections" else loc[0]
        model = CollectionSection if loc[0] == "collections" else _SECTIONS[loc[0]]
        return f"unknown key {loc[-1]!r} in [{section}]; valid: {_valid(model)}"
    if loc and loc[0] == "collections" and len(loc) >= 3:
        where = f"[collections.{loc[1]}] {loc[2]}"
    elif len(loc) >= 2:
        where = f"[{loc[0]}] {loc[1]}"
    else:
        where = f"[{loc[0]}]" if loc else "reindex.toml"
    return f"{where}: {err['msg'].lower()} (got {err.get('input')!r})"


def parse_file(data: dict[str, Any], origin: str) -> FileSchema:
    try:
        return FileSchema.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
        raise UsageError(f"{origin}: " + "; ".join(problems), hint=f"fix {origin}") from None


def env_overrides(environ: Any = None) -> dict[str, dict[str, Any]]:
    """The REINDEX_* variables that are set (an empty one counts as unset), checked by the schema."""
    environ = os.environ if environ is None else environ
    found: dict[str, dict[str, Any]] = {}
    for name, (section, key) in ENV_KEYS.items():
        raw = environ.get(name)
        if raw in (None, ""):
            continue
        model = _SECTIONS[section]
        try:
            # lax: a variable is text, and "8" is a fine batch size there
            value = getattr(model.model_validate({key: raw}, strict=False), key)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].lower()
            raise UsageError(f"{name}={raw!r}: {msg}", hint=f"set {name} to a valid {key}, or unset it") from None
        found.setdefault(section, {})[key] = value
    return found


@dataclass
class Config:
    base_dir: Path
    store_url: str = DEFAULT_STORE_URL
    state_url: str = DEFAULT_STATE_URL
    batch_size: int = 256
    device: str | None = None
    # How models run (reindexer.devices): unset means what suits the device.
    devices: str | None = None
    precision: str | None = None
    embed_batch_size: int | None = None
    threads: int | None = None
    keep: int = 2
    gate: str | None = None
    webhook: str | None = None
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None
    # The query side ([query]): the Searcher and `reindex serve`.
    query_refresh: float = 1.0
    shadow_sample: float = 0.0
    record_query_text: bool = False
    models_root: str | None = None
    # Where apply's build runs ([apply]): "local", or "ray" on the Ray cluster at ray_address.
    executor: str = "local"
    ray_address: str | None = None

    def collection(self, name: str) -> dict[str, Any]:
        return self.collections.get(name, {})


def find_config(start: Path | None = None) -> Path | None:
    explicit = os.environ.get("REINDEX_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UsageError(f"REINDEX_CONFIG names {p}, which does not exist")
        return p.resolve()
    cur = (start or Path.cwd()).resolve()
    for folder in (cur, *cur.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def read_file(path: Path) -> FileSchema:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="fix the TOML syntax") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: it is not UTF-8 text", hint="save it as UTF-8") from None
    return parse_file(data, str(path))


def load_config(
    store_url: str | None = None,
    state_url: str | None = None,
    config_path: Path | None = None,
    cwd: Path | None = None,
) -> Config:
    path = config_path or find_config(cwd)
    schema = read_file(path) if path is not None else FileSchema()
    env = env_overrides()
    base_dir = path.parent if path is not None else (cwd or Path.cwd()).resolve()

    def pick(section: str, key: str, default: Any = None) -> Any:
        """The variable's value, else the file's, else ``default``; None means unset, 0 is a value."""
        if key in env.get(section, {}):
            return env[section][key]
        value = getattr(getattr(schema, section), key)
        return default if value is None else value

    cfg = Config(base_dir=base_dir, path=path)
    cfg.store_url = store_url or pick("store", "url", cfg.store_url)
    cfg.state_url = state_url or pick("state", "url", cfg.state_url)
    cfg.batch_size = pick("defaults", "batch_size", cfg.batch_size)
    cfg.device = pick("defaults", "device")
    cfg.devices = pick("defaults", "devices")
    cfg.precision = pick("defaults", "precision")
    cfg.embed_batch_size = pick("defaults", "embed_batch_size")
    cfg.threads = pick("defaults", "threads")
    cfg.keep = pick("defaults", "keep", cfg.keep)
    cfg.gate = pick("defaults", "gate")
    cfg.webhook = pick("defaults", "webhook")
    cfg.collections = {name: section.model_dump(exclude_none=True) for name, section in schema.collections.items()}
    cfg.query_refresh = float(pick("query", "refresh", cfg.query_refresh))
    cfg.shadow_sample = float(pick("query", "shadow_sample", cfg.shadow_sample))
    cfg.record_query_text = pick("query", "record_query_text", cfg.record_query_text)
    root = pick("query", "models_root")
    cfg.models_root = (
        str((base_dir / root) if root and "=" not in root and not Path(root).is_absolute() else root) if root else None
    )
    from reindexer.devices import runtime_from

    runtime_from(cfg.device, cfg.devices, cfg.precision, cfg.embed_batch_size, cfg.threads)  # checked early
    cfg.executor = pick("apply", "executor", cfg.executor)
    cfg.ray_address = pick("apply", "ray_address")  # RAY_ADDRESS, Ray's own variable, is read by Ray
    return cfg


STARTER = """\
# reindex.toml: settings for `reindex`. Command-line options override REINDEX_* environment
# variables, which override this file. Paths are relative to this file's folder.
# Secrets never go here: set QDRANT_API_KEY or MILVUS_TOKEN (or QDRANT_API_KEY_FILE /
# MILVUS_TOKEN_FILE naming a file), and put database passwords in ${VAR} placeholders.

[store]
# qdrant+local:PATH | qdrant://HOST:6333 | qdrant+https://HOST:6333
# milvus+lite:PATH.db | milvus://HOST:19530 | milvus+https://HOST:19530
url = "qdrant+local:.reindex/qdrant"

[state]
# SQLite by default; a PostgreSQL URL shares state (and leases) across a team:
# url = "postgresql+psycopg://reindex@db.internal/reindex"
url = "sqlite:///.reindex/state.db"

[defaults]
batch_size = 256          # documents per upsert and checkpoint
# device = "cuda"         # default: every visible GPU, then mps, then cpu
# devices = "cuda:0,cuda:1"   # one worker process per GPU (default: every visible GPU)
# precision = "fp16"      # fp32 | fp16 | bf16 (default: fp16 on CUDA, fp32 elsewhere; bf16 is its own model version)
# embed_batch_size = 64   # texts per encode batch (default: 256 on CUDA, 64 on CPU)
# threads = 8             # CPU threads for torch (default: the cores this process may use)
keep = 2                  # retired versions `reindex gc` keeps
# gate = "ndcg@10 >= -0.005 and not significantly worse at p < 0.05"

[query]
# The query side: reindexer.Searcher, `reindex serve` and the framework retrievers.
refresh = 1.0             # seconds between re-reads of the alias (0: every query)
shadow_sample = 0.0       # share of live queries mirrored to the newest built shadow (0.1 = 10%)
record_query_text = false # shadow traffic stores a hash of each query unless this is true
# models_root = "/mnt/models"   # where model folders are on this host (or "/old/prefix=/mnt/models")

[apply]
executor = "local"        # or "ray": read and embed on a Ray cluster (pip install "reindexer[ray]"; docs/ray.md)
# ray_address = "ray://head.internal:10001"   # default: RAY_ADDRESS, else a local Ray

# [collections.docs]
# text_field = "text"                      # payload path of the text, e.g. page_content;
#                                          # a template "{title}. {text}" or a list ["title", "text"]
# vector_name = "body"                     # the dense vector to re-embed, where a collection has several
# lexical = "bm25"                         # keep a BM25 sparse vector in every version: hybrid search
# source = "jsonl:data/docs.jsonl"         # default source for plan and sync (default: the payload)
# queries = "eval/queries.jsonl"           # judged queries for the gate (BEIR layout)
# qrels = "eval/qrels.tsv"
# gate = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
# webhook = "https://hooks.example.internal/reindex"   # called on cut-over, rollback, gate refusal
# keep = 2                                 # retired versions `reindex gc` keeps of this collection
"""

SECRET_ENV = ("QDRANT_API_KEY", "QDRANT_API_KEY_FILE", "MILVUS_TOKEN", "MILVUS_TOKEN_FILE", "REINDEX_WEBHOOK_TOKEN")


def write_starter(folder: Path, force: bool = False) -> Path:
    target = folder / CONFIG_NAME
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="edit it, or pass --force to overwrite it")
    target.write_text(STARTER)
    return target


def effective(cfg: Config) -> dict[str, Any]:
    """The effective configuration, safe to print: passwords redacted, secrets only as set/unset."""
    from reindexer.state.database import redact_db_url

    return {
        "config_file": str(cfg.path) if cfg.path else None,
        "base_dir": str(cfg.base_dir),
        "store": {"url": cfg.store_url},
        "state": {"url": redact_db_url(cfg.state_url)},
        "defaults": {
            "batch_size": cfg.batch_size,
            "device": cfg.device,
            "devices": cfg.devices,
            "precision": cfg.precision,
            "embed_batch_size": cfg.embed_batch_size,
            "threads": cfg.threads,
            "keep": cfg.keep,
            "gate": cfg.gate,
        },
        "query": {
            "refresh": cfg.query_refresh,
            "shadow_sample": cfg.shadow_sample,
            "record_query_text": cfg.record_query_text,
            "models_root": cfg.models_root,
        },
        "apply": {"executor": cfg.executor, "ray_address": cfg.ray_address},
        "collections": cfg.collections,
        "secrets": {name: ("set" if os.environ.get(name) else "unset") for name in SECRET_ENV},
    }
