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


def _clean_env(monkeypatch):
    from reindexer.config import ENV_KEYS

    for name in (*ENV_KEYS, "REINDEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[stor]\nurl = "qdrant+local:x"\n',
         "unknown section 'stor'; valid: apply, collections, defaults, query, state, store"),
        ("[defaults]\nbatchsize = 64\n",
         "unknown key 'batchsize' in [defaults]; valid: batch_size, device, devices, embed_batch_size, gate"),
        ('[collections.docs]\ntext_feld = "body"\n', "unknown key 'text_feld' in [collections.docs]; valid: gate"),
        ('[defaults]\nbatch_size = "64"\n', "[defaults] batch_size: input should be a valid integer"),
        ("[defaults]\nkeep = -1\n", "[defaults] keep: input should be greater than or equal to 0"),
        ("[query]\nshadow_sample = 1.5\n", "[query] shadow_sample: input should be less than or equal to 1"),
        ('[query]\nrecord_query_text = "yes"\n', "[query] record_query_text: input should be a valid boolean"),
    ],
)
def test_the_schema_names_each_bad_section_key_and_type(tmp_path, monkeypatch, toml, expected):
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reindex.toml").write_text(toml)
    with pytest.raises(UsageError) as caught:
        load_config()
    assert expected in caught.value.message
    r = CliRunner().invoke(cli, ["config", "show"])
    assert r.exit_code == 2 and expected in r.output and "unexpected" not in r.output


def test_zero_is_a_value_not_the_default(tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reindex.toml").write_text("[defaults]\nkeep = 0\n[query]\nrefresh = 0\n")
    cfg = load_config()
    assert (cfg.keep, cfg.query_refresh) == (0, 0.0)
    monkeypatch.setenv("REINDEX_KEEP", "0")
    (tmp_path / "reindex.toml").write_text("[defaults]\nkeep = 5\n")
    assert load_config().keep == 0  # the variable's 0 wins over the file's 5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REINDEX_BATCH_SIZE", "abc", "REINDEX_BATCH_SIZE='abc': input should be a valid integer"),
        ("REINDEX_BATCH_SIZE", "0", "REINDEX_BATCH_SIZE='0': input should be greater than 0"),
        ("REINDEX_KEEP", "two", "REINDEX_KEEP='two': input should be a valid integer"),
        ("REINDEX_SHADOW_SAMPLE", "2", "REINDEX_SHADOW_SAMPLE='2': input should be less than or equal to 1"),
        ("REINDEX_RECORD_QUERY_TEXT", "maybe", "REINDEX_RECORD_QUERY_TEXT='maybe': input should be a valid boolean"),
    ],
)
def test_environment_variables_go_through_the_same_schema(tmp_path, monkeypatch, name, value, expected):
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    r = CliRunner().invoke(cli, ["status"])
    assert r.exit_code == 2, r.output
    assert expected in r.output and "unexpected" not in r.output
    assert not (tmp_path / ".reindex").exists()  # refused before anything was opened


def test_environment_values_are_parsed_as_their_types(tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REINDEX_BATCH_SIZE", "8")
    monkeypatch.setenv("REINDEX_RECORD_QUERY_TEXT", "yes")
    monkeypatch.setenv("REINDEX_SHADOW_SAMPLE", "0.25")
    cfg = load_config()
    assert (cfg.batch_size, cfg.record_query_text, cfg.shadow_sample) == (8, True, 0.25)
