"""reindex.toml, REINDEX_* overrides, init, and config show with secrets masked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reindexer.cli import cli
from reindexer.config import load_config, write_starter
from reindexer.errors import UsageError


def test_precedence_options_over_env_over_file(tmp_path, monkeypatch):
    (tmp_path / "reindex.toml").write_text(
        '[store]\nurl = "milvus+lite:file.db"\n[defaults]\nbatch_size = 64\nkeep = 5\n'
        '[collections.docs]\ntext_field = "page_content"\n'
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found in a parent folder; paths stay relative to it
    for name in ("REINDEX_STORE", "REINDEX_STATE", "REINDEX_BATCH_SIZE", "REINDEX_KEEP", "REINDEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config()
    assert (cfg.store_url, cfg.batch_size, cfg.keep, cfg.base_dir) == ("milvus+lite:file.db", 64, 5, tmp_path)
    assert cfg.collection("docs") == {"text_field": "page_content"}
    monkeypatch.setenv("REINDEX_BATCH_SIZE", "8")
    monkeypatch.setenv("REINDEX_STORE", "qdrant+local:env")
    assert (load_config().batch_size, load_config().store_url) == (8, "qdrant+local:env")
    assert load_config(store_url="qdrant://h:6333").store_url == "qdrant://h:6333"


def test_bad_toml_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINDEX_CONFIG", raising=False)
    (tmp_path / "reindex.toml").write_text("[store\nurl=")
    with pytest.raises(UsageError, match="cannot read"):
        load_config()


def test_init_writes_a_starter_that_loads_and_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINDEX_CONFIG", raising=False)
    for name in ("REINDEX_STORE", "REINDEX_STATE", "REINDEX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    cfg = load_config()
    assert cfg.store_url == "qdrant+local:.reindex/qdrant" and cfg.batch_size == 256
    again = CliRunner().invoke(cli, ["init"])
    assert again.exit_code == 2 and "already exists" in again.output
    with pytest.raises(UsageError):
        write_starter(tmp_path)


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REINDEX_CONFIG", raising=False)
    monkeypatch.setenv("REINDEX_STATE", "postgresql+psycopg://ops:hunter2-secret@db.internal/reindex")
    monkeypatch.setenv("QDRANT_API_KEY", "qk-very-secret")
    r = CliRunner().invoke(cli, ["--json", "config", "show"])
    assert r.exit_code == 0, r.output
    assert "hunter2-secret" not in r.output and "qk-very-secret" not in r.output
    data = json.loads(r.stdout)
    assert data["state"]["url"] == "postgresql+psycopg://ops:***@db.internal/reindex"
    assert data["secrets"]["QDRANT_API_KEY"] == "set"
