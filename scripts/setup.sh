#!/usr/bin/env bash
# Create .venv and install reindexer with its test extras. Idempotent: re-runs only
# when pyproject.toml changed. torch goes in first, pinned, because that version
# has a CPU wheel on these machines while a bare `torch` pulls gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.setup-stamp"
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q -e ".[test]" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -c "import torch, sentence_transformers, qdrant_client, pymilvus, sqlmodel, reindexer.adapters" 
echo "$want" > "$STAMP"
