"""Effective settings: command-line options over REINDEX_* variables over reindex.toml over defaults.

reindex.toml is looked for in the working directory and its parents; paths in it
are relative to its folder, and so is the default state (.reindex/state.db).
Secrets are never read from it: they come from the environment or from files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from reindexer.adapters.registry import DEFAULT_STORE_URL
from reindexer.errors import UsageError
from reindexer.state.store import DEFAULT_STATE_URL

CONFIG_NAME = "reindex.toml"


@dataclass
class Config:
    base_dir: Path
    store_url: str = DEFAULT_STORE_URL
    state_url: str = DEFAULT_STATE_URL
    batch_size: int = 256
    device: str | None = None
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


def load_config(
    store_url: str | None = None,
    state_url: str | None = None,
    config_path: Path | None = None,
    cwd: Path | None = None,
) -> Config:
    path = config_path or find_config(cwd)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}", hint="fix the TOML syntax") from None
    base_dir = path.parent if path is not None else (cwd or Path.cwd()).resolve()
    cfg = Config(base_dir=base_dir, path=path)
    store = data.get("store", {})
    state = data.get("state", {})
    defaults = data.get("defaults", {})
    cfg.store_url = store_url or os.environ.get("REINDEX_STORE") or store.get("url") or cfg.store_url
    cfg.state_url = state_url or os.environ.get("REINDEX_STATE") or state.get("url") or cfg.state_url
    cfg.batch_size = int(os.environ.get("REINDEX_BATCH_SIZE") or defaults.get("batch_size") or cfg.batch_size)
    cfg.device = os.environ.get("REINDEX_DEVICE") or defaults.get("device") or None
    cfg.keep = int(os.environ.get("REINDEX_KEEP") or defaults.get("keep") or cfg.keep)
    cfg.gate = os.environ.get("REINDEX_GATE") or defaults.get("gate") or None
    cfg.webhook = os.environ.get("REINDEX_WEBHOOK_URL") or defaults.get("webhook") or None
    cfg.collections = dict(data.get("collections", {}))
    query = data.get("query", {})
    cfg.query_refresh = _number("refresh", os.environ.get("REINDEX_QUERY_REFRESH"), query.get("refresh"), 1.0)
    cfg.shadow_sample = _number(
        "shadow_sample", os.environ.get("REINDEX_SHADOW_SAMPLE"), query.get("shadow_sample"), 0.0
    )
    if not 0.0 <= cfg.shadow_sample <= 1.0:
        raise UsageError(f"shadow_sample must be between 0 and 1, not {cfg.shadow_sample}")
    text_flag = os.environ.get("REINDEX_RECORD_QUERY_TEXT")
    cfg.record_query_text = (text_flag.lower() in ("1", "true", "yes", "on")) if text_flag else \
        bool(query.get("record_query_text", False))
    root = os.environ.get("REINDEX_MODELS") or query.get("models_root")
    cfg.models_root = str((base_dir / root) if root and "=" not in root and not Path(root).is_absolute() else root) \
        if root else None
    apply = data.get("apply", {})
    cfg.executor = os.environ.get("REINDEX_EXECUTOR") or apply.get("executor") or cfg.executor
    cfg.ray_address = apply.get("ray_address") or None  # RAY_ADDRESS, Ray's own variable, is read by Ray
    if cfg.batch_size <= 0:
        raise UsageError("batch_size must be positive")
    return cfg


def _number(name: str, env: str | None, conf: Any, default: float) -> float:
    raw = env if env not in (None, "") else conf
    if raw is None:
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, not {raw!r}") from None


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
batch_size = 256          # documents per embed-and-upsert batch
# device = "cuda"         # default: cuda, then mps, then cpu
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
# text_field = "text"                      # payload path of the text, e.g. page_content
# source = "jsonl:data/docs.jsonl"         # default source for plan and sync (default: the payload)
# queries = "eval/queries.jsonl"           # judged queries for the gate (BEIR layout)
# qrels = "eval/qrels.tsv"
# gate = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
# webhook = "https://hooks.example.internal/reindex"   # called on cut-over, rollback, gate refusal
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
    from reindexer.state.store import redact_db_url

    return {
        "config_file": str(cfg.path) if cfg.path else None,
        "base_dir": str(cfg.base_dir),
        "store": {"url": cfg.store_url},
        "state": {"url": redact_db_url(cfg.state_url)},
        "defaults": {"batch_size": cfg.batch_size, "device": cfg.device, "keep": cfg.keep, "gate": cfg.gate},
        "query": {"refresh": cfg.query_refresh, "shadow_sample": cfg.shadow_sample,
                  "record_query_text": cfg.record_query_text, "models_root": cfg.models_root},
        "apply": {"executor": cfg.executor, "ray_address": cfg.ray_address},
        "collections": cfg.collections,
        "secrets": {name: ("set" if os.environ.get(name) else "unset") for name in SECRET_ENV},
    }
