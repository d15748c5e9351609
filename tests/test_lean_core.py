"""The core install works without the train extra (datasets, accelerate), and training says what to install.

Each check runs in a fresh interpreter where ``datasets`` and ``accelerate`` are gone as on a
machine that never installed them: ``import`` raises and ``find_spec`` answers None
(``sys.modules[name] = None``), and their distribution metadata is not found, which is what
sentence-transformers and transformers read to decide whether training is available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK = textwrap.dedent("""
    import importlib.metadata as _md
    import sys
    _HIDDEN = ("datasets", "accelerate")
    for _name in _HIDDEN:
        sys.modules[_name] = None
    _from_name = _md.Distribution.from_name.__func__
    def _hidden_from_name(cls, name):
        if name.lower() in _HIDDEN:
            raise _md.PackageNotFoundError(name)
        return _from_name(cls, name)
    _md.Distribution.from_name = classmethod(_hidden_from_name)
""")


def _run_without_train(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_core_works_and_training_names_the_install_without_the_train_extra(tmp_path, minilm_path):
    docs = tmp_path / "corpus.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i} about topic {i % 3}"}) + "\n"
                            for i in range(12)))
    proc = _run_without_train(f"""
        import json, sys
        import reindexer, reindexer.cli, reindexer.commands, reindexer.hooks, reindexer.demo, reindexer.finetune
        from click.testing import CliRunner
        from reindexer.errors import UsageError
        runner = CliRunner()
        helps = {{}}
        for verb in ("plan", "apply", "status", "sync", "eval", "rollback", "gc", "adopt", "verify", "demo"):
            helps[verb] = runner.invoke(reindexer.cli.cli, [verb, "--help"]).exit_code
        r = runner.invoke(reindexer.cli.cli, ["--store", "qdrant+local:{tmp_path}/q", "--state",
                                              "sqlite:///{tmp_path}/s.db", "--json", "plan", "docs",
                                              "--model", {str(minilm_path)!r}, "--source", {str(docs)!r}])
        refusals = []
        for attempt in (lambda: reindexer.finetune.finetune({str(minilm_path)!r}, [("a", "b"), ("c", "d")],
                                                            {str(tmp_path / "out")!r}),
                        lambda: reindexer.hooks.ReindexCallback("docs")):
            try:
                attempt()
            except UsageError as exc:
                refusals.append([str(exc), exc.exit_code])
        loaded = sorted(n for n in ("datasets", "accelerate") if sys.modules.get(n) is not None)
        print(json.dumps({{"helps": helps, "plan_exit": r.exit_code, "plan": r.stdout, "loaded": loaded,
                          "error": repr(r.exception) + r.output, "refusals": refusals}}))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert set(result["helps"].values()) == {0}, result["helps"]
    assert result["plan_exit"] == 0, result["error"]
    plan = json.loads(result["plan"])
    assert plan["mode"] == "full" and plan["counts"]["to_embed"] == 12
    assert len(result["refusals"]) == 2
    for text, code in result["refusals"]:
        assert 'pip install "reindexer[train]"' in text and "datasets and accelerate" in text
        assert code == 2
    assert not (tmp_path / "out").exists()


def test_demo_without_the_extra_exits_2_before_making_anything(tmp_path):
    proc = _run_without_train("""
        import sys
        sys.argv = ["reindex", "demo", "--keep", "demo-work"]
        from reindexer.cli import main
        main()
    """, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'pip install "reindexer[train]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "demo-work").exists()
