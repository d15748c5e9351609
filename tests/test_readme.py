"""The README's commands are true: its quick start runs, line by line, as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.corpus import write_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_lines() -> list[str]:
    text = README.read_text()
    marker = text.index("<!-- tested by tests/test_readme.py")
    block = re.search(r"```bash\n(.*?)```", text[marker:], re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def argv_as_bash_passes_it(line: str, env: dict[str, str], cwd: Path) -> list[str]:
    """The words bash hands to ``reindex`` for ``line``: bash itself expands and quotes the line as written."""
    capture = 'reindex() { printf "%s\\0" "$@"; }\n'  # stands in for the program only to read its argv
    done = subprocess.run(["bash", "-c", capture + line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.split("\0")[:-1]


def test_readme_names_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path, minilm_path, demo_corpus, monkeypatch, capsys):
    """The first line runs as its own process through the installed ``reindex`` on PATH; the
    others run in this process through the same entry point (``reindexer.cli:main``) with the
    arguments bash gives them, which saves a Python, torch and model start-up per line."""
    from reindexer.cli import main

    write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:40])
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REINDEX_")}
    env.update(MODEL_V1=str(minilm_path), PATH=f"{bin_dir}:{env['PATH']}", REINDEX_PROGRESS="0")
    lines = quick_start_lines()
    assert len(lines) >= 8 and all(line.startswith("reindex ") for line in lines)
    assert shutil.which("reindex", path=env["PATH"]) == str(Path(bin_dir) / "reindex")

    first, *rest = lines
    done = subprocess.run(["bash", "-c", first], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{first}\n{done.stdout}\n{done.stderr}"

    for name in [k for k in os.environ if k.startswith("REINDEX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REINDEX_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    for line in rest:
        monkeypatch.setattr(sys, "argv", ["reindex", *argv_as_bash_passes_it(line, env, tmp_path)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, error = capsys.readouterr()
        assert code == 0, f"{line}\n{out}\n{error}"
    assert (tmp_path / ".reindex" / "state.db").exists()
