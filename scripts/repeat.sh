#!/usr/bin/env bash
# Run the tests most likely to be flaky N times in a row (default 10) and count failures per test
# id across the runs: a flaky test shows as 1/10, a broken one as 10/10. Not part of `make test`.
#
#   scripts/repeat.sh [N] [PYTEST_ARGS...]      (make repeat N=3 PYTEST_ARGS="-k crash")
#
# The modules: the crash, backend-fault, reconcile, flow and query-side tests. MODULES (test paths,
# space-separated) replaces the list, e.g. MODULES="tests/test_reconcile.py" scripts/repeat.sh 1.
#
# Each run runs as scripts/test.sh runs the suite: where this user may create a network namespace,
# inside one that has only loopback (so the Milvus standalone server tests run), and
# tests/test_backend_faults.py, whose tests stop and restart a Milvus server of their own, in a
# second pytest process in a namespace of its own, beside the others (after them where no
# namespace can be made, and then the server tests skip).
#
# Every pytest process writes JUnit XML (--junitxml); the summary at the end reads all of it: per
# test id, failures (a failure or an error) / runs, skips, and which runs failed. A pytest process
# that exits non-zero with no failed test to show for it (collected nothing, crashed, timed out)
# counts as a failure of its own row. Exit 0 only when nothing failed in any run.
#
# REPEAT_DIR: where the logs and XML go (default a new temporary folder; printed, and kept).
# KEEP_TMP=1 keeps each run's pytest --basetemp. SHOW_ALL=1 lists every test, not only failures.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ISOLATED=tests/test_backend_faults.py
DEFAULT_MODULES="tests/test_crash.py tests/test_backend_faults.py tests/test_reconcile.py tests/test_flow.py tests/query_side/"

runs=${1:-10}
[ "$#" -gt 0 ] && shift
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/repeat.sh [N] [PYTEST_ARGS...]  (N: how many runs, a positive integer; got '$runs')" >&2
  exit 2
fi
extra=("$@")

read -r -a modules <<<"${MODULES:-$DEFAULT_MODULES}"
main=() faults=()
for m in "${modules[@]}"; do
  if [[ "${m#./}" == "$ISOLATED"* ]]; then faults+=("$m"); else main+=("$m"); fi
done
if [ "$((${#main[@]} + ${#faults[@]}))" -eq 0 ]; then
  echo "error: MODULES names no test module" >&2
  exit 2
fi

# The namespace, probed once, as scripts/test.sh does: as root, or as a user mapped to root in its
# own user namespace.
if unshare -n true 2>/dev/null; then
  UNSHARE=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  UNSHARE=(unshare -rn)
else
  UNSHARE=()
  echo "note: cannot create a network namespace here; Milvus server tests will skip" >&2
fi

out=${REPEAT_DIR:-$(mktemp -d -t reindex-repeat.XXXXXX)}
mkdir -p "$out"
echo "repeat: $runs run(s) of ${modules[*]}${extra[*]:+ (pytest ${extra[*]})}; logs and JUnit XML in $out"

# One pytest process of one run: NAME DIR PATHS...; writes DIR/NAME.{xml,log,rc}.
run_one() {
  local name=$1 dir=$2 rc
  shift 2
  local cmd=(.venv/bin/python -m pytest -q -p no:cacheprovider --basetemp="$dir/tmp-$name"
             --junitxml="$dir/$name.xml" -o junit_family=xunit2 "$@" "${extra[@]}")
  if [ "${#UNSHARE[@]}" -gt 0 ]; then
    "${UNSHARE[@]}" sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${cmd[@]}" >"$dir/$name.log" 2>&1
  else
    "${cmd[@]}" >"$dir/$name.log" 2>&1
  fi
  rc=$?
  echo "$rc" >"$dir/$name.rc"
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$dir/tmp-$name"
  return "$rc"
}

# pytest's closing line (its outcome counts, "... in 12.34s"), for the line each run prints.
outcome() {
  local rc counts
  rc=$(cat "$1/$2.rc" 2>/dev/null || echo "?")
  counts=$(grep -E ' in [0-9.]+s( \([0-9:]+\))?[ =]*$' "$1/$2.log" 2>/dev/null | tail -n 1 | tr -d '=' | sed 's/^ *//')
  [ "$rc" = 5 ] && counts="collected no tests${counts:+ ($counts)}"
  echo "$2 rc=$rc: ${counts:-no outcome line; see $1/$2.log}"
}

