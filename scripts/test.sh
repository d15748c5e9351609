#!/usr/bin/env bash
# Run the test suite. Where this user may create a network namespace, the run goes
# inside one that has only loopback, so the Milvus standalone server the tests start
# cannot listen on, or talk over, any other interface. Elsewhere the server tests skip
# and say why. pytest's exit code 5 (nothing collected) is a failure here: a suite
# that ran no test has not passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTEST=(.venv/bin/python -m pytest --durations=25 "$@")
if unshare -n true 2>/dev/null; then
  unshare -n sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${PYTEST[@]}"
  rc=$?
elif unshare -rn true 2>/dev/null; then
  unshare -rn sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${PYTEST[@]}"
  rc=$?
else
  echo "note: cannot create a network namespace here; Milvus server tests will skip" >&2
  "${PYTEST[@]}"
  rc=$?
fi
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
