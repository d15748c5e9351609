"""Effective settings: command-line options over REINDEX_* variables over reindex.toml over defaults.

reindex.toml is looked for in the working directory and its parents; paths in it
are relative to its folder, and so is the default state (.reindex/state.db).
Secrets are never read from it: they come from the environment or from files.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

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
    cfg.collections = dict(data.get("collections", {}))
    if cfg.batch_size <= 0:
        raise UsageError("batch_size must be positive")
    return cfg