for ((i = 1; i <= runs; i++)); do
  dir=$out/run-$i
  mkdir -p "$dir"
  began=$SECONDS
  if [ "${#faults[@]}" -gt 0 ] && [ "${#main[@]}" -gt 0 ] && [ "${#UNSHARE[@]}" -gt 0 ]; then
    run_one faults "$dir" "${faults[@]}" &
    pid=$!
    run_one main "$dir" "${main[@]}"
    wait "$pid"
  else
    [ "${#main[@]}" -gt 0 ] && run_one main "$dir" "${main[@]}"
    [ "${#faults[@]}" -gt 0 ] && run_one faults "$dir" "${faults[@]}"
  fi
  line="run $i/$runs ($((SECONDS - began))s):"
  for name in main faults; do
    [ -f "$dir/$name.rc" ] && line+=" $(outcome "$dir" "$name");"
  done
  echo "${line%;}"
done

.venv/bin/python - "$out" "$runs" "${SHOW_ALL:-0}" <<'EOF'
"""Failures per test id across the runs, from each pytest process's JUnit XML."""
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

out, runs, show_all = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"


def node_id(classname: str, name: str) -> str:
    """pytest's node id back from JUnit's dotted classname: the longest prefix that is a file."""
    parts = classname.split(".") if classname else []
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if Path(path).is_file():
            return "::".join([path, *parts[i:], name])
    return "::".join([*([classname] if classname else []), name])


failed_in = defaultdict(list)  # test id -> the runs it failed in
ran = defaultdict(int)  # test id -> runs with a result (not skipped)
skipped = defaultdict(int)
for run in range(1, runs + 1):
    for proc in ("main", "faults"):
        rc_file = out / f"run-{run}" / f"{proc}.rc"
        if not rc_file.exists():
            continue  # this run had no such process
        rc, xml = int(rc_file.read_text().strip() or 1), out / f"run-{run}" / f"{proc}.xml"
        outcomes: dict[str, str] = {}  # one outcome per test and run; a failure (or error) wins
        if xml.exists():
            try:
                cases = ET.parse(xml).getroot().iter("testcase")
            except ET.ParseError:
                cases = iter(())
            for case in cases:
                tid = node_id(case.get("classname", ""), case.get("name", ""))
                if case.find("failure") is not None or case.find("error") is not None:
                    outcomes[tid] = "failed"
                elif case.find("skipped") is not None:
                    outcomes.setdefault(tid, "skipped")
                elif outcomes.get(tid) != "failed":
                    outcomes[tid] = "passed"
        for tid, what in outcomes.items():
            if what == "skipped":
                skipped[tid] += 1
                continue
            ran[tid] += 1
            if what == "failed":
                failed_in[tid].append(run)
        # A non-zero exit no failed test explains: nothing collected (5), a crash, a kill, a timeout.
        process_row = f"(pytest process '{proc}' exited non-zero with no failed test; see run-N/{proc}.log)"
        ran[process_row] += 1
        if rc != 0 and "failed" not in outcomes.values():
            failed_in[process_row].append(run)

ids = sorted(set(ran) | set(skipped), key=lambda t: (-len(failed_in[t]), t))
rows = [t for t in ids if failed_in[t] or (show_all and not t.startswith("(pytest process"))]
print()
print(f"failures per test over {runs} run(s):")
if rows:
    width = max(len(t) for t in rows)
    print(f"  {'test id':<{width}}  failures / runs  skipped  failed in runs")
    for t in rows:
        runs_txt = ",".join(map(str, failed_in[t])) or "-"
        count = f"{len(failed_in[t])} / {ran[t]}"
        print(f"  {t:<{width}}  {count:>15}  {skipped[t]:>7}  {runs_txt}")
tests = [t for t in ids if not t.startswith("(pytest process")]
bad = [t for t in ids if failed_in[t]]
print(f"{len(tests)} test ids, {sum(ran[t] for t in tests)} test runs, {sum(skipped[t] for t in tests)} skips; "
      f"{len(bad)} row(s) failed at least once")
if not tests:
    print("error: no test results were read from the JUnit XML", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if bad else 0)
EOF
rc=$?
echo "logs and JUnit XML: $out"
exit "$rc"
