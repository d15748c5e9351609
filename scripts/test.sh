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

if [ "$#" -eq 0 ]; then
  if [ "${#UNSHARE[@]}" -gt 0 ]; then
    # Each run_pytest gets a network namespace of its own, so the fault tests' server takes the
    # same ports as the session's in another loopback: they run beside the suite. They spend most
    # of their two minutes waiting on a stopped, restarted or frozen server, not on the CPU.
    scratch=$(mktemp -d)
    run_pytest "$ISOLATED" -p no:cacheprovider --basetemp="$scratch/tmp" >"$scratch/log" 2>&1 &
    faults=$!
    run_pytest --ignore="$ISOLATED"
    rc=$?
    wait "$faults"
    rc2=$?
    echo "=== $ISOLATED (run beside the suite, in its own network namespace) ==="
    cat "$scratch/log"
    rm -rf "$scratch"
  else
    run_pytest --ignore="$ISOLATED"
    rc=$?
    run_pytest "$ISOLATED"
    rc2=$?
  fi
  [ "$rc" -ne 0 ] && exit "$rc"
  exit "$rc2"
fi
run_pytest "$@"
