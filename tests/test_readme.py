"""The README's commands are true: its quick start runs, line by line, as written."""

from __future__ import annotations

import os
import re
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


def test_readme_names_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path, minilm_path, demo_corpus):
    write_jsonl(tmp_path / "corpus.jsonl", demo_corpus.documents[:40])
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REINDEX_")}
    env.update(MODEL_V1=str(minilm_path), PATH=f"{bin_dir}:{env['PATH']}", REINDEX_PROGRESS="0")
    lines = quick_start_lines()
    assert len(lines) >= 8
    for line in lines:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / ".reindex" / "state.db").exists()
