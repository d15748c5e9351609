#!/usr/bin/env bash
# Run the test suite. Where this user may create a network namespace, the run goes
# inside one that has only loopback, so the Milvus standalone server the tests start
# cannot listen on, or talk over, any other interface. Elsewhere the server tests skip
# and say why. pytest's exit code 5 (nothing collected) is a failure here: a suite
# that ran no test has not passed.
#
# With no arguments (make test, .ci/run) the tests that stop and restart a Milvus server
# of their own (tests/test_backend_faults.py) run in a second pytest process: a second
# standalone server does not start beside the session's shared one in one namespace, but
# does in a namespace of its own, so where namespaces can be made the two run at once.
# The inference-backend tests (tests/test_inference_backends.py) also run in .venv-backends,
# which holds the ONNX and OpenVINO extras (scripts/setup-backends.sh), beside the suite.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ISOLATED=tests/test_backend_faults.py

# The namespace, probed once: as root, or as a user mapped to root in its own user namespace.
if unshare -n true 2>/dev/null; then
  UNSHARE=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  UNSHARE=(unshare -rn)
else
  UNSHARE=()
fi

run_pytest() {
  local cmd=(.venv/bin/python -m pytest --durations=25 "$@") rc
  if [ "${#UNSHARE[@]}" -gt 0 ]; then
    "${UNSHARE[@]}" sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${cmd[@]}"
    rc=$?
  else
    echo "note: cannot create a network namespace here; Milvus server tests will skip" >&2
    "${cmd[@]}"
    rc=$?
  fi
  if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    return 1
  fi
  return "$rc"
}

# The main suite in pytest-xdist workers (REINDEX_TEST_WORKERS, default 2; 1 runs it in one process).
# A single process left one of CI's two cores idle half the time: its tests wait on model loads,
# subprocesses and servers as much as they compute. Where namespaces can be made, each worker starts
# in one of its own (scripts/netns-python), so each has its own Milvus standalone and PostgreSQL;
# trained models are made once for all workers (tests/plugins/shared.py).
WORKERS=()
n_workers=${REINDEX_TEST_WORKERS:-2}
if [ "$n_workers" -gt 1 ] && .venv/bin/python -c "import xdist" 2>/dev/null; then
  if [ "${#UNSHARE[@]}" -gt 0 ]; then
    WORKERS=(--dist load --tx "$n_workers*popen//python=$PWD/scripts/netns-python")
  else
    WORKERS=(-n "$n_workers")
  fi
fi

BACKENDS=tests/test_inference_backends.py
BACKENDS_PY=${BACKENDS_VENV:-.venv-backends}/bin/python

# The backend tests in the venv that has the extras: a failure there fails the run, and a
# missing venv is named (make setup-backends) rather than passed over.
run_backends() {
  if [ ! -x "$BACKENDS_PY" ]; then
    echo "error: $BACKENDS_PY is missing: make setup-backends creates it" >&2
    return 1
  fi
  "$BACKENDS_PY" -m pytest -q --durations=5 "$BACKENDS" -p no:cacheprovider --basetemp="$1"
}

if [ "$#" -eq 0 ]; then
  # The suite's temporary folders in a folder of its own: pytest's default numbered folders keep only
  # the newest three per user, so any other pytest run on the machine (make repeat, a second checkout)
  # would delete the folder where the session's PostgreSQL server keeps its socket, mid-run.
  main_tmp=$(mktemp -d)
  backends_log=$(mktemp)
  backends_tmp=$(mktemp -d)
  run_backends "$backends_tmp/tmp" >"$backends_log" 2>&1 &
  backends=$!
  if [ "${#UNSHARE[@]}" -gt 0 ]; then
    # Each run_pytest gets a network namespace of its own, so the fault tests' server takes the
    # same ports as the session's in another loopback: they run beside the suite. They spend most
    # of their two minutes waiting on a stopped, restarted or frozen server, not on the CPU.
    scratch=$(mktemp -d)
    run_pytest "$ISOLATED" -p no:cacheprovider --basetemp="$scratch/tmp" >"$scratch/log" 2>&1 &
    faults=$!
    run_pytest --ignore="$ISOLATED" --basetemp="$main_tmp/tmp" "${WORKERS[@]}"
    rc=$?
    wait "$faults"
    rc2=$?
    echo "=== $ISOLATED (run beside the suite, in its own network namespace) ==="
    cat "$scratch/log"
    rm -rf "$scratch"
  else
    run_pytest --ignore="$ISOLATED" --basetemp="$main_tmp/tmp" "${WORKERS[@]}"
    rc=$?
    run_pytest "$ISOLATED"
    rc2=$?
  fi
  wait "$backends"
  rc3=$?
  echo "=== $BACKENDS in $BACKENDS_PY (the onnx and openvino extras), run beside the suite ==="
  cat "$backends_log"
  rm -rf "$backends_log" "$backends_tmp" "$main_tmp"
  [ "$rc" -ne 0 ] && exit "$rc"
  [ "$rc2" -ne 0 ] && exit "$rc2"
  exit "$rc3"
fi
run_pytest "$@"
